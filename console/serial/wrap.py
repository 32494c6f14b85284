"""Where each line of a :class:`SerialBuffer` starts among the rows of a view that wraps long
lines at a given width: kept up to date as lines arrive and fall off the front, so a flood
costs a length check per new line, and finding the line at a row is a bisection.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

from console.serial.buffer import Line, SerialBuffer

PRINTABLE = bytes(range(0x20, 0x7F))


def fast_cells(data: bytes) -> int | None:
    """The width of a line of printable ASCII (most lines); None when it needs drawing."""
    if data.isascii() and not data.translate(None, PRINTABLE):
        return len(data)
    return None


class WrapRows:
    def __init__(self) -> None:
        self.buffer: SerialBuffer | None = None
        self.width = 0
        self.first = 0  # the number of the line ``starts[0]`` belongs to
        self.starts: list[int] = []  # the row each indexed line starts at, counted ever
        self.end = 0  # the row after the last indexed line

    def invalidate(self) -> None:
        self.buffer = None

    def update(self, buffer: SerialBuffer, width: int, cells: Callable[[int, Line], int]) -> None:
        """Index the closed lines of ``buffer`` that are new since the last call; everything
        again for another buffer or width. ``cells(index, line)`` is a line's drawn width."""
        lines = buffer.lines
        if buffer is not self.buffer or width != self.width:
            self.buffer, self.width = buffer, width
            self.starts, self.end = [], 0
        head = lines[0].number if lines else buffer.next_number
        if not self.starts or head < self.first:  # nothing yet, or the buffer started over
            self.first, self.starts = head, []
        elif head > self.first:  # lines fell off the front, or the view was cleared
            del self.starts[: head - self.first]
            self.first = head
        for index in range(len(self.starts), len(lines)):
            self.starts.append(self.end)
            self.end += self.rows_of(index, lines[index], cells)

    def rows_of(self, index: int, line: Line, cells: Callable[[int, Line], int]) -> int:
        width = fast_cells(line.data)
        if width is None:
            width = cells(index, line)
        return max(1, -(-width // self.width))

    @property
    def base(self) -> int:
        return self.starts[0] if self.starts else self.end

    def closed_rows(self) -> int:
        return self.end - self.base

    def row_of(self, index: int) -> int:
        """The first row of closed line ``index``."""
        return self.starts[index] - self.base

    def locate(self, row: int) -> tuple[int, int]:
        """(line index, row within the line) of closed row ``row``."""
        index = bisect.bisect_right(self.starts, row + self.base) - 1
        return index, row + self.base - self.starts[index]
