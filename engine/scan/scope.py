"""What a scan may touch: the networks of ``[scan] scope``. Targets (addresses, networks,
ranges such as ``10.0.0.5-20``) are expanded only after every one of them was checked against
the scope; a target outside it refuses the whole scan, naming the target and the scope. Names
are never resolved (a lookup would leave the machine)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A scan of more addresses than this is refused: a typo such as /8 for /24 should not start
# sixteen million probes.
MAX_TARGETS = 65_536


class ScopeError(ValueError):
    """A target that is malformed, outside the scope, or too many of them."""


def parse_scope(entries: Iterable[str]) -> list[Network]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ScopeError(f"scope: {entry!r} is not a network (e.g. 192.168.1.0/24)") from None
    return networks


def expand(targets: Iterable[str], scope: list[Network]) -> list[Address]:
    """Every address of ``targets``, in order, without duplicates; ScopeError when one is
    malformed or not inside ``scope``, or when there are more than MAX_TARGETS."""
    if not scope:
        raise ScopeError(
            "no scan scope is configured: add the networks you may scan to [scan] scope, "
            'e.g. scope = ["192.168.1.0/24"]'
        )
    parts = [_parse(text) for text in targets]
    if not parts:
        raise ScopeError("no target given")
    total = 0
    for text, first, last in parts:
        if not any(first in net and last in net for net in scope):
            shown = ", ".join(str(n) for n in scope)
            raise ScopeError(f"{text} is outside the scan scope ({shown}): refused")
        total += int(last) - int(first) + 1
        if total > MAX_TARGETS:
            raise ScopeError(f"more than {MAX_TARGETS} addresses to scan: give a smaller range")
    seen: set[Address] = set()
    out: list[Address] = []
    for _, first, last in parts:
        for number in range(int(first), int(last) + 1):
            address = ipaddress.ip_address(number) if first.version == 4 else \
                ipaddress.IPv6Address(number)  # fmt: skip
            if address not in seen:
                seen.add(address)
                out.append(address)
    return out


def _parse(text: str) -> tuple[str, Address, Address]:
    """(text, first, last) of an address, a network (its usable hosts) or a range."""
    text = text.strip()
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            first, last = _ends(network)
            return text, first, last
        if "-" in text:
            start, end = text.split("-", 1)
            first = ipaddress.ip_address(start)
            last = ipaddress.ip_address(end) if ("." in end or ":" in end) else \
                _same_prefix(first, end)  # fmt: skip
            if last.version != first.version or last < first:
                raise ValueError
            return text, first, last
        address = ipaddress.ip_address(text)
        return text, address, address
    except ValueError:
        raise ScopeError(
            f"{text!r} is not an address, network or range (10.0.0.5, 10.0.0.0/24, "
            "10.0.0.5-20); names are not resolved"
        ) from None


def _ends(network: Network) -> tuple[Address, Address]:
    """The first and last address worth probing: a /24's hosts, not its network and broadcast."""
    if network.num_addresses <= 2 or network.version == 6:
        return network.network_address, network.broadcast_address
    return network.network_address + 1, network.broadcast_address - 1


def _same_prefix(first: Address, end: str) -> Address:
    """``10.0.0.5-20``: the range's end is the last octet of the same network."""
    if first.version != 4 or not end.isdigit() or int(end) > 255:
        raise ValueError
    return ipaddress.IPv4Address((int(first) & ~0xFF) | int(end))
