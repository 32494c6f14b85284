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
VLAN_TAGS = frozenset((ETH_VLAN, ETH_QINQ))
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
# Only the fields the decoder reads: one unpack instead of several indexings per header.
_ETHERNET = struct.Struct("!6s6sH")  # destination, source, ethertype
_VLAN = struct.Struct("!HH")  # tag control (priority, VLAN id), inner ethertype
_IPV4 = struct.Struct("!BxHxxHxBxx8s")  # version+IHL, total length, fragment, proto, addresses
_TCP = struct.Struct("!HHI4xBB")  # ports, sequence number, data offset, flags
_ntop = socket.inet_ntop
_new_packet = object.__new__
# How many address pairs the decoder keeps the text of (a few MB at most).
NAMES_KEPT = 16_384


class Packet:
    """What the engine needs of one frame; ``payload`` is the transport payload."""

    __slots__ = ("app", "dport", "dst", "dst_mac", "flags", "ip_version", "length", "payload",
                 "proto", "seq", "sport", "src", "src_mac", "ts", "vlan")  # fmt: skip

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
        self.seq = 0  # TCP's sequence number (stream reassembly for rules)
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
        # The text of raw address pairs seen before: most traffic is between a few hundred
        # hosts, and one dict hit costs less than two inet_ntop calls and their slices.
        self._names: dict[bytes, tuple[str, str]] = {}

    def decode(self, data: bytes, linktype: int, ts: float = 0.0, length: int = 0) -> Packet | None:
        """The decoded frame, or None when it was malformed, a fragment or not IP/ARP."""
        # One function from the link layer to the transport, the fields in locals until the
        # packet is built at the end: this runs for every frame, and each call or attribute
        # store saved here shows in the packet rate.
        try:
            vlan = 0
            if linktype == LINK_ETHERNET:
                dst_mac, src_mac, ethertype = _ETHERNET.unpack_from(data)
                offset = 14
                while ethertype in VLAN_TAGS:
                    vlan, ethertype = _VLAN.unpack_from(data, offset)
                    vlan &= 0x0FFF
                    offset += 4
            else:
                link = _link(data, linktype)
                if link is None:
                    self.unsupported += 1
                    return None
                ethertype, offset, src_mac = link
                dst_mac = b""

            size = len(data)
            if ethertype == ETH_IPV4:
                first, total, fragment, proto, raw = _IPV4.unpack_from(data, offset)
                header = (first & 0x0F) * 4
                if first >> 4 != 4 or header < 20 or size < offset + header:
                    raise ValueError("bad ipv4 header")
                if fragment & 0x3FFF:  # more fragments, or an offset: not the whole datagram
                    self.fragments += 1
                    return None
                end = offset + total if header <= total and offset + total < size else size
                ip_version = 4
                offset += header
            elif ethertype == ETH_IPV6:
                if size < offset + 40 or data[offset] >> 4 != 6:
                    raise ValueError("bad ipv6 header")
                end = min(offset + 40 + _U16.unpack_from(data, offset + 4)[0], size)
                ip_version, proto = 6, data[offset + 6]
                raw = data[offset + 8 : offset + 40]
                offset += 40
                while proto in IPV6_EXTENSIONS:
                    proto, offset = data[offset], offset + (data[offset + 1] + 1) * 8
                if proto == IPV6_FRAGMENT:
                    self.fragments += 1
                    return None
            elif ethertype == ETH_ARP:
                packet = _arp(data, offset, Packet(ts, length or size), dst_mac, vlan)
                self.decoded += 1
                return packet
            else:
                self.unsupported += 1
                return None

            if proto == TCP:
                if end < offset + 20:
                    raise ValueError("short tcp")
                sport, dport, seq, header, flags = _TCP.unpack_from(data, offset)
                header = (header >> 4) * 4
                if header < 20 or end < offset + header:
                    raise ValueError("bad tcp header")
                payload = data[offset + header : end]
            elif proto == UDP:
                if end < offset + 8:
                    raise ValueError("short udp")
                sport, dport = _PORTS.unpack_from(data, offset)
                flags = seq = 0
                payload = data[offset + 8 : end]
            elif proto in (ICMP, ICMPV6):
                if end < offset + 4:
                    raise ValueError("short icmp")
                # As Zeek does: the type is the source "port" and the type that answers it the
                # destination one, so an echo and its reply are one flow; the code goes in flags.
                sport = data[offset]
                dport = ICMP_ANSWERS[proto].get(sport, sport)
                flags = data[offset + 1]
                seq = 0
                payload = data[offset + 4 : end]
            else:
                sport = dport = flags = seq = 0
                payload = b""
        except (struct.error, IndexError, ValueError):
            self.malformed += 1
            return None
        names = self._names.get(raw) or self._name(raw)
        self.decoded += 1
        # Every slot is set here, so Packet.__init__'s defaults (each overwritten) are skipped.
        packet = _new_packet(Packet)
        packet.ts, packet.length, packet.app = ts, length or size, ""
        packet.src_mac, packet.dst_mac, packet.vlan = src_mac, dst_mac, vlan
        packet.ip_version, packet.proto, packet.flags = ip_version, proto, flags
        packet.src, packet.dst = names
        packet.sport, packet.dport, packet.payload, packet.seq = sport, dport, payload, seq
        return packet

    def names(self, raw: bytes) -> tuple[str, str]:
        """The text of a raw (source, destination) address pair (4 or 16 bytes each)."""
        return self._names.get(raw) or self._name(raw)

    def _name(self, raw: bytes) -> tuple[str, str]:
        """:meth:`names` the first time ``raw`` is seen, remembered (boundedly)."""
        half = len(raw) // 2
        family = socket.AF_INET if half == 4 else socket.AF_INET6
        names = _ntop(family, raw[:half]), _ntop(family, raw[half:])
        if len(self._names) >= NAMES_KEPT:
            self._names.clear()
        self._names[raw] = names
        return names


def _link(data: bytes, linktype: int) -> tuple[int, int, bytes] | None:
    """The ethertype, where its payload starts and the source MAC, for the link types other
    than Ethernet; None for a link type the decoder does not know."""
    if linktype == LINK_SLL:
        return _U16.unpack_from(data, 14)[0], 16, data[6:12]
    if linktype == LINK_SLL2:
        return _U16.unpack_from(data, 0)[0], 20, data[12:18]
    if linktype in (LINK_RAW, LINK_IPV4, LINK_IPV6):
        return (ETH_IPV6 if data[0] >> 4 == 6 else ETH_IPV4), 0, b""
    if linktype == LINK_NULL:
        family = int.from_bytes(data[0:4], "little")
        return (ETH_IPV4 if family == 2 else ETH_IPV6), 4, b""
    return None


def _arp(data: bytes, offset: int, packet: Packet, dst_mac: bytes, vlan: int) -> Packet:
    if len(data) < offset + 28:
        raise ValueError("short arp")
    packet.dst_mac, packet.vlan = dst_mac, vlan
    packet.proto = ETH_ARP
    packet.flags = _U16.unpack_from(data, offset + 6)[0]  # 1 request, 2 reply
    packet.src = _ntop(socket.AF_INET, data[offset + 14 : offset + 18])
    packet.dst = _ntop(socket.AF_INET, data[offset + 24 : offset + 28])
    packet.src_mac = data[offset + 8 : offset + 14]
    return packet
