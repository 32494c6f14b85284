"""Which ports the engine opens for a client. The engine runs as root and pyserial opens
anything it is handed (a file through ``spy://``, another user's terminal, a socket anywhere), so
every port passes here first: a serial line in ``/dev``, a pty or terminal an admin allowed, or
an ``rfc2217://`` / ``socket://`` address inside ``[scan] scope``. A refusal names the port and
the rule it broke.
"""

from __future__ import annotations

import fnmatch
import glob
import ipaddress
import os
import pwd
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from engine.scan.scope import Network, ScopeError, expand
from engine.serial.ports import is_url, stable_path

# URL schemes a client may be allowed ([serial] urls); pyserial's others read or write local
# files and devices: spy:// logs to any file, alt:// and hwgrep:// pick a port themselves,
# cp2110:// opens a HID device, loop:// is no device at all.
CLIENT_SCHEMES = ("rfc2217", "socket")
# The options of those URLs that only tune the connection (``logging`` reconfigures the
# engine's own logging).
URL_OPTIONS = {"rfc2217": {"ign_set_control", "poll_modem", "timeout"}, "socket": set()}

# Kernel names of serial lines: 8250/16550 (ttyS), ARM PL011 (ttyAMA), USB CDC ACM (ttyACM),
# USB serial adapters (ttyUSB), the UARTs of OMAP (ttyO), Samsung (ttySAC), i.MX (ttymxc),
# Tegra (ttyTHS), Qualcomm (ttyMSM), NXP LPUART (ttyLP), Xilinx Zynq (ttyPS) and UART Lite
# (ttyUL), Amlogic (ttyAML), STM32 (ttySTM), Renesas SCI (ttySC), and Bluetooth RFCOMM.
SERIAL_NAMES = re.compile(
    r"(ttyS|ttyAMA|ttyACM|ttyUSB|ttyO|ttySAC|ttymxc|ttyTHS|ttyMSM|ttyLP|ttyPS|ttyUL|ttyAML"
    r"|ttySTM|ttySC|rfcomm)\d+"
)
# Unix 98 pty slaves (/dev/pts/N) have these majors and no entry in sysfs.
PTY_MAJORS = range(136, 144)
# Names that stand for another terminal, not a line: /dev/tty (the caller's), /dev/console,
# /dev/ptmx (a new pty), /dev/tty0 (the current virtual console).
ALIASES = {(5, 0), (5, 1), (5, 2), (4, 0)}
DEV = "/dev"
SYS_CHAR = Path("/sys/dev/char")
PROC = Path("/proc")
MAX_LINKS = 40  # as the kernel's ELOOP limit


class PortRefused(Exception):
    """A port the policy does not open; ``rule`` names the rule, the message says why."""

    def __init__(self, port: str, rule: str, why: str) -> None:
        super().__init__(f"{port}: refused ({rule}): {why}")
        self.rule = rule


@dataclass(frozen=True)
class Device:
    """What the system says about the character device a path leads to."""

    path: str
    major: int
    minor: int
    uid: int
    subsystem: str = ""  # sysfs class ("tty"); empty when sysfs has no entry (ptys)
    name: str = ""  # the kernel's name ("ttyUSB0")
    on_usb: bool = False
    by_id: str = ""  # its /dev/serial/by-id link


@dataclass(frozen=True)
class Holder:
    """A process whose controlling terminal a device is."""

    pid: int
    command: str
    uid: int


class PortPolicy:
    """The rules, from the config: ``allow`` (paths or globs of ptys and other terminals an
    admin permits), ``urls`` (the URL schemes clients may use), ``scope`` (the networks those
    URLs may reach) and ``trusted`` (the ports the config itself opens, as an admin wrote them)."""

    def __init__(
        self,
        allow: Iterable[str],
        urls: Iterable[str],
        scope: list[Network],
        trusted: Iterable[str] = (),
        *,
        uid: int | None = None,
        proc: Path = PROC,
    ) -> None:
        self.trusted = tuple(trusted)
        self.allow = (*allow, *(glob.escape(p) for p in self.trusted if not is_url(p)))
        # The config refuses other schemes; this keeps spy:// and the like out whatever it says.
        self.urls = tuple(u for u in urls if u in CLIENT_SCHEMES)
        self.scope = scope
        self.uid = os.geteuid() if uid is None else uid
        self.proc = proc

    def check(self, port: str) -> str:
        """What to hand pyserial for ``port``: the device a path leads to (so that a link
        changed after this check changes nothing), or the URL rebuilt from what was checked.
        :class:`PortRefused` when a rule forbids it; OSError when the path leads nowhere."""
        if is_url(port):
            return port if port in self.trusted else self._url(port)
        given = _given_path(port)
        if not _inside_dev(given) and not self._allowed(given):
            raise PortRefused(
                port, "inside-dev", "a path outside /dev that is not in [serial] allow"
            )
        path, info = resolve(given)
        if not _inside_dev(path):
            raise PortRefused(
                port, "inside-dev", f"{path} is not in /dev: no device is opened there"
            )
        if not stat.S_ISCHR(info.st_mode):
            raise PortRefused(port, "char-device", f"{path} is {_kind(info.st_mode)}, not a device")
        device = describe(path, info)
        refusal = self.judge(given, device)
        if refusal is not None:
            raise PortRefused(port, *refusal)
        holder = controlling(device, self.proc)
        if holder is not None:
            raise PortRefused(
                port,
                "login-terminal",
                f"{path} is the controlling terminal of {holder.command} (pid {holder.pid}, user"
                f" {_user(holder.uid)}): a login or session terminal is never opened",
            )
        return path

    def judge(self, given: str, device: Device) -> tuple[str, str] | None:
        """The rule ``device`` (reached from the path ``given``) breaks and why, or None: it is a
        serial line, or a terminal in ``allow``; another user's only when in ``allow``."""
        if (device.major, device.minor) in ALIASES:
            return "terminal", (
                f"{device.path} is no one line: it stands for another terminal (the current one,"
                " the console, a new pty)"
            )
        allowed = any(self._allowed(p) for p in (given, device.path, device.by_id) if p)
        if device.major in PTY_MAJORS:
            kind = "a pty"
        elif device.subsystem == "tty":
            serial = SERIAL_NAMES.fullmatch(device.name) or device.on_usb or device.by_id
            kind = "" if serial else "a terminal that is not a serial line"
        elif device.subsystem:
            return "terminal", f"{device.path} is a {device.subsystem} device, not a terminal"
        else:
            return "terminal", f"{device.path}: the system does not say what device this is"
        if kind and not allowed:
            return "serial-line", f"{device.path} is {kind}; an admin may add it to [serial] allow"
        if device.uid not in (0, self.uid) and not allowed:
            return "owner", (
                f"{device.path} belongs to user {_user(device.uid)}: another user's terminal"
                " is opened only when it is in [serial] allow"
            )
        return None

    def _allowed(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.allow)

    def _url(self, port: str) -> str:
        scheme = port.split("://", 1)[0].lower()
        if scheme not in self.urls:
            usable = ", ".join(f"{u}://" for u in self.urls) or "none"
            why = "is not in [serial] urls" if scheme in CLIENT_SCHEMES else "is never opened"
            raise PortRefused(
                port, "url-scheme", f"{scheme}:// {why} for a client (clients may use: {usable})"
            )
        parts = urlsplit(port)
        try:
            number = parts.port
        except ValueError:
            number = None
        if not parts.hostname or number is None:
            raise PortRefused(port, "url-address", f"expected {scheme}://ADDRESS:PORT")
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            raise PortRefused(
                port, "url-address", "names are not resolved: give the device's address"
            ) from None
        options = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(options) - URL_OPTIONS[scheme])
        if unknown:
            raise PortRefused(port, "url-options", f"the option {unknown[0]!r} is not allowed")
        try:
            expand([str(address)], self.scope)
        except ScopeError as exc:
            raise PortRefused(port, "scan-scope", str(exc)) from None
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{scheme}://{host}:{number}" + (f"?{parts.query}" if parts.query else "")


def _given_path(port: str) -> str:
    """``port`` as an absolute path without ``.``, ``..`` or repeated slashes."""
    parts = [p for p in port.split("/") if p]
    if not port.startswith("/") or any(p in (".", "..") for p in parts):
        raise PortRefused(
            port, "path", "a port is an absolute path without . or .. (such as /dev/ttyUSB0)"
        )
    return "/" + "/".join(parts)


def _inside_dev(path: str) -> bool:
    return path == DEV or path.startswith(DEV + "/")


def resolve(path: str) -> tuple[str, os.stat_result]:
    """Where ``path`` (absolute, without ``..``) leads, and what is there, following its links
    one by one: from the first link on, every step stays inside /dev (PortRefused, rule
    links-in-dev, when one leaves). OSError when a part is missing."""
    current = "/"
    todo = path.split("/")[::-1]
    links = 0
    info = os.lstat(current)
    while todo:
        name = todo.pop()
        if name in ("", "."):
            continue
        current = os.path.dirname(current) if name == ".." else os.path.join(current, name)
        if links and not _inside_dev(current):
            raise PortRefused(path, "links-in-dev", f"a link leads to {current}, outside /dev")
        info = os.lstat(current)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise PortRefused(path, "links-in-dev", f"more than {MAX_LINKS} links")
            target = os.readlink(current)
            lands = os.path.normpath(os.path.join(os.path.dirname(current), target))
            if not _inside_dev(lands):
                raise PortRefused(
                    path, "links-in-dev", f"{current} is a link to {target}, outside /dev"
                )
            current = "/" if target.startswith("/") else os.path.dirname(current)
            todo.extend(target.split("/")[::-1])
    return current, info


def describe(path: str, info: os.stat_result) -> Device:
    """The device at ``path`` (``info`` its stat), as sysfs names it."""
    major, minor = os.major(info.st_rdev), os.minor(info.st_rdev)
    entry = SYS_CHAR / f"{major}:{minor}"
    try:
        uevent = (entry / "uevent").read_text()
        subsystem = os.path.basename(os.path.realpath(entry / "subsystem"))
        where = os.path.realpath(entry)
    except OSError:
        return Device(path, major, minor, info.st_uid)
    name = re.search(r"^DEVNAME=(.*)$", uevent, re.M)
    return Device(
        path,
        major,
        minor,
        info.st_uid,
        subsystem=subsystem,
        name=name.group(1) if name else "",
        on_usb="/usb" in where,
        by_id=stable_path(path) or "",
    )


def controlling(device: Device, proc: Path = PROC) -> Holder | None:
    """A process whose controlling terminal ``device`` is (a login shell, a getty, a pane of
    tmux), read from ``proc``; None when nobody's."""
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            text = (proc / pid / "stat").read_text()
            uid = os.stat(proc / pid).st_uid
        except OSError:
            continue  # gone meanwhile
        command, _, rest = text[text.index("(") + 1 :].rpartition(")")
        tty = int(rest.split()[4])  # state, ppid, pgrp, session, tty_nr
        if tty and (os.major(tty), os.minor(tty)) == (device.major, device.minor):
            return Holder(int(pid), command, uid)
    return None


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "a pipe or socket"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
