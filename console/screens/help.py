"""Help for one pane: what the pane is for and the keys that work in it, then the few keys that
work everywhere. One short page per pane rather than one long manual.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

KeyRow = tuple[str, str]


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        border-title-style: bold;
        padding: 0 1;
        background: $surface;
    }
    HelpScreen .section {
        text-style: bold;
        margin-top: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "close", "Close", id="help.close"),
    ]

    def __init__(self, pane: str, purpose: str, keys: list[KeyRow], everywhere: list[KeyRow]):
        super().__init__()
        self.pane = pane
        self.purpose = purpose
        self.keys = keys
        self.everywhere = everywhere

    def compose(self) -> ComposeResult:
        box = VerticalScroll()
        box.border_title = f"Help: {self.pane}"
        box.border_subtitle = "Esc to close"
        with box:
            yield Static(self.purpose, markup=False)
            yield Static("Keys in this pane", classes="section", markup=False)
            yield Static(_key_table(self.keys))
            yield Static("Everywhere", classes="section", markup=False)
            yield Static(_key_table(self.everywhere))

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()  # so the arrow keys scroll a long page

    def action_close(self) -> None:
        self.dismiss(None)


def _key_table(rows: list[KeyRow]) -> Content:
    width = max((len(key) for key, _ in rows), default=0)
    lines = [
        Content.assemble((key.ljust(width), "bold"), "  ", description) for key, description in rows
    ]
    return Content("\n").join(lines)
