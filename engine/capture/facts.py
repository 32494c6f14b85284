"""Facts that traffic reveals about the hosts on the network, for the device inventory: every new
MAC/IP pair, the IPv6 addresses neighbour discovery says are on the link, DHCP host names and
vendor classes, mDNS and SSDP announcements.

Each fact is a small dict published on the ``facts`` topic; the pairs already reported are
remembered in a bounded table so a busy network does not repeat them, nor grow memory. The
pairs seen are also kept until the owner takes them (``take_seen``), so the inventory knows
who is still there without a fact per packet.

Where the interface a frame came in on has addresses of this box, a source address is local
only inside that interface's networks (or link-local): anything else came through a router, and
the frame's MAC is the router's, not that address's (``via`` link for a local one; a routed one
is seen as the MAC alone, with no address).
"""

from __future__ import annotations

import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.capture.decode import ICMPV6, Packet

if TYPE_CHECKING:
    from engine.thisbox import Network

NO_MAC = b"\0\0\0\0\0\0"
MAX_PAIRS = 65_536
# Neighbour discovery (RFC 4861), by ICMPv6 type: where the options start in the message body
# (after type, code and checksum) and the option that carries the sender's link-layer address
# (1 source, 2 target). Router and neighbour solicitations and router advertisements vouch for
# their source address; a neighbour advertisement for its target.
NDP_OPTIONS = {133: (4, 1), 134: (12, 1), 135: (20, 1), 136: (20, 2)}
NA, NA_OVERRIDE = 136, 0x20
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


class FactFinder:
    def __init__(self, max_pairs: int = MAX_PAIRS,
                 links: Mapping[str, Sequence[Network]] | None = None) -> None:  # fmt: skip
        self.max_pairs = max_pairs
        # Each capture interface's own networks (this box's addresses on it), and what they
        # say of the (interface, address) pairs met so far.
        self.links: Mapping[str, Sequence[Network]] = links or {}
        self._where_seen: dict[tuple[str, str], str] = {}
        self._pairs: OrderedDict[tuple[bytes, str], None] = OrderedDict()
        self._ndp_pairs: OrderedDict[tuple[bytes, str], None] = OrderedDict()
        self._seen: set[tuple[bytes, str]] = set()

    def hosts(self, packet: Packet, iface: str, facts: list[dict[str, Any]]) -> None:
        """Add to ``facts`` the MAC/IP pairs ``packet`` shows that were not reported before:
        its source's (``via`` arp, link when local to ``iface``'s networks, or ip when that is
        not known), and the one a neighbour discovery message vouches for (``via`` ndp: that
        address is on the link, at that MAC)."""
        mac = packet.src_mac
        if not mac or mac == NO_MAC or not packet.src or packet.src in ("0.0.0.0", "::"):
            return
        via = "arp" if packet.is_arp else self._where(packet.src, iface) if self.links else "ip"
        pair = (mac, packet.src if via != "routed" else "")
        seen = self._seen
        if len(seen) < self.max_pairs:
            seen.add(pair)
        if via != "routed" and pair not in self._pairs:
            _remember(self._pairs, pair, self.max_pairs)
            facts.append(_host(packet, iface, packet.src, via))
        if packet.proto == ICMPV6 and packet.ip_version == 6 and packet.sport in NDP_OPTIONS:
            address = _vouched(packet)
            if address and (mac, address) not in self._ndp_pairs:
                _remember(self._ndp_pairs, (mac, address), self.max_pairs)
                facts.append(_host(packet, iface, address, "ndp"))

    def set_links(self, links: Mapping[str, Sequence[Network]]) -> None:
        self.links = links
        self._where_seen = {}

    def _where(self, src: str, iface: str) -> str:
        """ "link" when ``src`` is in a network of ``iface`` (or link-local), "routed" when
        ``iface`` has networks of its version and none holds it, "ip" when that is not known
        (a file, an interface without addresses)."""
        known = self._where_seen.get((iface, src))
        if known is not None:
            return known
        if len(self._where_seen) >= self.max_pairs:
            self._where_seen = {}
        found = self._where_seen[iface, src] = _where(src, self.links.get(iface, ()))
        return found

    def take_seen(self) -> set[tuple[str, str]]:
        """The (MAC, IP) pairs seen since the last call; IP '' for a MAC seen forwarding."""
        seen, self._seen = self._seen, set()
        return {(mac.hex(":"), ip) for mac, ip in seen}

    @staticmethod
    def announced(
        tag: str, found: dict[str, Any], packet: Packet, iface: str
    ) -> dict[str, Any] | None:
        """A fact for a DHCP, mDNS or SSDP message that names or describes a host."""
        base = {"ts": packet.ts, "iface": iface, "ip": packet.src,
                "mac": packet.src_mac.hex(":") if packet.src_mac else ""}  # fmt: skip
        # A client names itself in DISCOVER/REQUEST; the server's ACK says which address it has.
        acked = found.get("type") == "ACK" and "your_ip" in found
        if tag == "dhcp" and ("hostname" in found or "vendor_class" in found or acked):
            fact = {**base, "kind": "dhcp", "mac": found.get("client_mac", base["mac"])}
            for key in ("hostname", "vendor_class", "requested_ip", "type", "your_ip"):
                if key in found:
                    fact[key] = found[key]
            return fact
        if tag == "mdns" and found.get("response") and ("hosts" in found or "services" in found):
            return {**base, "kind": "mdns", "hosts": found.get("hosts", []),
                    "services": found.get("services", [])}  # fmt: skip
        if tag == "ssdp" and found.get("method") in ("NOTIFY", "response"):
            fact = {**base, "kind": "ssdp"}
            for key in ("server", "location", "usn", "nt", "st"):
                if key in found:
                    fact[key] = found[key]
            return fact
        return None


def _where(src: str, networks: Sequence[Network]) -> str:
    address = ipaddress.ip_address(src)
    if any(address in network for network in LINK_LOCAL):
        return "link" if networks else "ip"
    same = [n for n in networks if n.version == address.version]
    if not same:
        return "ip"
    return "link" if any(address in network for network in same) else "routed"


def _vouched(packet: Packet) -> str:
    """The IPv6 address a neighbour discovery message says is at its frame's source MAC, or ''.

    Only when the message's link-layer address option names the frame's own source MAC: a
    router forwarding someone else's message sends it from its own MAC. A neighbour
    advertisement counts only with its override flag set: a proxy answering for a host behind
    it (with its own MAC) clears it (RFC 4861, 7.2.8).
    """
    start, wanted = NDP_OPTIONS[packet.sport]
    body = packet.payload
    if packet.flags:  # the code: 0 in every neighbour discovery message
        return ""
    if packet.sport == NA:
        if len(body) < start or not body[0] & NA_OVERRIDE or body[4] == 0xFF:
            return ""  # too short, from a proxy, or for a multicast address
        address = socket.inet_ntop(socket.AF_INET6, body[4:20])
        if address == "::":
            return ""
    else:
        address = packet.src
    offset = start
    while offset + 8 <= len(body):
        kind, units = body[offset], body[offset + 1]
        if not units:  # a zero length: malformed, the message is to be ignored
            return ""
        if kind == wanted:
            return address if body[offset + 2 : offset + 8] == packet.src_mac else ""
        offset += units * 8
    return ""


def _host(packet: Packet, iface: str, address: str, via: str) -> dict[str, Any]:
    return {"kind": "host", "ts": packet.ts, "iface": iface, "mac": packet.src_mac.hex(":"),
            "ip": address, "via": via}  # fmt: skip


def _remember(table: OrderedDict[tuple[bytes, str], None], pair: tuple[bytes, str],
              size: int) -> None:  # fmt: skip
    table[pair] = None
    if len(table) > size:
        table.popitem(last=False)
