"""The fast header decoder: Ethernet (+VLAN), Linux cooked, raw IP, ARP, IPv4, IPv6, TCP, UDP,
ICMP and ICMPv6, with `struct` and slicing only. Scapy's full dissection is for one packet an
operator opens, not for this path.

A frame that is cut short or inconsistent is counted as malformed and skipped; an IP fragment
is counted and skipped (no reassembly). Nothing here raises on bad input.
"""

from __future__ import annotations

import socket
import struct

ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
# Link types (pcap LINKTYPE_*) the decoder understands.
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_SLL, LINK_IPV4, LINK_IPV6, LINK_SLL2 = (
    0, 1, 101, 113, 228, 229, 276,
)  # fmt: skip
# IPv6 extension headers that are skipped to reach the transport header.
IPV6_EXTENSIONS = {0, 43, 60, 51}
IPV6_FRAGMENT = 44
# ICMP message types and the type that answers them (echo, timestamp, information, address
# mask, router and neighbour discovery), both ways.
_PAIRS = {ICMP: [(8, 0), (13, 14), (15, 16), (17, 18), (10, 9)],
          ICMPV6: [(128, 129), (133, 134), (135, 136)]}  # fmt: skip
ICMP_ANSWERS = {
    proto: {**dict(pairs), **{b: a for a, b in pairs}} for proto, pairs in _PAIRS.items()
}

_U16 = struct.Struct("!H")
_PORTS = struct.Struct("!HH")
_ntop = socket.inet_ntop


class Packet:
    """What the engine needs of one frame; ``payload`` is the transport payload."""

    __slots__ = ("app", "dport", "dst", "dst_mac", "flags", "ip_version", "length", "payload",
                 "proto", "sport", "src", "src_mac", "ts", "vlan")  # fmt: skip

    def __init__(self, ts: float, length: int) -> None:
        self.ts = ts
        self.length = length
        self.src_mac = self.dst_mac = b""
        self.vlan = 0
        self.ip_version = 0
        self.src = self.dst = ""
        self.proto = 0
        self.sport = self.dport = 0
        self.flags = 0
        self.payload = b""
        self.app = ""  # the protocol tag, once the pipeline knows the packet's flow

    @property
    def is_arp(self) -> bool:
        return self.ip_version == 0 and self.proto == ETH_ARP


class Decoder:
    """Decodes frames and counts what it could not decode."""

    def __init__(self) -> None:
        self.decoded = 0
        self.malformed = 0
        self.fragments = 0
        self.unsupported = 0

    def decode(self, data: bytes, linktype: int, ts: float = 0.0, length: int = 0) -> Packet | None:
        """The decoded frame, or None when it was malformed, a fragment or not IP/ARP."""
        try:
            packet = self._decode(data, linktype, ts, length or len(data))
        except (struct.error, IndexError, ValueError):
            packet = None
            self.malformed += 1
        else:
            if packet is not None:
                self.decoded += 1
        return packet

    def _decode(self, data: bytes, linktype: int, ts: float, length: int) -> Packet | None:
        packet = Packet(ts, length)
        if linktype == LINK_ETHERNET:
            if len(data) < 14:
                raise ValueError("short ethernet")
            packet.dst_mac, packet.src_mac = data[0:6], data[6:12]
            ethertype = _U16.unpack_from(data, 12)[0]
            offset = 14
            while ethertype in (ETH_VLAN, ETH_QINQ):
                packet.vlan = _U16.unpack_from(data, offset)[0] & 0x0FFF
                ethertype = _U16.unpack_from(data, offset + 2)[0]
                offset += 4
        elif linktype == LINK_SLL:
            ethertype, offset = _U16.unpack_from(data, 14)[0], 16
            packet.src_mac = data[6:12]
        elif linktype == LINK_SLL2:
            ethertype, offset = _U16.unpack_from(data, 0)[0], 20
            packet.src_mac = data[12:18]
        elif linktype in (LINK_RAW, LINK_IPV4, LINK_IPV6):
            ethertype, offset = (ETH_IPV6 if data[0] >> 4 == 6 else ETH_IPV4), 0
        elif linktype == LINK_NULL:
            family = int.from_bytes(data[0:4], "little")
            ethertype, offset = (ETH_IPV4 if family == 2 else ETH_IPV6), 4
        else:
            self.unsupported += 1
            return None
        if ethertype == ETH_IPV4:
            return self._ipv4(packet, data, offset)
        if ethertype == ETH_IPV6:
            return self._ipv6(packet, data, offset)
        if ethertype == ETH_ARP:
            return self._arp(packet, data, offset)
        self.unsupported += 1
        return None

    def _ipv4(self, packet: Packet, data: bytes, offset: int) -> Packet | None:
        first = data[offset]
        header = (first & 0x0F) * 4
        if first >> 4 != 4 or header < 20 or len(data) < offset + header:
            raise ValueError("bad ipv4 header")
        total = _U16.unpack_from(data, offset + 2)[0]
        end = min(offset + total, len(data)) if total >= header else len(data)
        fragment = _U16.unpack_from(data, offset + 6)[0]
        packet.ip_version = 4
        packet.proto = data[offset + 9]
        packet.src = _ntop(socket.AF_INET, data[offset + 12 : offset + 16])
        packet.dst = _ntop(socket.AF_INET, data[offset + 16 : offset + 20])
        if fragment & 0x3FFF:  # more fragments, or an offset: not the whole datagram
            self.fragments += 1
            return None
        return self._transport(packet, data, offset + header, end)

    def _ipv6(self, packet: Packet, data: bytes, offset: int) -> Packet | None:
        if len(data) < offset + 40 or data[offset] >> 4 != 6:
            raise ValueError("bad ipv6 header")
        end = min(offset + 40 + _U16.unpack_from(data, offset + 4)[0], len(data))
        packet.ip_version = 6
        packet.src = _ntop(socket.AF_INET6, data[offset + 8 : offset + 24])
        packet.dst = _ntop(socket.AF_INET6, data[offset + 24 : offset + 40])
        proto, offset = data[offset + 6], offset + 40
        while proto in IPV6_EXTENSIONS:
            proto, offset = data[offset], offset + (data[offset + 1] + 1) * 8
        if proto == IPV6_FRAGMENT:
            self.fragments += 1
            return None
        packet.proto = proto
        return self._transport(packet, data, offset, end)

    def _transport(self, packet: Packet, data: bytes, offset: int, end: int) -> Packet:
        proto = packet.proto
        if proto == TCP:
            if end < offset + 20:
                raise ValueError("short tcp")
            packet.sport, packet.dport = _PORTS.unpack_from(data, offset)
            header = (data[offset + 12] >> 4) * 4
            if header < 20 or end < offset + header:
                raise ValueError("bad tcp header")
            packet.flags = data[offset + 13]
            packet.payload = data[offset + header : end]
        elif proto == UDP:
            if end < offset + 8:
                raise ValueError("short udp")
            packet.sport, packet.dport = _PORTS.unpack_from(data, offset)
            packet.payload = data[offset + 8 : end]
        elif proto in (ICMP, ICMPV6):
            if end < offset + 4:
                raise ValueError("short icmp")
            # As Zeek does: the type is the source "port" and the type that answers it the
            # destination one, so an echo and its reply are one flow; the code goes in flags.
            kind = data[offset]
            packet.sport = kind
            packet.dport = ICMP_ANSWERS[proto].get(kind, kind)
            packet.flags = data[offset + 1]
            packet.payload = data[offset + 4 : end]
        return packet

    def _arp(self, packet: Packet, data: bytes, offset: int) -> Packet:
        if len(data) < offset + 28:
            raise ValueError("short arp")
        packet.proto = ETH_ARP
        packet.flags = _U16.unpack_from(data, offset + 6)[0]  # 1 request, 2 reply
        packet.src = _ntop(socket.AF_INET, data[offset + 14 : offset + 18])
        packet.dst = _ntop(socket.AF_INET, data[offset + 24 : offset + 28])
        packet.src_mac = data[offset + 8 : offset + 14]
        return packet
