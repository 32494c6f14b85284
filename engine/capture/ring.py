"""The ring of recent raw packets, bounded by bytes, so an operator can open any recent packet
or save a slice of them as a pcap file. Each packet gets a sequence number that stays its id.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import NamedTuple

from engine.capture.flows import FlowKey

# What one slot costs beyond its bytes (the tuple, the bytes object header, the deque slot).
OVERHEAD = 120


class RingPacket(NamedTuple):
    """One remembered frame. A named tuple, not a frozen dataclass: one is built for every packet
    captured, and a frozen dataclass costs three times as much to build."""

    id: int
    ts: float
    linktype: int
    data: bytes
    wire_length: int
    iface: str
    key: FlowKey


class PacketRing:
    def __init__(self, capacity: int = 32 << 20) -> None:
        self.capacity = capacity
        self._packets: deque[RingPacket] = deque()
        self.size = 0
        self.next_id = 1

    def __len__(self) -> int:
        return len(self._packets)

    def add(self, ts: float, linktype: int, data: bytes, wire_length: int, iface: str,
            key: FlowKey) -> int:  # fmt: skip
        packet = RingPacket(self.next_id, ts, linktype, data, wire_length, iface, key)
        self.next_id += 1
        self._packets.append(packet)
        self.size += len(data) + OVERHEAD
        while self.size > self.capacity and self._packets:
            self.size -= len(self._packets.popleft().data) + OVERHEAD
        return packet.id

    def get(self, packet_id: int) -> RingPacket | None:
        if not self._packets:
            return None
        index = packet_id - self._packets[0].id
        if 0 <= index < len(self._packets):
            return self._packets[index]
        return None

    def select(self, keep: Callable[[RingPacket], bool], limit: int = 0) -> list[RingPacket]:
        """The newest ``limit`` packets (all when 0) that ``keep`` accepts, oldest first."""
        found: list[RingPacket] = []
        for packet in reversed(self._packets):
            if keep(packet):
                found.append(packet)
                if limit and len(found) >= limit:
                    break
        found.reverse()
        return found

    def __iter__(self) -> Iterator[RingPacket]:
        return iter(self._packets)
