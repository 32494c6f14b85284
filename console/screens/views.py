"""The views opened over the panes, by name: the screen each one is, and the engine command the
operator needs to open it."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.screen import Screen

from console.engine_access import engine
from console.screens.bans import BansScreen
from console.screens.logs import LogsScreen
from console.screens.rules import RulesScreen
from console.screens.silences import SilencesScreen

VIEWS: dict[str, tuple[type[Screen[Any]], str]] = {
    "rules": (RulesScreen, "rules.status"),
    "bans": (BansScreen, "bans.list"),
    "logs": (LogsScreen, "logs.status"),
    "silences": (SilencesScreen, "silences.list"),
}


def view_available(app: App[Any], view: str) -> bool | None:
    """Whether ``view`` can be opened now: False while it is open already, None (its key shown
    greyed out) for an engine that does not serve it or an operator who may not see it."""
    screen_type, command = VIEWS[view]
    if any(isinstance(screen, screen_type) for screen in app.screen_stack):
        return False
    return True if engine(app).may(command) else None
