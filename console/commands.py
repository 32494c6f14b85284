"""The command palette (Ctrl+P): every action of the app and of every pane, by name.

Actions the operator may not use (a viewer's ack, say) are left out rather than offered and
refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from console.app import IotsecApp

PaletteCommand = tuple[str, str, Callable[[], object]]


class ActionCommands(Provider):
    @property
    def _commands(self) -> list[PaletteCommand]:
        app: IotsecApp = self.app  # type: ignore[assignment]
        return app.palette_commands(self.screen)

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands:
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands:
            if (score := matcher.match(name)) > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
