"""Facts that traffic reveals about the hosts on the network, for the device inventory: every new
MAC/IP pair, DHCP host names and vendor classes, mDNS and SSDP announcements.

Each fact is a small dict published on the ``facts`` topic; the pairs already reported are
remembered in a bounded table so a busy network does not repeat them, nor grow memory. The
pairs seen are also kept until the owner takes them (``take_seen``), so the inventory knows
who is still there without a fact per packet.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from engine.capture.decode import Packet

NO_MAC = b"\0\0\0\0\0\0"
MAX_PAIRS = 65_536


class FactFinder:
    def __init__(self, max_pairs: int = MAX_PAIRS) -> None:
        self.max_pairs = max_pairs
        self._pairs: OrderedDict[tuple[bytes, str], None] = OrderedDict()
        self._seen: set[tuple[bytes, str]] = set()

    def host(self, packet: Packet, iface: str) -> dict[str, Any] | None:
        """A fact when ``packet`` shows a MAC/IP pair not reported before."""
        mac = packet.src_mac
        if not mac or mac == NO_MAC or not packet.src or packet.src in ("0.0.0.0", "::"):
            return None
        pair = (mac, packet.src)
        seen = self._seen
        if len(seen) < self.max_pairs:
            seen.add(pair)
        if pair in self._pairs:
            return None
        self._pairs[pair] = None
        if len(self._pairs) > self.max_pairs:
            self._pairs.popitem(last=False)
        return {"kind": "host", "ts": packet.ts, "iface": iface, "mac": mac.hex(":"),
                "ip": packet.src, "via": "arp" if packet.is_arp else "ip"}  # fmt: skip

    def take_seen(self) -> set[tuple[str, str]]:
        """The (MAC, IP) pairs seen since the last call."""
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
