"""The silence dialog: for how long, and whether to match the alert's rule, its source or both.

It only gathers the answer; the alerts pane asks for confirmation and sends it to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, RadioButton, RadioSet, Static

from console.screens.prompts import Dialog, duration_problem
from console.untrusted import clean
from engine.durations import format_duration, parse_duration


@dataclass(frozen=True)
class SilenceRequest:
    """What to silence and for how long, as ``alerts.silence`` takes it."""

    rule: str
    src: str
    duration: str
    comment: str

    @property
    def seconds(self) -> float:
        return parse_duration(self.duration)

    def describe(self) -> str:
        match = " and ".join(
            f"{name} {clean(value)}"
            for name, value in (("rule", self.rule), ("source", self.src))
            if value
        )
        return f"alerts with {match} for {format_duration(self.seconds)}"

    def like(self, alert: dict[str, Any]) -> SilenceRequest | None:
        """The same silence (what it matches, for how long) for another alert's rule and
        source; ``None`` when it matches a source and that alert has none."""
        rule, src = str(alert.get("rule") or ""), str(alert.get("src") or "")
        if self.src and not src:
            return None
        return replace(self, rule=rule if self.rule else "", src=src if self.src else "")

    def args(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "src": self.src,
            "duration": self.duration,
            "comment": self.comment,
        }


class Choice(RadioButton):
    """A radio button whose dot is only drawn when chosen, so the choice shows without colour."""

    BUTTON_INNER = " "

    def on_mount(self) -> None:
        self._draw()

    def watch_value(self) -> None:
        super().watch_value()  # the RadioSet learns of the change from the message it posts
        self._draw()

    def _draw(self) -> None:
        self.BUTTON_INNER = "●" if self.value else " "
        self.refresh()


class MatchSet(RadioSet):
    """The choice of what to match; Enter goes on with the dialog, as in its fields, and Space
    chooses (RadioSet's own Enter would only choose)."""

    INHERIT_BINDINGS = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down,right", "next_button", "Next", id="silence.next", show=False),
        Binding("up,left", "previous_button", "Previous", id="silence.previous", show=False),
        Binding("space", "toggle_button", "Choose", id="silence.choose", show=False),
        Binding("enter", "screen.submit", "Continue", id="silence.submit", show=False),
    ]


class SilenceScreen(Dialog[SilenceRequest | None]):
    """Ask what to silence, taking the alert under the cursor as the example (or, for
    ``count`` selected alerts, asking once what to match in each of them)."""

    DEFAULT_CSS = """
    SilenceScreen RadioSet {
        width: 100%;
        border: none;
        padding: 0;
    }
    SilenceScreen .label {
        margin-top: 1;
    }
    SilenceScreen #error {
        color: $error;
    }
    """

    def __init__(self, alert: dict[str, Any], *, duration: str = "1h", count: int = 1) -> None:
        super().__init__()
        self.alert = alert
        self.duration = duration
        self.count = count

    def compose(self) -> ComposeResult:
        rule, src = clean(self.alert.get("rule")), clean(self.alert.get("src"))
        several = self.count > 1
        heading = (
            f"Silence alerts like the {self.count} selected"
            if several
            else f"Silence alerts like #{self.alert['id']}"
        )
        with Vertical(id="dialog"):
            yield Static(heading, classes="heading", markup=False)
            yield Static("Match", markup=False)
            with MatchSet(id="match"):
                yield Choice(
                    Content("each one's rule" if several else f"this rule ({rule})"), id="rule"
                )
                yield Choice(
                    Content("each one's source" if several else f"this source ({src or 'none'})"),
                    id="src",
                    disabled=not src,
                )
                yield Choice(
                    Content("both rule and source"), id="both", value=bool(src), disabled=not src
                )
            yield Static("For (e.g. 30m, 2h, 1d)", classes="label", markup=False)
            yield Input(self.duration, id="duration", compact=True)
            yield Static("Comment (optional)", classes="label", markup=False)
            yield Input(id="comment", max_length=500, compact=True)
            yield Static("", id="error", markup=False)
            yield Static(
                "Enter to continue · Tab to move · Esc to cancel", classes="hint", markup=False
            )

    def on_mount(self) -> None:
        if not self.alert.get("src"):
            self.query_one("#rule", RadioButton).value = True
        self.query_one("#duration", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        duration = self.query_one("#duration", Input).value.strip()
        problem = duration_problem(duration)
        if problem:
            self._error(problem)
            return
        pressed = self.query_one("#match", RadioSet).pressed_button
        match = pressed.id if pressed is not None else "rule"
        self.dismiss(
            SilenceRequest(
                rule=str(self.alert.get("rule") or "") if match in ("rule", "both") else "",
                src=str(self.alert.get("src") or "") if match in ("src", "both") else "",
                duration=duration,
                comment=self.query_one("#comment", Input).value.strip(),
            )
        )

    def _error(self, message: str) -> None:
        self.query_one("#error", Static).update(message)
        self.query_one("#duration", Input).focus()
