"""Session transcripts: one append-only file per session, a timestamp on every line, the
received bytes kept exactly.

Each record is ``<time> <tag> <content>``: tag ``|`` is a received line whose own newline ends
the record, ``\\`` a piece of a line (a prompt, or a line cut by a pause; the record's newline
is not the device's), ``>`` what was sent and ``#`` what happened (connected, unplugged,
settings), both escaped so that they stay one line. Concatenating the contents of the ``|`` and
``\\`` records gives back every received byte, whatever it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from engine.fileperms import private_dir, private_file

MAGIC = b"# iotsec serial transcript v1"
# A piece of a line waits this long for its end before it is written as it is.
PIECE_WAIT = 1.0
TIME_WIDTH = len("2026-01-01T00:00:00.000000+00:00")


def stamp(ts: float) -> bytes:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="microseconds").encode()


def escape(data: bytes) -> bytes:
    """Bytes shown as one printable line: backslash escapes for anything else."""
    out = bytearray()
    for byte in data:
        if byte == 0x5C:
            out += b"\\\\"
        elif 0x20 <= byte < 0x7F:
            out.append(byte)
        else:
            out += b"\\x%02x" % byte
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x5C and data[i + 1 : i + 2] == b"x":
            out.append(int(data[i + 2 : i + 4], 16))
            i += 4
        elif data[i] == 0x5C and data[i + 1 : i + 2] == b"\\":
            out.append(0x5C)
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def transcript_path(directory: Path, name: str, started: float) -> Path:
    """``<dir>/<device>-<YYYYmmdd-HHMMSS>.log``, with a counter if that is taken."""
    when = datetime.fromtimestamp(started).strftime("%Y%m%d-%H%M%S")
    path = directory / f"{name}-{when}.log"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"{name}-{when}-{n}.log"
    return path


class TranscriptWriter:
    """One session's transcript; its owner serialises the calls (the session holds a lock)."""

    def __init__(self, path: Path, header: str, group: str = "iotsec") -> None:
        private_dir(path.parent, group)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.path = path
        private_file(path)
        self._file: BinaryIO = os.fdopen(fd, "ab")
        self._piece = bytearray()
        self._piece_ts = 0.0
        self._unread: list[bytes] = []
        self._file.write(MAGIC + b": " + escape(header.encode()) + b"\n")
        self._file.flush()

    def received(self, data: bytes, ts: float) -> list[bytes]:
        """Record received bytes; returns the lines this completed (for the analyser)."""
        lines = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            line = data[start : end + 1]
            if self._piece:
                whole = bytes(self._piece) + line
                self._write(self._piece_ts, b"|", whole)
                self._piece.clear()
            else:
                whole = line
                self._write(ts, b"|", line)
            lines.append(whole)
            start = end + 1
        if start < len(data):
            if not self._piece:
                self._piece_ts = ts
            self._piece += data[start:]
        return lines

    def pending(self, now: float) -> list[bytes]:
        """Pieces of lines written as they are since the last call, for the analyser: one
        that has waited long enough (a prompt waiting for input) or one a send or a note cut
        short."""
        if self._piece and now - self._piece_ts >= PIECE_WAIT:
            self._cut()
        pieces, self._unread = self._unread, []
        return pieces

    def sent(self, data: bytes, ts: float) -> None:
        self._cut()
        self._write(ts, b">", escape(data) + b"\n")

    def note(self, text: str, ts: float) -> None:
        self._cut()
        self._write(ts, b"#", escape(text.encode()) + b"\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._cut()
        self._file.close()

    def _cut(self) -> None:
        if not self._piece:
            return
        piece = bytes(self._piece)
        self._write(self._piece_ts, b"\\", piece + b"\n")
        self._piece.clear()
        self._unread.append(piece)

    def _write(self, ts: float, tag: bytes, content: bytes) -> None:
        self._file.write(stamp(ts) + b" " + tag + b" " + content)


@dataclass
class Transcript:
    header: str
    received: bytes
    records: list[tuple[str, str, bytes]] = field(default_factory=list)


def is_transcript(head: bytes) -> bool:
    return head.startswith(MAGIC)


def read_transcript(path: Path) -> Transcript:
    """The records of a transcript and the received bytes, exactly as they came."""
    data = path.read_bytes()
    if not is_transcript(data):
        raise ValueError(f"{path}: not an iotsec transcript (no {MAGIC.decode()!r} line)")
    first, _, rest = data.partition(b"\n")
    header = unescape(first[len(MAGIC) + 2 :]).decode(errors="replace")
    received = bytearray()
    records: list[tuple[str, str, bytes]] = []
    for n, record in enumerate(rest.split(b"\n")[:-1], start=2):
        ts = record[:TIME_WIDTH]
        tag = record[TIME_WIDTH + 1 : TIME_WIDTH + 2]
        content = record[TIME_WIDTH + 3 :]
        if tag == b"|":
            content += b"\n"
            received += content
        elif tag == b"\\":
            received += content
        elif tag in (b">", b"#"):
            content = unescape(content)
        else:
            raise ValueError(f"{path}:{n}: not a transcript record (tag {tag!r})")
        records.append((ts.decode(errors="replace"), tag.decode(), content))
    return Transcript(header, bytes(received), records)
