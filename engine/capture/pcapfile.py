"""Streaming readers for pcap and pcapng files: a chunk at a time, never the whole file at once.

A damaged file ends the stream with :class:`CaptureFileError` naming the file and the byte
offset; every frame read before it has already been delivered.
"""

from __future__ import annotations

import struct
from collections.abc import Generator, Iterator
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
# Frames of one link type as pcap records: (link type, seconds per time unit, the record
# header (seconds, units, captured length, wire length; the frame follows), the longest frame
# a record may hold, the records).
Chunk = tuple[int, float, struct.Struct, int, bytes]
# A pcapng frame as a pcap record: its whole time in units, no seconds; any length.
_PCAPNG_RECORD = struct.Struct("<IQII")
_ANY_LENGTH = 1 << 32


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
    chunks = read_chunks(path)
    stopped = None
    while (chunk := chunks.send(stopped)) is not None:
        linktype, unit, record, longest, buf = chunk
        unpack_record, header = record.unpack_from, record.size
        pos, end = 0, len(buf)
        while pos + header <= end:
            seconds, units, caplen, wire_length = unpack_record(buf, pos)
            stop = pos + header + caplen
            if stop > end or caplen > longest:
                break
            yield seconds + units * unit, linktype, buf[pos + header : stop], wire_length
            pos = stop
        stopped = pos


def read_chunks(path: str | Path) -> Generator[Chunk | None, int | None, None]:
    """The frames of a pcap or pcapng file as chunks of pcap records (a pcapng file's frames
    are copied into such records), for a loop that walks the records of a chunk itself, as
    :func:`read_records` does: resuming a generator for every frame costs more than the walk.

    Start it with ``send(None)``, then send each chunk back the offset where its walk stopped:
    at the first record that is not whole in the chunk or holds a longer frame than the chunk
    allows, or at its end. What is left there starts the next chunk, or is the damage reported.
    After the last chunk, it gives None.
    """
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
    yield None


def _pcap(path: Path, fh: BinaryIO, magic: bytes) -> Generator[Chunk, int, None]:
    endian, unit = PCAP_MAGIC[magic]
    header = fh.read(20)
    if len(header) < 20:
        raise CaptureFileError(f"{path}: pcap header cut short")
    linktype = struct.unpack(endian + "I", header[16:20])[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    # Records are cut out of large chunks: one read per chunk instead of two per frame, and
    # memory stays at one chunk plus the part of a record that runs over its end.
    buf, pos, base = b"", 0, 24  # base: the file offset of buf[0]; pos: where the walk stopped
    while True:
        left = len(buf) - pos
        if left >= 16 and (caplen := record.unpack_from(buf, pos)[2]) > MAX_FRAME:
            raise CaptureFileError(f"{path}: impossible frame length {caplen} at byte {base + pos}")
        more = fh.read(CHUNK)
        if not more:
            if left:
                what = "record header" if left < 16 else "frame"
                raise CaptureFileError(f"{path}: {what} cut short at byte {base + pos}")
            return
        buf, base = buf[pos:] + more, base + pos
        pos = yield linktype, unit, record, MAX_FRAME, buf


def _pcapng(path: Path, fh: BinaryIO) -> Generator[Chunk, int, None]:
    """The frames of :func:`_pcapng_frames` as chunks, each up to CHUNK bytes of one link type
    and time unit; those read before the file turns out damaged are delivered first."""
    records: list[bytes] = []
    size, shared = 0, (0, 0.0)  # the chunk's size and (link type, unit) so far
    try:
        for linktype, unit, units, data, wire_length in _pcapng_frames(path, fh):
            if (linktype, unit) != shared or size >= CHUNK:
                if records:
                    yield *shared, _PCAPNG_RECORD, _ANY_LENGTH, b"".join(records)
                records, size, shared = [], 0, (linktype, unit)
            records += (_PCAPNG_RECORD.pack(0, units, len(data), wire_length), data)
            size += len(data)
    except CaptureFileError:
        if records:
            yield *shared, _PCAPNG_RECORD, _ANY_LENGTH, b"".join(records)
        raise
    if records:
        yield *shared, _PCAPNG_RECORD, _ANY_LENGTH, b"".join(records)


def _pcapng_frames(path: Path, fh: BinaryIO) -> Iterator[tuple[int, float, int, bytes, int]]:
    """(link type, seconds per time unit, time in units, data, wire length) of each frame."""
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
            yield linktype, unit, (high << 32) | low, body[20 : 20 + caplen], wirelen
        elif kind == 3:  # simple packet: no time
            if not interfaces:
                raise CaptureFileError(f"{path}: packet before any interface at byte {offset}")
            wirelen = struct.unpack(endian + "I", body[:4])[0]
            linktype, unit = interfaces[0]
            yield linktype, unit, 0, body[4 : 4 + min(wirelen, len(body) - 8)], wirelen
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
