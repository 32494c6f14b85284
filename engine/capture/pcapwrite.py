"""Writing captured frames back out: classic pcap (one link type, what every tool opens) or
pcapng (several interfaces or link types in one file). Both stream; nothing is held in memory.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

SNAPLEN = 262_144


class PcapWriter:
    """Classic pcap, microsecond timestamps, little-endian."""

    def __init__(self, fh: BinaryIO, linktype: int) -> None:
        self.fh = fh
        self.linktype = linktype
        self.count = 0
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, linktype))

    def write(
        self, ts: float, data: bytes, wire_length: int, linktype: int, iface: str = ""
    ) -> None:
        if linktype != self.linktype:
            raise ValueError(
                f"a pcap file holds one link type ({self.linktype}); this frame is {linktype}: "
                "write a .pcapng file instead"
            )
        micros = round(ts * 1_000_000)
        self.fh.write(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(data),
                                  max(wire_length, len(data))))  # fmt: skip
        self.fh.write(data)
        self.count += 1


class PcapngWriter:
    """pcapng with one interface block per (interface, link type), microsecond timestamps."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.count = 0
        self._interfaces: dict[tuple[str, int], int] = {}
        self._block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))

    def write(
        self, ts: float, data: bytes, wire_length: int, linktype: int, iface: str = ""
    ) -> None:
        index = self._interfaces.get((iface, linktype))
        if index is None:
            index = self._interfaces[(iface, linktype)] = len(self._interfaces)
            options = _option(2, iface.encode()) if iface else b""
            self._block(1, struct.pack("<HHI", linktype, 0, SNAPLEN) + options + _END)
        micros = round(ts * 1_000_000)
        body = struct.pack("<IIIII", index, micros >> 32, micros & 0xFFFFFFFF, len(data),
                           max(wire_length, len(data)))  # fmt: skip
        self._block(6, body + data + b"\0" * (-len(data) % 4))
        self.count += 1

    def _block(self, kind: int, body: bytes) -> None:
        length = 12 + len(body)
        self.fh.write(struct.pack("<II", kind, length) + body + struct.pack("<I", length))


_END = b"\0\0\0\0"


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def open_writer(fh: BinaryIO, name: str, linktype: int) -> PcapWriter | PcapngWriter:
    """A pcapng writer when ``name`` ends in .pcapng, else classic pcap for ``linktype``."""
    return PcapngWriter(fh) if name.endswith(".pcapng") else PcapWriter(fh, linktype)
