"""What the views over the panes that show part of the engine (rules, bans) share: polling it
every few seconds while open, a line that says when that fails, and a text filter (``/``; Enter
keeps it, Esc clears it, Esc again closes the view)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Static

from console.polling import Poller
from console.untrusted import clean
from console.widgets.filter_prompt import Filtering, filter_prompt
from engine.control.protocol import ControlError

POLL_SECONDS = 2.0


class EngineView(Filtering, Screen[None]):
    """A subclass names what it shows (``what``), composes a ``Static#problem.alarm`` and ends
    with :meth:`filter_and_footer`, and implements ``_ask`` (the engine's answer to one poll),
    ``_answer`` (show it), ``_filter_changed`` and ``_focus_view``."""

    what: ClassVar[str] = ""

    DEFAULT_CSS = """
    EngineView #title {
        text-style: bold;
        padding: 0 1;
        background: $panel;
    }
    EngineView .alarm {
        display: none;
        padding: 0 1;
        color: $text-error;
        text-style: bold;
    }
    EngineView .alarm.-shown {
        display: block;
    }
    EngineView .view-box {
        height: 1fr;
        border-top: solid $primary;
        border-title-align: left;
    }
    EngineView #detail {
        height: 2;
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    EngineView TrafficTable {
        height: 1fr;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._unsupported = ""
        # Bumped whenever what a poll asks for, or what the engine holds, changes here, so that
        # an answer to an older question is not shown over a newer one.
        self._generation = 0
        self._poller = Poller(self, self.what.capitalize(), self._fetch, self._failed,
                              lambda: self._wanted, lambda: POLL_SECONDS)  # fmt: skip

    def on_unmount(self) -> None:
        self._poller.stop()

    @property
    def _wanted(self) -> bool:
        return self.is_attached and self.app.is_running and not self._unsupported

    async def _fetch(self) -> None:
        """One poll: ask the engine, then show the answer unless the question changed while it
        was asked (then ask again) or the view has closed."""
        generation = self._generation
        answer = await self._ask()
        if not self.is_attached:
            return
        if generation != self._generation:
            self._poller.again()
            return
        self._show_problem("")
        self._answer(answer)

    async def _ask(self) -> Any:
        raise NotImplementedError

    def _answer(self, answer: Any) -> None:
        raise NotImplementedError

    def filter_and_footer(self, placeholder: str) -> ComposeResult:
        """The filter prompt (hidden until ``/``) and the footer every view ends with."""
        yield filter_prompt(placeholder)
        yield Footer(compact=True)

    def _ask_again(self) -> None:
        """What the engine holds or what the view asks for changed: poll at once (and ignore
        an answer to the question before)."""
        self._generation += 1
        self._poller.now()

    def _failed(self, exc: ControlError) -> None:
        if not self.is_attached:
            return
        if exc.code == "unknown_command":
            self._unsupported = f"This engine does not serve {self.what} ({exc})."
            self._show_problem(self._unsupported)
        elif exc.code == "unreachable":
            self._show_problem("Not connected to the engine; trying again.")
        else:
            self._show_problem(f"{self.what.capitalize()} update failed: {exc}")

    def _show_problem(self, text: str) -> None:
        problem = self.query_one("#problem", Static)
        problem.update(Content(clean(text, limit=600)))
        problem.set_class(bool(text), "-shown")

    def action_back(self) -> None:
        if self.filter or self.has_class("-filtering"):
            self.clear_filter()
        else:
            self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


def view_bindings(view: str, title: str, filter_tooltip: str) -> list[BindingType]:
    """The keys every view ends with, ids ``VIEW.filter``/``back``/``close``: ``/`` filters
    (``filter_tooltip`` says by what), Esc clears the filter else closes, ``q`` closes."""
    return [
        Binding(
            "slash",
            "filter",
            "Filter",
            id=f"{view}.filter",
            tooltip=f"{filter_tooltip}; Enter keeps it, Esc clears it",
        ),
        Binding(
            "escape",
            "back",
            "Back",
            id=f"{view}.back",
            tooltip=f"Clear the filter, else close the {title} view",
        ),
        Binding(
            "q", "close", "Close", id=f"{view}.close", show=False, tooltip=f"Close the {title} view"
        ),
    ]
