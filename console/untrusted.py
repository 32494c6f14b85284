"""Text that came from the engine (titles, addresses, notes, evidence) made safe to draw.

Anything an attacker can influence reaches the screen through here: control characters become
``\\xNN`` (so no escape sequence reaches the terminal) and the result is wrapped in a Rich
``Text``, which is never parsed as markup, so ``[bold]`` or ``[$accent]`` in a title stays
literal.
"""

from __future__ import annotations

from rich.text import Text

from engine.text import printable


def clean(value: object, *, limit: int | None = None) -> str:
    """``value`` as a string with control characters made visible, cut to ``limit``."""
    return printable("" if value is None else str(value), limit=limit)


def cell(value: object, style: str = "", *, limit: int | None = None) -> Text:
    """One line of untrusted text for a table cell: no wrapping, an ellipsis when cut."""
    return Text(clean(value, limit=limit), style=style, no_wrap=True, overflow="ellipsis", end="")
