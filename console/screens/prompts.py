"""The small dialogs that stand between a key and an action on the engine: a yes/no question,
a one-line note and a duration. Each is dismissed with the answer, or with ``None``/``False`` on
Esc.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from engine.durations import parse_duration

T = TypeVar("T")


class Dialog(ModalScreen[T]):
    """A centred box over the dimmed main screen; Esc cancels (dismisses with ``None``)."""

    DEFAULT_CSS = """
    Dialog {
        align: center middle;
    }
    Dialog > #dialog {
        width: 72;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        padding: 0 1;
        background: $surface;
    }
    Dialog .heading {
        text-style: bold;
        margin-bottom: 1;
    }
    Dialog .hint {
        color: $text-muted;
        margin-top: 1;
    }
    Dialog Horizontal {
        height: auto;
        align-horizontal: right;
    }
    Dialog Button {
        margin-left: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
    ]

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(Dialog[bool]):
    """Ask before doing something that is hard to undo; ``n`` is focused, ``y`` confirms."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Yes", id="dialog.confirm"),
        Binding("n", "cancel", "No", id="dialog.no"),
    ]

    def __init__(self, heading: str, body: Content, *, confirm: str = "Yes") -> None:
        super().__init__()
        self.heading = heading
        self.body = body
        self.confirm_label = confirm

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.heading, classes="heading", markup=False)
            yield Static(self.body, id="body")
            with Horizontal():
                yield Button(f"{self.confirm_label} (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class NoteScreen(Dialog[str | None]):
    """Ask for a note (why, or what you are doing about it); Enter sends, even empty."""

    def __init__(self, heading: str, subject: Content, *, placeholder: str = "") -> None:
        super().__init__()
        self.heading = heading
        self.subject = subject
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.heading, classes="heading", markup=False)
            yield Static(self.subject)
            yield Input(placeholder=self.placeholder, id="note", max_length=500, compact=True)
            yield Static("Enter to send · Esc to cancel", classes="hint", markup=False)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip())


class DurationScreen(Dialog[str | None]):
    """Ask for a duration (``30m``, ``2h``, ``1d``); Enter sends it once it parses and is
    longer than zero, else the dialog says what is wrong and stays."""

    DEFAULT_CSS = """
    DurationScreen #error {
        color: $error;
    }
    """

    def __init__(self, heading: str, subject: Content, *, label: str, value: str = "1h") -> None:
        super().__init__()
        self.heading = heading
        self.subject = subject
        self.label = label
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self.heading, classes="heading", markup=False)
            yield Static(self.subject)
            yield Static(self.label, classes="hint", markup=False)
            yield Input(self.value, id="duration", max_length=32, compact=True)
            yield Static("", id="error", markup=False)
            yield Static("Enter to send · Esc to cancel", classes="hint", markup=False)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        problem = duration_problem(value)
        if problem:
            self.query_one("#error", Static).update(problem)
            return
        self.dismiss(value)


def duration_problem(text: str) -> str:
    """What is wrong with ``text`` as a duration a dialog asks for ("" when nothing is)."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        return str(exc)
    return "" if seconds > 0 else "the duration must be longer than zero"
