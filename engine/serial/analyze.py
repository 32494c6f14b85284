"""The boot-log analyser: what a device's serial console gives away while it boots.

It reads lines (live from a session, or a saved transcript) and keeps a report: the bootloader
and its version, whether autoboot can be interrupted, the boot arguments and their red flags,
the kernel, the MTD partitions, BusyBox, whether a root shell came up without a login, a login
prompt, and credentials or keys printed on the console. Each fact worth knowing is a finding.
Lines are cleaned first: terminal escapes, backspaces and carriage returns are applied, HTML
entities from a copy-paste are decoded.

One file, though long: it is one analyser, and the patterns at its top are the facts its
methods look for, read best beside them.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from engine.model import Severity
from engine.scan.findings import Finding

# Escape sequences: CSI, OSC (ended by BEL or ST), and two-byte ones.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")

UBOOT = re.compile(r"\bU-Boot(?P<spl> SPL)? (?P<version>(?:\d{4}\.\d{2}|\d+\.\d+\.\d+)[\w.+-]*)")
REDBOOT = re.compile(r"RedBoot(?:\(tm\))? (?:bootstrap|ROM|\()|^RedBoot>")
REDBOOT_VERSION = re.compile(r"(?:release|Release),? version (?P<version>\S+)")
CFE = re.compile(r"\bCFE version (?P<version>[\w.-]+)")
BAREBOX = re.compile(r"\bbarebox (?P<version>\d{4}\.\d{2}\.\d+[\w.-]*)", re.I)
AUTOBOOT = re.compile(
    r"(?P<prompt>(?:Hit|Press) (?P<key>.{1,24}?) to stop autoboot"
    r"|Autobooting in \d+ seconds?.*"
    r"|== Executing boot script in [\d.]+ seconds? - enter \^C to abort"
    r"|Press (?:Ctrl-C|\^C) to abort autoboot.*"
    r"|autoboot in \d+ s(?:ec|econds)?.*)",
    re.I,
)
LOADER_PROMPT = re.compile(
    r"^(?P<prompt>U-Boot>|=>|RedBoot>|CFE>|barebox@[^:\s]*:\S*|[\w.-]+ ?#)\s?(?P<command>\S.*)?$"
)
LOADER_COMMANDS = {
    "help",
    "?",
    "printenv",
    "version",
    "setenv",
    "saveenv",
    "bootm",
    "boot",
    "md",
    "mw",
    "tftp",
    "tftpboot",
    "sf",
    "env",
    "bdinfo",
    "fatload",
    "run",
    "reset",
    "go",
    "nand",
    "mmc",
    "usb",
    "ping",
    "dhcp",
    "fis",
    "load",
    "exec",
    "show",
    "ls",
    "cat",
    "devinfo",
    "coninfo",
    "editenv",
    "loadb",
    "loady",
}
KERNEL_START = re.compile(
    r"Starting kernel|Uncompressing Linux|Booting Linux|Linux version \S+|Booting kernel"
)
LINUX_VERSION = re.compile(r"Linux version (?P<version>\S+)")
IMAGE_VERSION = re.compile(r"Image Name:\s+Linux-(?P<version>\S+)")
CMDLINE = re.compile(r"Kernel command line: (?P<cmdline>.*\S)")
ENV_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.-]{0,63})=(?P<value>.*)$")
MTD_KERNEL = re.compile(r'0x(?P<start>[0-9a-fA-F]+)-0x(?P<end>[0-9a-fA-F]+) : "(?P<name>[^"]+)"')
MTD_PROC = re.compile(r'^mtd\d+: (?P<size>[0-9a-fA-F]{8}) [0-9a-fA-F]{8} "(?P<name>[^"]+)"')
MTDPARTS = re.compile(r"\bmtdparts=(?P<spec>\S+)")
BUSYBOX = re.compile(r"BusyBox v(?P<version>\d[\w.-]*)")
USERSPACE = re.compile(
    r"built-in shell \(|Freeing unused kernel memory|Run /\S+ as init process|init started:"
    r"|Please press Enter to activate this console|VFS: Mounted root"
)
# A login prompt, with the user name typed after it or not ("Last login: Mon ..." is not one).
LOGIN = re.compile(r"(?:^|\s)(?P<prompt>[\w.-]* ?login:)(?:[ \t]*\S+)?\s*$")
PASSWORD_PROMPT = re.compile(r"^Password:\s*$", re.I)
LOGIN_FAILED = re.compile(r"Login incorrect|Login failed|Authentication failure", re.I)
ROOT_PROMPT = re.compile(
    r"^(?P<prompt>(?:[\w.-]+@[\w.-]+:?\s?)?(?:\[[^\]\n]{1,60}\]|[~/][\w./-]{0,60})?\s?#)"
    r"(?:\s(?P<command>.*))?$"
)
USER_PROMPT = re.compile(r"^(?:[\w.-]+@[\w.-]+:?\s?)?(?:\[[^\]\n]{1,60}\]|[~/][\w./-]{0,60})\s?\$")
ROOT_ID = re.compile(r"uid=0\(root\)")
PRIVATE_KEY = re.compile(r"-----BEGIN (?P<what>(?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY)")
PASSWORD_HASH = re.compile(r"^(?P<user>[\w.-]+):(?P<hash>\$(?:1|2[aby]?|5|6|y)\$[^:\s]{8,}):")
SECRET = re.compile(
    r"(?P<name>\b[\w.-]*(?:passw(?:or)?d|passwd|pwd|psk|secret|token|passphrase|api_?key"
    r"|private_?key)[\w.-]*)\s*[=:]\s*(?P<value>\S+)",
    re.I,
)
MAC = re.compile(
    r"\b(?:ethaddr|HWaddr|MAC(?: address)?)\s*[=:]?\s*"
    r"(?P<mac>[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})\b"
)
INIT_SHELL = re.compile(
    r"\b(?:rd)?init=(?P<shell>\S*/(?:sh|ash|bash|hush|dash|busybox sh))(?:\s|$)"
)
CONSOLE = re.compile(r"\bconsole=(?P<console>tty\w+[^\s]*)")
SIZE = re.compile(r"^(?P<number>\d+|0x[0-9a-fA-F]+)(?P<unit>[kKmMgG]?)$")


def clean_line(raw: str) -> str:
    """One line as a person would have seen it: escapes dropped, backspaces and carriage
    returns applied, HTML entities decoded, other control characters dropped."""
    text = _ESCAPES.sub("", raw)
    if "&" in text and _ENTITY.search(text):
        text = html.unescape(text)
    if "\r" in text or "\b" in text:
        text = _overstrike(text)
    return _CONTROL.sub("", text).rstrip()


def _overstrike(text: str) -> str:
    cells: list[str] = []
    column = 0
    for char in text:
        if char == "\r":
            column = 0
        elif char == "\b":
            column = max(column - 1, 0)
        else:
            if column < len(cells):
                cells[column] = char
            else:
                cells.append(char)
            column += 1
    return "".join(cells)


def split_lines(data: bytes, map_in: str = "lf") -> list[str]:
    """Received bytes as cleaned lines. Lines end in LF or CR LF (a lone CR returns to the
    start of the line, as on a terminal); with ``map_in`` "cr" a lone CR ends a line too."""
    text = data.decode("utf-8", "replace")
    ends = r"\r\n?|\n" if map_in == "cr" else r"\r*\n"
    return [clean_line(line) for line in re.split(ends, text)]


def parse_size(text: str) -> int | None:
    """``256K``, ``3M``, ``0x40000`` as bytes; None for ``-`` (the rest of the device)."""
    match = SIZE.match(text)
    if not match:
        return None
    text = match["number"]
    number = int(text, 16) if text.startswith("0x") else int(text)
    return number << {"": 0, "k": 10, "m": 20, "g": 30}[match["unit"].lower()]


def parse_mtdparts(spec: str) -> list[dict[str, Any]]:
    """Partitions from ``mtdparts=<id>:<size>[@<offset>](<name>)[ro],...`` (Linux's
    cmdlinepart syntax), each with its start and end (exclusive; None for ``-``)."""
    parts: list[dict[str, Any]] = []
    for device in spec.split(";"):
        _id, _, definitions = device.partition(":")
        offset: int | None = 0
        for definition in definitions.split(","):
            match = re.match(
                r"^(?P<size>[^@(]+)(?:@(?P<at>[^(]+))?(?:\((?P<name>[^)]*)\))?", definition
            )
            if not match:
                continue
            size = parse_size(match["size"]) if match["size"] != "-" else None
            if match["at"]:
                offset = parse_size(match["at"])
            start = offset
            end = start + size if start is not None and size is not None else None
            parts.append(
                {"name": match["name"] or "", "start": start, "end": end, "source": "mtdparts"}
            )
            offset = end
    return parts


def mask(value: str) -> str:
    """A secret's value as evidence: enough to recognise, not enough to use."""
    if len(value) <= 4:
        return "*" * len(value)
    return f"{value[:2]}…({len(value)} characters)"


@dataclass
class BootReport:
    bootloader: dict[str, Any] = field(default_factory=lambda: {"name": None, "version": None})
    autoboot: dict[str, Any] = field(
        default_factory=lambda: {"prompt": None, "interruptible": None, "bootdelay": None}
    )
    bootargs: str | None = None
    kernel: dict[str, Any] = field(default_factory=lambda: {"version": None, "cmdline": None})
    busybox: dict[str, Any] = field(default_factory=lambda: {"version": None})
    mtd: list[dict[str, Any]] = field(default_factory=list)
    shell: dict[str, Any] = field(
        default_factory=lambda: {"root": False, "prompt": None, "login_prompt": None}
    )
    identity: dict[str, Any] = field(default_factory=lambda: {"mac": None, "ip": None})
    findings: list[Finding] = field(default_factory=list)
    lines: int = 0

    def to_json(self) -> dict[str, Any]:
        kernel = dict(self.kernel)
        if kernel["cmdline"] is None:
            kernel["cmdline"] = self.bootargs  # what the kernel is given, until it prints it
        return {
            "bootloader": self.bootloader,
            "autoboot": self.autoboot,
            "bootargs": self.bootargs,
            "kernel": kernel,
            "busybox": self.busybox,
            "mtd": self.mtd,
            "shell": self.shell,
            "identity": self.identity,
            "findings": [_finding_json(f) for f in self.findings],
            "lines": self.lines,
        }


def _finding_json(finding: Finding) -> dict[str, Any]:
    out = finding.to_json()
    for key in ("port", "proto"):
        out.pop(key)
    return out


class BootAnalyzer:
    """Fed one cleaned line at a time; :meth:`feed_line` returns the findings it added."""

    def __init__(self) -> None:
        self.report = BootReport()
        self._phase = "start"  # start, loader, kernel, userspace
        self._kinds: set[str] = set()
        self._mtd_sources: dict[str, list[dict[str, Any]]] = {}
        self._login_seen = False
        self._new: list[Finding] = []

    def feed(self, data: bytes) -> list[Finding]:
        added: list[Finding] = []
        for line in split_lines(data):
            added += self.feed_line(line)
        return added

    def feed_line(self, line: str) -> list[Finding]:
        self.report.lines += 1
        if not line:
            return []
        self._new = []
        self._bootloader(line)
        if self._phase == "loader":
            self._loader(line)
        if KERNEL_START.search(line) and self._phase in ("start", "loader"):
            self._phase = "kernel"
        self._kernel(line)
        self._mtd(line)
        self._userspace(line)
        self._secrets(line)
        self._identity(line)
        return self._new

    # -- one concern each ---------------------------------------------------------------------

    def _bootloader(self, line: str) -> None:
        report = self.report
        found: tuple[str, str | None] | None = None
        if match := UBOOT.search(line):
            if report.bootloader["name"] != "U-Boot" or not match["spl"]:
                found = ("U-Boot", match["version"])
        elif REDBOOT.search(line):
            found = (
                "RedBoot",
                report.bootloader["version"] if report.bootloader["name"] == "RedBoot" else None,
            )
        elif match := CFE.search(line):
            found = ("CFE", match["version"])
        elif match := BAREBOX.search(line):
            found = ("Barebox", match["version"])
        elif report.bootloader["name"] == "RedBoot" and (match := REDBOOT_VERSION.search(line)):
            found = ("RedBoot", match["version"])
        if found is None:
            return
        if self._phase in ("kernel", "userspace"):
            self._new_boot()
        self._phase = "loader"
        name, version = found
        if report.bootloader["name"] == name and report.bootloader["version"] == version:
            return
        report.bootloader = {"name": name, "version": version}
        label = f"{name} {version}" if version else name
        self._add(
            "bootloader",
            Severity.INFO,
            f"Bootloader: {label}",
            line,
            "Keep the bootloader up to date with the vendor's releases.",
            replace=True,
        )

    def _new_boot(self) -> None:
        """The device rebooted: what the shell showed before is about the last boot."""
        self._login_seen = False
        self.report.shell = {"root": False, "prompt": None, "login_prompt": None}

    def _loader(self, line: str) -> None:
        report = self.report
        if match := AUTOBOOT.search(line):
            prompt = match["prompt"].strip()
            protected = bool(re.search(r"password|passphrase", line, re.I))
            report.autoboot.update(prompt=prompt, interruptible=not protected)
            if protected:
                self._add(
                    "autoboot", Severity.INFO, "Autoboot asks for a password to stop", line, ""
                )
            else:
                self._add(
                    "autoboot-interruptible",
                    Severity.MEDIUM,
                    "Autoboot can be interrupted from the serial console",
                    line,
                    "Set bootdelay=-2 (or a keyed autoboot with a password) and disable the"
                    " serial console in production builds.",
                )
        if match := ENV_LINE.match(line):
            self._environment(match["name"], match["value"], line)
        if (match := LOADER_PROMPT.match(line)) and (
            match["prompt"] in ("U-Boot>", "=>", "RedBoot>", "CFE>")
            or (match["command"] or "").split(" ")[0] in LOADER_COMMANDS
        ):
            self._add(
                "bootloader-shell",
                Severity.HIGH,
                f"Bootloader command line reachable ({match['prompt']})",
                line,
                "Protect the bootloader shell (CONFIG_AUTOBOOT_KEYED, a password) or"
                " remove it; anyone at the UART can read and rewrite the flash.",
            )

    def _environment(self, name: str, value: str, line: str) -> None:
        report = self.report
        if name == "bootargs":
            self._bootargs(value, line)
        elif name == "bootdelay":
            try:
                delay = int(value)
            except ValueError:
                return
            report.autoboot["bootdelay"] = delay
            if delay == -2:
                report.autoboot["interruptible"] = False
        elif name == "ipaddr":
            report.identity["ip"] = value.strip()

    def _bootargs(self, value: str, line: str) -> None:
        report = self.report
        report.bootargs = value.strip()
        self._add(
            "bootargs", Severity.INFO, "Kernel boot arguments", value.strip(), "", replace=True
        )
        self._cmdline_flags(value, line)

    def _cmdline_flags(self, cmdline: str, line: str) -> None:
        if match := INIT_SHELL.search(cmdline):
            self._add(
                "init-shell",
                Severity.HIGH,
                f"Boot arguments start a shell as init ({match.group().strip()})",
                line,
                "Boot the real init (init=/sbin/init or /linuxrc) with a login on the"
                " console; a shell as init is root without a password.",
            )
        if match := CONSOLE.search(cmdline):
            self._add(
                "kernel-console",
                Severity.LOW,
                f"Kernel console on the serial line (console={match['console']})",
                line,
                "Production builds should not give the UART a console (remove console=,"
                " or point it at a null device).",
            )
        if match := MTDPARTS.search(cmdline):
            self._mtd_sources["mtdparts"] = parse_mtdparts(match["spec"])
            self._mtd_table(line)

    def _kernel(self, line: str) -> None:
        report = self.report
        match = LINUX_VERSION.search(line)
        if match is None and not report.kernel["version"]:
            match = IMAGE_VERSION.search(line)
        if match:
            report.kernel["version"] = match["version"]
            self._add("kernel", Severity.INFO, f"Linux {match['version']}", line, "", replace=True)
        if match := CMDLINE.search(line):
            report.kernel["cmdline"] = match["cmdline"]
            self._cmdline_flags(match["cmdline"], line)

    def _mtd(self, line: str) -> None:
        sources = self._mtd_sources
        if match := MTD_KERNEL.search(line):
            start, end = int(match["start"], 16), int(match["end"], 16)
            part = {"name": match["name"], "start": start, "end": end, "source": "kernel"}
            kernel = sources.setdefault("kernel", [])
            if part in kernel:
                return
            if kernel and start < kernel[-1]["start"]:
                kernel.clear()  # a new table (the next boot)
            kernel.append(part)
        elif match := MTD_PROC.match(line):
            proc = sources.setdefault("proc", [])
            if any(p["name"] == match["name"] for p in proc):
                return
            start = proc[-1]["end"] if proc else 0
            end = start + int(match["size"], 16)
            proc.append({"name": match["name"], "start": start, "end": end, "source": "proc"})
        else:
            return
        self._mtd_table(line)

    def _mtd_table(self, line: str) -> None:
        """The fullest table seen: the kernel's (exact offsets) over mtdparts= over
        /proc/mtd (sizes only, offsets added up)."""
        tables = [self._mtd_sources.get(k, []) for k in ("kernel", "mtdparts", "proc")]
        best = max(tables, key=len)
        if not best or best == self.report.mtd:
            return
        self.report.mtd = list(best)
        names = ", ".join(p["name"] for p in best)
        self._add(
            "mtd", Severity.INFO, f"{len(best)} MTD partitions: {names}", line, "", replace=True
        )

    def _userspace(self, line: str) -> None:
        report = self.report
        if match := BUSYBOX.search(line):
            report.busybox["version"] = match["version"]
            self._add(
                "busybox", Severity.INFO, f"BusyBox {match['version']}", line, "", replace=True
            )
        if USERSPACE.search(line):
            self._phase = "userspace"
        if LOGIN_FAILED.search(line):
            return
        if PASSWORD_PROMPT.match(line):
            self._login_seen = True
            return
        if match := LOGIN.search(line):
            self._login_seen = True
            report.shell["login_prompt"] = match["prompt"]
            self._add(
                "login-prompt",
                Severity.INFO,
                "Login prompt on the serial console",
                line,
                "Make sure no account on the device has a default or empty password.",
            )
            return
        if self._phase != "userspace" and not ROOT_ID.search(line):
            return
        if (match := ROOT_PROMPT.match(line)) or ROOT_ID.search(line):
            report.shell["root"] = True
            if match:
                report.shell["prompt"] = match["prompt"]
            if not self._login_seen:
                evidence = line
                if console := CONSOLE.search(report.kernel["cmdline"] or report.bootargs or ""):
                    evidence = f"{line}  (kernel console={console['console']})"
                self._add(
                    "root-shell-no-login",
                    Severity.CRITICAL,
                    "Root shell on the serial console without a login",
                    evidence,
                    "Run a getty with a login (and a non-default root password) on the"
                    " console, or disable the console in production builds.",
                )
        elif USER_PROMPT.match(line):
            report.shell["prompt"] = line.strip()

    def _secrets(self, line: str) -> None:
        if match := PRIVATE_KEY.search(line):
            self._add(
                "private-key",
                Severity.HIGH,
                f"{match['what'].title()} printed on the console",
                match.group(),
                "Keys must not be printed; rotate this key.",
                dedup=line,
            )
        if match := PASSWORD_HASH.match(line):
            self._add(
                "password-hash",
                Severity.HIGH,
                f"Password hash of {match['user']} printed on the console",
                f"{match['user']}:{mask(match['hash'])}",
                "Change this account's password; the hash can be cracked offline.",
                dedup=line,
            )
        for match in SECRET.finditer(line):
            name, value = match["name"], match["value"].strip("'\",;")
            if len(value) < 3 or value.endswith(":") or set(value) <= {"*", "-", "x"}:
                continue
            self._add(
                "secret",
                Severity.HIGH,
                f"Credential printed on the console ({name})",
                f"{name}={mask(value)}",
                "Secrets must not be printed or kept in the bootloader environment;"
                " change this one.",
                dedup=f"{name}={value}",
            )

    def _identity(self, line: str) -> None:
        if (match := MAC.search(line)) and not self.report.identity["mac"]:
            self.report.identity["mac"] = match["mac"].lower()

    # -- findings -----------------------------------------------------------------------------

    def _add(
        self,
        kind: str,
        severity: Severity,
        title: str,
        evidence: str,
        fix: str,
        *,
        replace: bool = False,
        dedup: str = "",
    ) -> None:
        """One finding per kind (per secret for the secrets); ``replace`` keeps the newest when
        its title says something new (a later boot repeating the same facts adds nothing)."""
        key = f"{kind}:{dedup}" if dedup else kind
        finding = Finding(kind, severity, title, evidence.strip(), fix, proto="serial")
        if key in self._kinds:
            if not replace:
                return
            findings = self.report.findings
            for n, old in enumerate(findings):
                if old.kind == kind:
                    if old.title == finding.title:
                        return
                    findings[n] = finding
                    self._new.append(finding)
                    return
        self._kinds.add(key)
        self.report.findings.append(finding)
        self._new.append(finding)


def analyze(data: bytes) -> BootReport:
    """The report for a whole boot log (a transcript's received bytes, or a copied text)."""
    analyzer = BootAnalyzer()
    analyzer.feed(data)
    return analyzer.report
