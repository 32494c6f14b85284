"""The terminal view of a serial session: a ScrollView that draws only the rows in view from
the session's :class:`SerialBuffer`, in text or hex, with a time column, at most
``REDRAW`` times a second however fast bytes arrive (``FLOOD_REDRAW`` in a flood). Long lines
wrap at the view's width (:class:`WrapRows` finds the line at a row), or are cut and scrolled
sideways.

With focus, every key goes to the device (as the bytes a terminal would send) except the
prefix key (Ctrl-T by default), whose next key is a console command.
"""

from __future__ import annotations

import time

from rich.segment import Segment
from textual import events
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.serial.buffer import Line, SerialBuffer
from console.serial.render import STAMP, hex_segments, highlight, render_line, stamp
from console.serial.wrap import WrapRows

REDRAW = 1 / 20
FLOOD_BYTES = 32 * 1024  # more than this since the last frame is a flood...
FLOOD_REDRAW = 1 / 10  # ...drawn this often
CACHE = 2000
STAMP_MODES = ("off", "absolute", "relative", "delta")
# Keys a terminal sends as escape sequences (xterm's, as BusyBox and U-Boot read them).
SEQUENCES = {
    "up": b"\x1b[A",
    "down": b"\x1b[B",
    "right": b"\x1b[C",
    "left": b"\x1b[D",
    "home": b"\x1b[H",
    "end": b"\x1b[F",
    "insert": b"\x1b[2~",
    "delete": b"\x1b[3~",
    "pageup": b"\x1b[5~",
    "pagedown": b"\x1b[6~",
    "shift+tab": b"\x1b[Z",
    "backspace": b"\x7f",
    "ctrl+at": b"\x00",
    "ctrl+space": b"\x00",
}
# Keys left to the console even with focus: help, and scrolling the view itself.
CONSOLE_KEYS = {"f1", "shift+pageup", "shift+pagedown", "shift+home", "shift+end"}


def key_bytes(event: events.Key, enter: bytes) -> bytes | None:
    """What a terminal would send for this key; None for keys with no byte form (F-keys)."""
    if event.key == "enter":
        return enter
    if event.key in SEQUENCES:
        return SEQUENCES[event.key]
    if event.character and len(event.character) == 1:
        return event.character.encode("utf-8")
    return None


class SerialView(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    SerialView {
        height: 1fr;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 1;
    }
    """

    class Typed(Message):
        """Bytes the operator typed, for the device."""

        def __init__(self, data: bytes) -> None:
            super().__init__()
            self.data = data

    class Command(Message):
        """The key after the prefix (``prefix`` itself when the prefix was just pressed)."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, prefix: str = "ctrl+t", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.prefix = prefix.strip().lower()
        # The app's keys (q quit, ? help) go to the device from here: these take their places
        # in the footer to show what leaves the view instead, the prefix's commands. The view
        # stops every key it sends, so they run only from a click on the footer.
        shown = self.prefix.replace("ctrl+", "^")
        for key, char, description in (("question_mark", "?", "Commands"), ("q", "q", "Quit")):
            self._bindings.bind(
                key, f"command({key!r})", description, key_display=f"{shown} {char}"
            )
        self.buffer = SerialBuffer()
        self.mode = "text"
        self.stamps = "off"
        self.wrap = True  # long lines wrap; off: cut, scrolled sideways
        self._wrap = WrapRows()
        self.started = 0.0
        self.enter = b"\r"
        self.search = ""
        self.prefix_pending = False
        self._cache: dict[tuple[int, int], list[Segment]] = {}
        self._shown = -1
        self._shown_end = 0
        self._shown_at = 0.0
        self._match: int | None = None
        self.follow = True  # stay at the end as lines arrive, until the operator scrolls back

    def on_mount(self) -> None:
        self.set_interval(REDRAW, self._redraw)

    def action_command(self, key: str) -> None:
        self.post_message(self.Command(key))

    # -- what the pane sets --------------------------------------------------------------------

    def show(self, buffer: SerialBuffer, started: float) -> None:
        """Show another session's buffer, at its end."""
        self.buffer = buffer
        self.started = started
        self._cache.clear()
        self._wrap.invalidate()
        self._shown = -1
        self._redraw(to_end=True)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self._cache.clear()
        self._redraw(to_end=True)

    def set_stamps(self, mode: str) -> None:
        self.stamps = mode
        self._redraw(force=True)

    def set_wrap(self, wrap: bool) -> None:
        """Wrap long lines, or cut them; the line at the top stays there."""
        top = self._locate(int(self.scroll_y))[0] if self._wrapping() else int(self.scroll_y)
        self.wrap = wrap
        self._redraw(to_end=self.follow, force=True)
        if not self.follow:
            self.scroll_to(x=0, y=self._row_of(top), animate=False, immediate=True, force=True)
        else:
            self.scroll_to(x=0, animate=False, immediate=True)

    def scroll_sideways(self, columns: int) -> None:
        """Cut lines only: ``columns`` to the right (negative: to the left)."""
        self.scroll_to(x=max(self.scroll_x + columns, 0), animate=False)

    def on_resize(self) -> None:
        self._redraw(to_end=self.follow, force=True)

    def set_search(self, text: str) -> None:
        self.search = text
        self._match = None
        self._cache.clear()
        self._redraw(force=True)

    def find(self, older: bool = True) -> bool:
        """Scroll to the next line (older, or newer) that holds the search text."""
        if not self.search or self.mode != "text":
            return False
        needle = self.search.lower()
        count = self.buffer.line_count
        start = count if self._match is None else min(self._match, count)
        order = range(start - 1, -1, -1) if older else range(start + 1, count)
        for index in order:
            if needle in self.line_text(index).lower():
                self._match = index
                self.follow = False
                row = self._row_of(index)
                self.scroll_to(y=max(row - self.size.height // 2, 0), animate=False)
                return True
        return False

    # -- drawing -------------------------------------------------------------------------------

    def _rows(self) -> int:
        if self.mode == "hex":
            return self.buffer.hex_rows
        if not self.wrap:
            return self.buffer.line_count
        self._wrap.update(self.buffer, self._text_width(), self._cells)
        rows = self._wrap.closed_rows()
        for index in range(len(self._wrap.starts), self.buffer.line_count):
            rows += self._wrap.rows_of(index, self.buffer.line(index), self._cells)
        return rows

    def _wrapping(self) -> bool:
        return self.wrap and self.mode == "text"

    def _stamp_width(self) -> int:
        return len(stamp(self.stamps, self.started, self.started, None))

    def _text_width(self) -> int:
        """The cells a wrapped line gets: the view less its scrollbar and the time column."""
        return max(self.size.width - 1 - self._stamp_width(), 8)

    def _cells(self, index: int, line: Line) -> int:
        return Segment.get_line_length(self._segments(index))

    def _row_of(self, index: int) -> int:
        """The first row of line ``index``."""
        if not self._wrapping():
            return index
        self._rows()
        if index < len(self._wrap.starts):
            return self._wrap.row_of(index)
        return self._wrap.closed_rows()

    def _locate(self, row: int) -> tuple[int, int]:
        """(line index, row within the line) of a wrapped row; lines that arrived since the
        last redraw are counted from the last indexed one."""
        lines = self.buffer.lines
        shift = (lines[0].number if lines else self._wrap.first) - self._wrap.first
        closed = self._wrap.closed_rows()
        if row >= closed:
            index, within = len(self._wrap.starts), row - closed
        else:
            index, within = self._wrap.locate(row)
        return index - shift, within

    def _redraw(self, *, to_end: bool = False, force: bool = False) -> None:
        version = self.buffer.version
        if version == self._shown and not to_end and not force:
            return
        now = time.monotonic()
        flood = self.buffer.end - self._shown_end > FLOOD_BYTES
        if flood and not (to_end or force) and now - self._shown_at < FLOOD_REDRAW:
            return  # pouring in faster than anyone reads: half the frames are enough
        self._shown, self._shown_end, self._shown_at = version, self.buffer.end, now
        if to_end:
            self.follow = True
        if self._wrapping():
            width = self.size.width - 1
        else:
            width = 78 if self.mode == "hex" else max(self.buffer.widest, self._open_width())
            width += 14 if self.stamps != "off" else 0
        self.virtual_size = Size(width, self._rows())
        if self.follow:
            # force: the scrollbar that allows scrolling appears only at the next layout, which
            # may also add the horizontal scrollbar's row: hence the second look after it.
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
            self.call_after_refresh(self._stick)
        self.refresh()

    def _stick(self) -> None:
        if self.follow and self.scroll_y < self.max_scroll_y:
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def _open_width(self) -> int:
        return len(self.buffer.open.data) if self.buffer.open is not None else 0

    def _scrolled(self) -> None:
        """After the operator scrolled: follow the end again only from the end."""
        self.follow = self.scroll_y >= self.max_scroll_y

    def on_mouse_scroll_up(self) -> None:
        self.follow = False

    def on_mouse_scroll_down(self) -> None:
        self.call_after_refresh(self._scrolled)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        index = y + scroll_y
        if index >= self._rows():
            return Strip.blank(width, self.rich_style)
        if self._wrapping():
            return self._wrapped_line(index, width)
        if self.mode == "hex":
            offset, data, skip, ts = self.buffer.hex_row(index)
            segments = hex_segments(offset, data, skip)
            previous = self.buffer.hex_row(index - 1)[3] if index else None
        else:
            line = self.buffer.line(index)
            segments = self._segments(index)
            ts = line.ts
            previous = self.buffer.previous_ts(index) if self.stamps == "delta" else None
        if self.stamps != "off":
            segments = [Segment(stamp(self.stamps, ts, self.started, previous), STAMP), *segments]
        strip = Strip(segments)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _wrapped_line(self, row: int, width: int) -> Strip:
        index, within = self._locate(row)
        if not 0 <= index < self.buffer.line_count:
            return Strip.blank(width, self.rich_style)
        text_width = self._text_width()
        strip = Strip(self._segments(index)).crop(within * text_width, (within + 1) * text_width)
        if self.stamps != "off":
            if within:
                column = " " * self._stamp_width()
            else:
                previous = self.buffer.previous_ts(index) if self.stamps == "delta" else None
                column = stamp(self.stamps, self.buffer.line(index).ts, self.started, previous)
            strip = Strip([Segment(column, STAMP), *strip])
        return strip.crop_extend(0, width, self.rich_style)

    def _segments(self, index: int) -> list[Segment]:
        line = self.buffer.line(index)
        key = (line.number, len(line.data))
        segments = self._cache.get(key)
        if segments is None:
            segments = render_line(line.data, self.buffer.map_in)
            if self.search:
                segments = highlight(segments, self.search)
            if len(self._cache) >= CACHE:
                self._cache.clear()
            self._cache[key] = segments
        return segments

    def line_text(self, index: int) -> str:
        """Line ``index`` as drawn (escapes visible), whole, without styles."""
        return "".join(s.text for s in self._segments(index))

    def visible_text(self) -> list[str]:
        """The rows in view as plain text (what the tests and the search read)."""
        return [
            "".join(s.text for s in self.render_line(y)._segments).rstrip()
            for y in range(self.size.height)
        ]

    # -- keys ----------------------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        if self.prefix_pending:
            self.prefix_pending = False
            self._take(event)
            if event.key == self.prefix:
                self.post_message(self.Typed(event.character.encode() if event.character else b""))
            else:
                self.post_message(self.Command(event.key))
            return
        if event.key == self.prefix:
            self.prefix_pending = True
            self._take(event)
            self.post_message(self.Command(self.prefix))
            return
        if event.key in CONSOLE_KEYS:
            self._scroll_key(event)
            return
        data = key_bytes(event, self.enter)
        if data is None:
            return
        self._take(event)
        self._redraw(to_end=True)
        self.post_message(self.Typed(data))

    def on_paste(self, event: events.Paste) -> None:
        event.stop()
        text = event.text.replace("\r\n", "\n").encode("utf-8")
        self.post_message(self.Typed(text.replace(b"\n", self.enter)))

    def _take(self, event: events.Key) -> None:
        event.stop()
        event.prevent_default()

    def _scroll_key(self, event: events.Key) -> None:
        page = max(self.size.height - 1, 1)
        if event.key == "shift+pageup":
            self.scroll_to(y=max(self.scroll_y - page, 0), animate=False)
        elif event.key == "shift+pagedown":
            self.scroll_to(y=self.scroll_y + page, animate=False)
        elif event.key == "shift+home":
            self.scroll_home(animate=False)
        elif event.key == "shift+end":
            self.scroll_end(animate=False)
        else:
            return
        self._take(event)
        self.call_after_refresh(self._scrolled)
