"""The nftables backend: a table of our own (``inet iotsec``) with a set per address family
(``flags interval, timeout``: the kernel expires bans itself, and networks work) and an input
and a forward chain that drop what the sets hold. Every change is one ``nft -f -`` batch, so
it applies whole or not at all; other tables are never touched. No shell: the script is built
from parsed addresses and checked values (engine/respond/script.py) and fed on stdin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from engine.durations import MAX_SECONDS
from engine.respond.firewall import Element, FirewallError, Refused, add_apart
from engine.respond.script import element, name, time_left, words, writable
from engine.respond.targets import Network

TABLE = name("iotsec")
SETS = {4: name("ban4"), 6: name("ban6")}
TYPES = {4: name("ipv4_addr"), 6: name("ipv6_addr")}
MATCH = {4: words("ip saddr"), 6: words("ip6 saddr")}
HOOKS = (name("input"), name("forward"))
TIMEOUT = 10.0
LOG_PREFIX = words("iotsec-ban: ")
LOG_RATE = words("6/minute")
# nft takes at most 99999999 of one unit in a timeout ("value too large"), so a timeout is
# written in days, hours, minutes, seconds and milliseconds.
_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def find_nft() -> str | None:
    return shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.path.exists(p)), None
    )


def _element(item: Element) -> str:
    text = element(item.network)
    seconds = time_left(item, MAX_SECONDS)
    if seconds is None:
        return text
    # The kernel's timeouts are in whole milliseconds; a ban with less than that left is over.
    left = max(1, int(seconds * 1000))
    timeout = []
    for unit, size in _UNITS:
        count, left = divmod(left, size)
        if count:
            timeout.append(f"{count}{unit}")
    return f"{text} timeout {''.join(timeout)}"


def _script(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


class Nftables:
    name = "nftables"
    enforcing = True

    def __init__(self, nft: str | None = None) -> None:
        found = nft or find_nft()
        if found is None:
            raise FirewallError("nft is not installed (Debian: apt-get install nftables)")
        self.nft = found

    def _run(self, *args: str, script: str | None = None) -> str:
        try:
            done = subprocess.run([self.nft, *args], input=script, capture_output=True,
                                  text=True, timeout=TIMEOUT)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FirewallError(f"nft failed to run: {exc}") from None
        if done.returncode != 0:
            error = done.stderr.strip().splitlines()
            message = error[0] if error else f"nft exited with {done.returncode}"
            permission = "Operation not permitted" in done.stderr
            raise FirewallError(f"nft: {message}", permission=permission)
        return done.stdout

    def _table(self) -> list[str]:
        # Declaring the table first makes the delete succeed whether it existed or not; all of
        # it is one transaction, so there is no moment without our chains.
        lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}",
                 f"table inet {TABLE} {{"]  # fmt: skip
        for version, set_name in SETS.items():
            lines.append(f"  set {set_name} {{ type {TYPES[version]}; flags interval, timeout;"
                         " counter; }")  # fmt: skip
        for hook in HOOKS:
            lines.append(f"  chain {hook} {{ type filter hook {hook} priority filter - 10;"
                         " policy accept;")  # fmt: skip
            for version, set_name in SETS.items():
                # A few drops a minute reach the kernel log (the iotsec-firewall log filter
                # reads them: a banned host still knocking); every one is counted and dropped.
                lines.append(f"    {MATCH[version]} @{set_name} limit rate {LOG_RATE} burst 3"
                             f' packets log prefix "{LOG_PREFIX}" level info')  # fmt: skip
                lines.append(f"    {MATCH[version]} @{set_name} counter drop")
            lines.append("  }")
        lines.append("}")
        return lines

    def install(self, elements: list[Element]) -> list[Refused]:
        good, refused = writable(elements, _element)
        table = self._table()
        try:
            self._run("-f", "-", script=_script(table + self._adds(good)))
        except FirewallError as exc:
            if exc.permission or not good:
                raise
            # An element nft refuses (a stored interval that overlaps another) fails the whole
            # batch: the table goes in empty, then the elements apart, so the others land.
            self._run("-f", "-", script=_script(table))
            refused += add_apart(self._add_batch, good)
        return refused

    def _add_batch(self, elements: list[Element]) -> None:
        self._run("-f", "-", script=_script(self._adds(elements)))

    def _adds(self, elements: list[Element]) -> list[str]:
        lines = []
        for version, set_name in SETS.items():
            mine = [_element(e) for e in elements if e.network.version == version]
            for start in range(0, len(mine), 1000):
                chunk = ", ".join(mine[start : start + 1000])
                lines.append(f"add element inet {TABLE} {set_name} {{ {chunk} }}")
        return lines

    def change(self, add: list[Element], remove: list[Network]) -> None:
        # nft checks a new interval against the set as it was before the batch: an element
        # that replaces ones it overlaps goes in a second batch, right after their removal.
        if any(e.network.overlaps(n) for e in add for n in remove
               if e.network.version == n.version):  # fmt: skip
            self._change([], remove)
            self._change(add, [])
        else:
            self._change(add, remove)

    def _change(self, add: list[Element], remove: list[Network]) -> None:
        lines = []
        for network in remove:
            set_name = SETS[network.version]
            # Adding it first makes the delete succeed even when the kernel already expired
            # the element; both are in one transaction.
            text = element(network)
            lines.append(f"add element inet {TABLE} {set_name} {{ {text} timeout 1s }}")
            lines.append(f"delete element inet {TABLE} {set_name} {{ {text} }}")
        lines += self._adds(add)
        if lines:
            self._run("-f", "-", script=_script(lines))

    def observe(self) -> dict[str, tuple[int, int]] | None:
        try:
            listed = json.loads(self._run("-j", "list", "table", "inet", TABLE))
        except (FirewallError, ValueError):
            return None
        items = listed.get("nftables", [])
        kinds = {(kind, item[kind].get("name")) for item in items
                 for kind in ("set", "chain") if kind in item}  # fmt: skip
        wanted = {("set", n) for n in SETS.values()} | {("chain", h) for h in HOOKS}
        if not wanted <= kinds:
            return None
        counts: dict[str, tuple[int, int]] = {}
        for item in items:
            for entry in item.get("set", {}).get("elem", []):
                elem = entry.get("elem", entry) if isinstance(entry, dict) else entry
                if not isinstance(elem, dict):
                    continue
                value = elem.get("val")
                if isinstance(value, dict) and "prefix" in value:
                    value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
                counter = elem.get("counter") or {}
                counts[str(value)] = (int(counter.get("packets", 0)),
                                      int(counter.get("bytes", 0)))  # fmt: skip
        return counts

    def uninstall(self) -> None:
        self._run(
            "-f", "-", script=_script([f"table inet {TABLE} {{}}", f"delete table inet {TABLE}"])
        )
