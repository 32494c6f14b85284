"""A pane for an engine part the console cannot show yet (traffic, devices, serial).

It says what the engine reports about that part, word for word, and nothing it does not know:
no sample rows, no placeholder charts.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from console.untrusted import clean


class PartPane(Vertical):
    DEFAULT_CSS = """
    PartPane {
        border-top: solid $primary;
        border-title-align: left;
        padding: 1 2;
    }
    PartPane #state {
        text-style: bold;
    }
    PartPane #purpose {
        color: $text-muted;
        margin-top: 1;
    }
    """

    def __init__(
        self, *, title: str, part: str, subject: str, purpose: str, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.title = title
        self.part = part
        self.subject = subject
        self.purpose = purpose
        self.border_title = title
        self.state_line = "Waiting for the engine's status…"

    @property
    def help_text(self) -> str:
        return f"{self.purpose}\n\nNow: {self.state_line}"

    def compose(self) -> ComposeResult:
        yield Static(self.state_line, id="state", markup=False)
        yield Static(self.purpose, id="purpose", markup=False)

    def show_status(self, status: dict[str, Any] | None, *, connected: bool) -> None:
        """Say what the engine reports about this pane's part."""
        if not connected:
            text = "Not connected to the engine."
        elif status is None:
            text = "Waiting for the engine's status…"
        elif self.part not in (parts := status.get("parts") or {}):
            text = f"This engine does not report a '{self.part}' part."
        elif (state := clean(parts[self.part])) == "not started":
            text = f"{self.subject} is not running in this engine (part '{self.part}': {state})."
        else:
            text = (
                f"{self.subject} is {state} in the engine (part '{self.part}': {state}),"
                " but this console cannot show it yet."
            )
        self.state_line = text
        self.query_one("#state", Static).update(Content(text))
