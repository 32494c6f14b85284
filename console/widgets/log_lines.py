"""Log lines drawn with the Line API: a ScrollView that renders only the rows in view from a
bounded list, each line's segments made once and cropped to the scroll position. Lines longer
than the view scroll sideways rather than wrap, as in ``less -S``."""

from __future__ import annotations

from rich.segment import Segment
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

MAX_LINES = 5000


class LogLines(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    LogLines {
        height: 1fr;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._lines: list[Text] = []
        self._strips: dict[int, Strip] = {}

    @property
    def lines(self) -> list[Text]:
        return list(self._lines)

    def show(self, lines: list[Text]) -> None:
        """Show ``lines`` (the newest last); a view that was at the end stays at the end."""
        at_end = self.scroll_y >= self.max_scroll_y
        if [line.plain for line in lines] == [line.plain for line in self._lines]:
            return
        self._lines = lines[-MAX_LINES:]
        self._strips.clear()
        width = max((line.cell_len for line in self._lines), default=0)
        self.virtual_size = Size(width, len(self._lines))
        if at_end:
            self.scroll_end(animate=False, immediate=True)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        index = y + scroll_y
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        strip = self._strips.get(index)
        if strip is None:
            segments = self._lines[index].render(self.app.console, end="")
            strip = self._strips[index] = Strip(
                list(Segment.apply_style(segments, self.rich_style))
            )
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)
