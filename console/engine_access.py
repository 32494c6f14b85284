"""The one way panes, screens and widgets reach the engine: the app they run in offers its link
and the operator's role check, as both the console and ``iotsec serial`` do. Nothing else of
the app is theirs to touch; what they want shown they ask for with a message (messages.py).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from textual.dom import DOMNode

from console.engine_link import EngineLink


@runtime_checkable
class EngineAccess(Protocol):
    link: EngineLink

    def may(self, command: str) -> bool:
        """Whether this operator may run ``command`` on the engine right now."""
        ...


def engine(node: DOMNode) -> EngineAccess:
    """The engine as the app running ``node`` offers it."""
    app = node.app
    if not isinstance(app, EngineAccess):
        raise TypeError(f"{type(app).__name__} offers no link to the engine")
    return app
