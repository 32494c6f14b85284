"""The iptables + ipset backend, for hosts without nft: an ipset per address family
(``hash:net`` with timeouts and counters: the kernel expires bans itself, networks work) and a
chain of our own (``IOTSEC``) that drops what they hold, jumped to first from INPUT and
FORWARD. Set changes go through one ``ipset restore``; no shell, and the restore script is
built from parsed addresses and checked values (engine/respond/script.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

from engine.respond.firewall import Element, FirewallError, Refused, add_apart
from engine.respond.nftables import LOG_PREFIX
from engine.respond.script import element, name, time_left, writable
from engine.respond.targets import Network

SETS = {4: name("iotsec4"), 6: name("iotsec6")}
FAMILIES = {4: name("inet"), 6: name("inet6")}
CHAIN = name("IOTSEC")
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
        tools = {tool: _find(tool) for tool in ("iptables", "ip6tables", "ipset")}
        missing = [tool for tool, path in tools.items() if path is None]
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
    def _add(item: Element) -> str:
        seconds = time_left(item, MAX_TIMEOUT)
        timeout = 0 if seconds is None else max(1, int(seconds))
        return f"add {SETS[item.network.version]} {element(item.network)} timeout {timeout}"

    def _add_batch(self, elements: list[Element]) -> None:
        self._restore([self._add(e) for e in elements])

    def install(self, elements: list[Element]) -> list[Refused]:
        good, refused = writable(elements, self._add)
        sets = []
        for version, set_name in SETS.items():
            sets.append(f"create {set_name} hash:net family {FAMILIES[version]} timeout 0"
                        " counters")  # fmt: skip
            sets.append(f"flush {set_name}")
        try:
            self._restore(sets + [self._add(e) for e in good])
        except FirewallError as exc:
            if exc.permission or not good:
                raise
            # An element ipset refuses (a stored /0) stops the restore at its line: the sets
            # are made empty, then the elements go in apart, so the others land.
            self._restore(sets)
            refused += add_apart(self._add_batch, good)
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
        return refused

    def change(self, add: list[Element], remove: list[Network]) -> None:
        lines = [f"del {SETS[n.version]} {element(n)}" for n in remove]
        self._restore(lines + [self._add(e) for e in add])

    def observe(self) -> dict[str, tuple[int, int]] | None:
        counts: dict[str, tuple[int, int]] = {}
        for set_name in SETS.values():
            listing = self._run([self.ipset, "list", set_name], check=False)
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
        for set_name in SETS.values():
            self._run([self.ipset, "destroy", set_name], check=False)
