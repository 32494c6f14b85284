"""The nftables backend: a table of our own (``inet iotsec``) with a set per address family
(``flags interval, timeout``: the kernel expires bans itself, and networks work) and an input
and a forward chain that drop what the sets hold. Every change is one ``nft -f -`` batch, so
it applies whole or not at all; other tables are never touched. No shell: the script is built
from parsed addresses and fed on stdin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from engine.respond.firewall import Element, FirewallError
from engine.respond.targets import Network, shown

TABLE = "iotsec"
SETS = {4: "ban4", 6: "ban6"}
TYPES = {4: "ipv4_addr", 6: "ipv6_addr"}
MATCH = {4: "ip saddr", 6: "ip6 saddr"}
TIMEOUT = 10.0
LOG_PREFIX = "iotsec-ban: "
LOG_RATE = "6/minute"


def find_nft() -> str | None:
    return shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.path.exists(p)), None
    )


def _element(element: Element) -> str:
    text = shown(element.network)
    if element.timeout is None:
        return text
    # The kernel's timeouts are in whole milliseconds; a ban with less than that left is over.
    return f"{text} timeout {max(1, int(element.timeout * 1000))}ms"


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

    def install(self, elements: list[Element]) -> None:
        # Declaring the table first makes the delete succeed whether it existed or not; all of
        # it is one transaction, so there is no moment without our chains.
        lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}",
                 f"table inet {TABLE} {{"]  # fmt: skip
        for version, name in SETS.items():
            lines.append(f"  set {name} {{ type {TYPES[version]}; flags interval, timeout;"
                         " counter; }")  # fmt: skip
        for hook in ("input", "forward"):
            lines.append(f"  chain {hook} {{ type filter hook {hook} priority filter - 10;"
                         " policy accept;")  # fmt: skip
            for version, name in SETS.items():
                # A few drops a minute reach the kernel log (the iotsec-firewall log filter
                # reads them: a banned host still knocking); every one is counted and dropped.
                lines.append(f'    {MATCH[version]} @{name} limit rate {LOG_RATE} burst 3 packets'
                             f' log prefix "{LOG_PREFIX}" level info')  # fmt: skip
                lines.append(f"    {MATCH[version]} @{name} counter drop")
            lines.append("  }")
        lines.append("}")
        lines += self._adds(elements)
        self._run("-f", "-", script="\n".join(lines) + "\n")

    def _adds(self, elements: list[Element]) -> list[str]:
        lines = []
        for version, name in SETS.items():
            mine = [_element(e) for e in elements if e.network.version == version]
            for start in range(0, len(mine), 1000):
                chunk = ", ".join(mine[start : start + 1000])
                lines.append(f"add element inet {TABLE} {name} {{ {chunk} }}")
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
            name = SETS[network.version]
            # Adding it first makes the delete succeed even when the kernel already expired
            # the element; both are in one transaction.
            element = shown(network)
            lines.append(f"add element inet {TABLE} {name} {{ {element} timeout 1s }}")
            lines.append(f"delete element inet {TABLE} {name} {{ {element} }}")
        lines += self._adds(add)
        if lines:
            self._run("-f", "-", script="\n".join(lines) + "\n")

    def observe(self) -> dict[str, tuple[int, int]] | None:
        try:
            listed = json.loads(self._run("-j", "list", "table", "inet", TABLE))
        except (FirewallError, ValueError):
            return None
        items = listed.get("nftables", [])
        kinds = {(kind, item[kind].get("name")) for item in items
                 for kind in ("set", "chain") if kind in item}  # fmt: skip
        wanted = {("set", n) for n in SETS.values()} | {("chain", "input"), ("chain", "forward")}
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
        self._run("-f", "-", script=f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
