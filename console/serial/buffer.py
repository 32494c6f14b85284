"""What the console keeps of a serial session: the received bytes as lines for the text view and
as a byte ring for the hex view, each bounded, each with the time its bytes arrived.

Batches are fed whole (a split per batch, no work per byte); a batch that does not start where
the last one ended is a gap, which the pane fills from the engine's scrollback.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from itertools import count, repeat

MAX_LINE = 4096  # a line longer than this (a device that never ends one) is cut


@dataclass
class Line:
    ts: float
    data: bytes
    number: int  # counted from the session's first line


class SerialBuffer:
    def __init__(self, *, max_lines: int = 20_000, max_bytes: int = 1 << 20, map_in: str = "lf"):
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.map_in = map_in
        self.lines: deque[Line] = deque(maxlen=max_lines)
        self.open: Line | None = None  # the line still being received
        self.next_number = 0
        self.end = 0  # the offset the next batch should start at
        self.raw = bytearray()
        self.raw_start = 0
        self._stamp_offsets: deque[int] = deque()
        self._stamp_times: deque[float] = deque()
        self._cr_pending = False
        self.version = 0  # bumped by every change, for views that cache
        self.widest = 0  # the longest line so far, in bytes (the view's width)

    # -- feeding ------------------------------------------------------------------------------

    def feed(self, offset: int, ts: float, data: bytes) -> int:
        """Add a batch received at ``offset``. Bytes already held (a batch fetched twice) are
        skipped. A batch that starts after :attr:`end` is not added: the number of bytes
        missing before it is returned, for the caller to fetch them first."""
        if offset > self.end:
            return offset - self.end
        if offset + len(data) <= self.end:
            return 0
        data = data[self.end - offset :]
        offset = self.end
        self.end = offset + len(data)
        self._keep_raw(offset, ts, data)
        self._split(ts, data)
        self.version += 1
        return 0

    def local(self, ts: float, data: bytes) -> None:
        """Local echo: what the operator typed, shown among the lines but not among the
        received bytes (offsets and the hex view are the device's alone)."""
        self._split(ts, data)
        self.version += 1

    def reset(self, offset: int) -> None:
        """Start over at ``offset`` (attaching to a session shown from its scrollback)."""
        self.lines.clear()
        self.open = None
        self.raw.clear()
        self.raw_start = self.end = offset
        self._stamp_offsets.clear()
        self._stamp_times.clear()
        self.version += 1

    def skip_to(self, offset: int) -> None:
        """Bytes up to ``offset`` are lost to this view (the engine no longer keeps them):
        say so in a line of its own and go on from there; the lines before stay."""
        self.mark(0.0, f"[{offset - self.end} bytes not shown: the console fell behind]")
        self.raw.clear()
        self._stamp_offsets.clear()
        self._stamp_times.clear()
        self.raw_start = self.end = offset
        self.version += 1

    def mark(self, ts: float, text: str) -> None:
        """A line of the console's own (in reverse video) among the device's: the line being
        received ends first. ``text`` must already be escaped."""
        if self.open is not None:
            self._end_open()
        line = Line(ts, b"\x1b[7m" + text.encode() + b"\x1b[0m", self._number())
        self.widest = max(self.widest, len(line.data))
        self.lines.append(line)
        self.version += 1

    def clear_view(self) -> None:
        """Forget the lines shown so far (tio's clear screen); the byte ring stays."""
        self.lines.clear()
        self.open = None
        self.version += 1

    def set_map_in(self, map_in: str) -> None:
        self.map_in = map_in

    def _keep_raw(self, offset: int, ts: float, data: bytes) -> None:
        if not self.raw:
            self.raw_start = offset
        self.raw += data
        self._stamp_offsets.append(offset)
        self._stamp_times.append(ts)
        excess = len(self.raw) - self.max_bytes
        if excess > 0:
            del self.raw[:excess]
            self.raw_start += excess
            while len(self._stamp_offsets) > 1 and self._stamp_offsets[1] <= self.raw_start:
                self._stamp_offsets.popleft()
                self._stamp_times.popleft()

    def _split(self, ts: float, data: bytes) -> None:
        mode = self.map_in
        if mode == "cr":
            if self._cr_pending and data[:1] == b"\n":
                data = data[1:]
            self._cr_pending = data[-1:] == b"\r"
            parts = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
        elif mode == "crlf":
            # A CR LF split between two batches still ends the line.
            if self.open is not None and self.open.data[-1:] == b"\r" and data[:1] == b"\n":
                self.open = Line(self.open.ts, self.open.data[:-1], self.open.number)
                self._end_open()
                data = data[1:]
            parts = data.split(b"\r\n")
        else:
            parts = data.split(b"\n")
        if len(parts) > 1:
            # The first part ends the open line; the whole lines between are made in bulk.
            self._append_open(ts, parts[0])
            self._end_open(strip_cr=mode == "lf")
            middle = parts[1:-1]
            if middle and max(map(len, middle)) <= MAX_LINE:
                if mode == "lf":
                    middle = [p[:-1] if p[-1:] == b"\r" else p for p in middle]
                first = self.next_number
                self.next_number += len(middle)
                self.lines.extend(map(Line, repeat(ts), middle, count(first)))
                self.widest = max(self.widest, max(map(len, middle)))
            else:
                for part in middle:
                    self._append_open(ts, part)
                    self._end_open(strip_cr=mode == "lf")
        if parts[-1]:
            self._append_open(ts, parts[-1])

    def _append_open(self, ts: float, part: bytes) -> None:
        if self.open is None:
            self.open = Line(ts, part, self._number())
        else:
            self.open = Line(self.open.ts, self.open.data + part, self.open.number)
        while len(self.open.data) > MAX_LINE:
            head, rest = self.open.data[:MAX_LINE], self.open.data[MAX_LINE:]
            self.open = Line(self.open.ts, head, self.open.number)
            self._end_open()
            self.open = Line(ts, rest, self._number())

    def _end_open(self, *, strip_cr: bool = False) -> None:
        line = self.open if self.open is not None else Line(0.0, b"", self._number())
        if strip_cr and line.data[-1:] == b"\r":
            line = Line(line.ts, line.data[:-1], line.number)
        self.widest = max(self.widest, len(line.data))
        self.lines.append(line)
        self.open = None

    def _number(self) -> int:
        self.next_number += 1
        return self.next_number - 1

    # -- reading ------------------------------------------------------------------------------

    @property
    def line_count(self) -> int:
        return len(self.lines) + (1 if self.open is not None else 0)

    def line(self, index: int) -> Line:
        if index == len(self.lines) and self.open is not None:
            return self.open
        return self.lines[index]

    def previous_ts(self, index: int) -> float | None:
        return self.line(index - 1).ts if index > 0 else None

    @property
    def hex_rows(self) -> int:
        if not self.raw:
            return 0
        return (self.end + 15) // 16 - self.raw_start // 16

    def hex_row(self, index: int) -> tuple[int, bytes, int, float]:
        """Row ``index`` of the hex view: its offset (a multiple of 16), its bytes, where they
        start in the row (the first row may begin part way) and when its first byte came."""
        row_offset = (self.raw_start // 16 + index) * 16
        start = max(row_offset, self.raw_start)
        data = bytes(self.raw[start - self.raw_start : row_offset + 16 - self.raw_start])
        return row_offset, data, start - row_offset, self.time_of(start)

    def time_of(self, offset: int) -> float:
        at = bisect.bisect_right(self._stamp_offsets, offset) - 1
        return self._stamp_times[max(at, 0)] if self._stamp_times else 0.0
