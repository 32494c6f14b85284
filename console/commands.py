"""The command palette (Ctrl+P): every action of the app and of every pane, by name.

Actions the operator may not use (a viewer's ack, say) are left out rather than offered and
refused. Names and help are taken literally: "[scan] scope" is words, not markup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher
from textual.markup import escape
from textual.screen import Screen

PaletteCommand = tuple[str, str, Callable[[], object]]


@runtime_checkable
class PaletteSource(Protocol):
    """The app, as far as the palette needs it."""

    def palette_commands(self, screen: Screen[Any] | None = None) -> list[PaletteCommand]: ...


def highlight(matcher: Matcher, name: str) -> Content:
    """``name`` with the letters the query matched styled (``Matcher.highlight`` would read
    the name as markup)."""
    content = Content(name)
    _score, offsets = matcher.fuzzy_search.match(matcher.query, name)
    for offset in offsets:
        if not name[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content


class ActionCommands(Provider):
    @property
    def _commands(self) -> list[PaletteCommand]:
        app = self.app
        assert isinstance(app, PaletteSource)
        return app.palette_commands(self.screen)

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands:
            yield DiscoveryHit(Content(name), callback, text=name, help=escape(help_text))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands:
            if (score := matcher.match(name)) > 0:
                yield Hit(score, highlight(matcher, name), callback, name, escape(help_text))
