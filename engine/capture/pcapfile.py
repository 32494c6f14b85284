"""Streaming readers for pcap and pcapng files: frame by frame, never the whole file at once.

A damaged file ends the stream with :class:`CaptureFileError` naming the file and the byte
offset; every frame read before it has already been delivered.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
MAX_FRAME = 262_144
CHUNK = 1 << 20

Record = tuple[float, int, bytes, int]  # (ts, linktype, data, wire_length), as in Frame


class CaptureFileError(Exception):
    """A capture file that cannot be read further; the message names the file and offset."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame: when, on which link type, the bytes kept and the original length."""

    ts: float
    linktype: int
    data: bytes
    wire_length: int


def read_frames(path: Path) -> Iterator[Frame]:
    """Frames of a pcap or pcapng file, in file order."""
    for ts, linktype, data, wire_length in read_records(path):
        yield Frame(ts, linktype, data, wire_length)


def read_records(path: str | Path) -> Iterator[Record]:
    """What :func:`read_frames` reads, as plain tuples: a hot loop over millions of frames
    unpacks a tuple far faster than it builds and reads a dataclass."""
    path = Path(path)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise CaptureFileError(f"{path}: cannot open: {exc.strerror}") from None
    with fh:
        magic = fh.read(4)
        if magic in PCAP_MAGIC:
            yield from _pcap(path, fh, magic)
        elif magic == PCAPNG_SHB:
            yield from _pcapng(path, fh)
        else:
            raise CaptureFileError(f"{path}: not a pcap or pcapng file (starts {magic.hex()})")


def _pcap(path: Path, fh: BinaryIO, magic: bytes) -> Iterator[Record]:
    endian, unit = PCAP_MAGIC[magic]
    header = fh.read(20)
    if len(header) < 20:
        raise CaptureFileError(f"{path}: pcap header cut short")
    linktype = struct.unpack(endian + "I", header[16:20])[0] & 0x0FFFFFFF
    unpack_record = struct.Struct(endian + "IIII").unpack_from
    # Records are cut out of large chunks: one read per chunk instead of two per frame, and
    # memory stays at one chunk plus the part of a record that runs over its end.
    buf, pos, base = b"", 0, 24  # base: the file offset of buf[0]
    while True:
        more = fh.read(CHUNK)
        if more:
            buf, base, pos = buf[pos:] + more, base + pos, 0
        end = len(buf)
        while pos + 16 <= end:
            sec, frac, caplen, wirelen = unpack_record(buf, pos)
            if caplen > MAX_FRAME:
                raise CaptureFileError(
                    f"{path}: impossible frame length {caplen} at byte {base + pos}"
                )
            stop = pos + 16 + caplen
            if stop > end:
                break
            yield sec + frac * unit, linktype, buf[pos + 16 : stop], wirelen
            pos = stop
        if not more:
            if pos == end:
                return
            what = "record header" if end - pos < 16 else "frame"
            raise CaptureFileError(f"{path}: {what} cut short at byte {base + pos}")


def _pcapng(path: Path, fh: BinaryIO) -> Iterator[Record]:
    offset = 0
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    first = True
    while True:
        head = PCAPNG_SHB if first else fh.read(4)
        first = False
        if not head:
            return
        rest = fh.read(4)
        if len(head) < 4 or len(rest) < 4:
            raise CaptureFileError(f"{path}: block header cut short at byte {offset}")
        if head == PCAPNG_SHB:
            bom = fh.read(4)
            endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack(endian + "I", rest)[0]
            body = bom + fh.read(length - 12)
            interfaces = []
        else:
            length = struct.unpack(endian + "I", rest)[0]
            body = fh.read(length - 8) if length >= 12 else b""
        if length < 12 or len(body) < length - 8:
            raise CaptureFileError(f"{path}: block cut short at byte {offset}")
        kind = struct.unpack(endian + "I", head)[0]
        if kind == 1:  # interface description
            linktype = struct.unpack(endian + "H", body[0:2])[0]
            interfaces.append((linktype, _ts_unit(body[8:-4], endian)))
        elif kind == 6:  # enhanced packet
            iface, high, low, caplen, wirelen = struct.unpack(endian + "IIIII", body[:20])
            if iface >= len(interfaces) or caplen > len(body) - 24:
                raise CaptureFileError(f"{path}: bad packet block at byte {offset}")
            linktype, unit = interfaces[iface]
            yield ((high << 32) | low) * unit, linktype, body[20 : 20 + caplen], wirelen
        elif kind == 3:  # simple packet
            if not interfaces:
                raise CaptureFileError(f"{path}: packet before any interface at byte {offset}")
            wirelen = struct.unpack(endian + "I", body[:4])[0]
            yield 0.0, interfaces[0][0], body[4 : 4 + min(wirelen, len(body) - 8)], wirelen
        offset += length


def _ts_unit(options: bytes, endian: str) -> float:
    """Seconds per timestamp tick from an interface's options (if_tsresol), default 1 µs."""
    i = 0
    while i + 4 <= len(options):
        code, length = struct.unpack(endian + "HH", options[i : i + 4])
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[i + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        i += 4 + (length + 3) // 4 * 4
    return 1e-6
