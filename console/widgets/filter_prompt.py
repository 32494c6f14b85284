"""A text filter behind ``/`` for a pane or a view: a one-line prompt, hidden until asked for,
that filters as you type; Enter keeps the filter and goes back to the rows, clearing empties it.

Mixed into a widget or screen that yields :func:`filter_prompt` in its compose and implements
``_filter_changed`` and ``_focus_view``; app.tcss shows the prompt while the owner has the
``-filtering`` class.
"""

from __future__ import annotations

from typing import Any

from textual.widgets import Input


def filter_prompt(placeholder: str) -> Input:
    return Input(placeholder=placeholder, classes="filter-prompt", compact=True)


class Filtering:
    filter: str = ""
    # What the mixing widget or screen provides.
    query_one: Any
    add_class: Any
    remove_class: Any

    def _filter_changed(self) -> None:
        raise NotImplementedError

    def _focus_view(self) -> None:
        raise NotImplementedError

    def action_filter(self) -> None:
        prompt = self.query_one(".filter-prompt", Input)
        prompt.value = self.filter
        self.add_class("-filtering")
        prompt.focus()

    def clear_filter(self) -> None:
        self.query_one(".filter-prompt", Input).value = ""
        self.remove_class("-filtering")
        if self.filter:
            self.filter = ""
            self._filter_changed()
        self._focus_view()

    # Handlers by name (a plain mixin has no decorated ones); only the filter prompt's events.

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.has_class("filter-prompt"):
            event.stop()
            if event.value.strip() != self.filter:
                self.filter = event.value.strip()
                self._filter_changed()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.has_class("filter-prompt"):
            event.stop()
            self.remove_class("-filtering")
            self._focus_view()
