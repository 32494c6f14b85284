"""The iptables + ipset backend, for hosts without nft: an ipset per address family
(``hash:net`` with timeouts and counters: the kernel expires bans itself, networks work) and a
chain of our own (``IOTSEC``) that drops what they hold, jumped to first from INPUT and
FORWARD. Set changes go through one ``ipset restore``; no shell, addresses parsed before use."""

from __future__ import annotations

import os
import shutil
import subprocess

from engine.respond.firewall import Element, FirewallError
from engine.respond.nftables import LOG_PREFIX
from engine.respond.targets import Network, shown

SETS = {4: "iotsec4", 6: "iotsec6"}
FAMILIES = {4: "inet", 6: "inet6"}
CHAIN = "IOTSEC"
HOOKS = ("INPUT", "FORWARD")
# ipset's longest timeout (seconds); a longer ban is held without one and lifted by the engine.
MAX_TIMEOUT = 2147483
TIMEOUT = 10.0


def _find(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None
    )


class Iptables:
    name = "iptables"
    enforcing = True

    def __init__(self) -> None:
        tools = {name: _find(name) for name in ("iptables", "ip6tables", "ipset")}
        missing = [name for name, path in tools.items() if path is None]
        if missing:
            raise FirewallError(
                f"{' and '.join(missing)} not installed (Debian: apt-get install iptables ipset)"
            )
        self.ipset = str(tools["ipset"])
        self.tables = {4: str(tools["iptables"]), 6: str(tools["ip6tables"])}

    def _run(self, argv: list[str], script: str | None = None, check: bool = True) -> str:
        try:
            done = subprocess.run(argv, input=script, capture_output=True, text=True,
                                  timeout=TIMEOUT)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"{argv[0]} failed to run: {exc}") from None
        if check and done.returncode != 0:
            error = done.stderr.strip().splitlines()
            message = error[0] if error else f"exited with {done.returncode}"
            permission = "not permitted" in done.stderr or "Permission denied" in done.stderr
            raise FirewallError(f"{os.path.basename(argv[0])}: {message}", permission=permission)
        return done.stdout if done.returncode == 0 else ""

    def _restore(self, lines: list[str]) -> None:
        if lines:
            self._run([self.ipset, "restore", "-exist"], script="\n".join(lines) + "\n")

    @staticmethod
    def _add(element: Element) -> str:
        name = SETS[element.network.version]
        timeout = 0 if element.timeout is None else max(1, int(element.timeout))
        if timeout > MAX_TIMEOUT:
            timeout = 0
        return f"add {name} {shown(element.network)} timeout {timeout}"

    def install(self, elements: list[Element]) -> None:
        lines = []
        for version, name in SETS.items():
            lines.append(f"create {name} hash:net family {FAMILIES[version]} timeout 0 counters")
            lines.append(f"flush {name}")
        lines += [self._add(e) for e in elements]
        self._restore(lines)
        for version, tool in self.tables.items():
            self._run([tool, "-w", "-N", CHAIN], check=False)  # exists already: fine
            self._run([tool, "-w", "-F", CHAIN])
            match = ["-m", "set", "--match-set", SETS[version], "src"]
            self._run([tool, "-w", "-A", CHAIN, *match, "-m", "limit", "--limit", "6/min",
                       "--limit-burst", "3", "-j", "LOG", "--log-prefix", LOG_PREFIX])  # fmt: skip
            self._run([tool, "-w", "-A", CHAIN, *match, "-j", "DROP"])
            for hook in HOOKS:
                if not self._checks([tool, "-w", "-C", hook, "-j", CHAIN]):
                    self._run([tool, "-w", "-I", hook, "1", "-j", CHAIN])

    def change(self, add: list[Element], remove: list[Network]) -> None:
        lines = [f"del {SETS[n.version]} {shown(n)}" for n in remove]
        self._restore(lines + [self._add(e) for e in add])

    def observe(self) -> dict[str, tuple[int, int]] | None:
        counts: dict[str, tuple[int, int]] = {}
        for name in SETS.values():
            listing = self._run([self.ipset, "list", name], check=False)
            if "Members:" not in listing:
                return None  # the set is gone
            for line in listing.split("Members:", 1)[1].splitlines():
                words = line.split()
                if not words:
                    continue
                fields = dict(zip(words[1::2], words[2::2], strict=False))
                counts[words[0]] = (int(fields.get("packets", 0)), int(fields.get("bytes", 0)))
        for version, tool in self.tables.items():
            rule = [tool, "-w", "-C", CHAIN, "-m", "set", "--match-set", SETS[version], "src",
                    "-j", "DROP"]  # fmt: skip
            if not self._checks(rule):
                return None
            for hook in HOOKS:
                if not self._checks([tool, "-w", "-C", hook, "-j", CHAIN]):
                    return None
        return counts

    def _checks(self, argv: list[str]) -> bool:
        try:
            done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def uninstall(self) -> None:
        for tool in self.tables.values():
            for hook in HOOKS:
                while self._checks([tool, "-w", "-C", hook, "-j", CHAIN]):
                    self._run([tool, "-w", "-D", hook, "-j", CHAIN])
            self._run([tool, "-w", "-F", CHAIN], check=False)
            self._run([tool, "-w", "-X", CHAIN], check=False)
        for name in SETS.values():
            self._run([self.ipset, "destroy", name], check=False)
