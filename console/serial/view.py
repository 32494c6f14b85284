"""The terminal view of a serial session: a ScrollView that draws only the rows in view from
the session's :class:`SerialBuffer`, in text or hex, with a time column, at most
``REDRAW`` times a second however fast bytes arrive (``FLOOD_REDRAW`` in a flood).

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

from console.serial.buffer import SerialBuffer
from console.serial.render import STAMP, hex_segments, highlight, render_line, stamp

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
        self.buffer = SerialBuffer()
        self.mode = "text"
        self.stamps = "off"
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

    # -- what the pane sets --------------------------------------------------------------------

    def show(self, buffer: SerialBuffer, started: float) -> None:
        """Show another session's buffer, at its end."""
        self.buffer = buffer
        self.started = started
        self._cache.clear()
        self._shown = -1
        self._redraw(to_end=True)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self._cache.clear()
        self._redraw(to_end=True)

    def set_stamps(self, mode: str) -> None:
        self.stamps = mode
        self._redraw(force=True)

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
                self.scroll_to(y=max(index - self.size.height // 2, 0), animate=False)
                return True
        return False

    # -- drawing -------------------------------------------------------------------------------

    def _rows(self) -> int:
        return self.buffer.hex_rows if self.mode == "hex" else self.buffer.line_count

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
