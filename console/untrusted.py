"""Text that came from the engine (titles, addresses, notes, evidence) made safe to draw.

Anything an attacker can influence reaches the screen through here: control characters become
``\\xNN`` (so no escape sequence reaches the terminal). Callers put the result in a Rich
``Text`` or a Textual ``Content`` built from plain strings, never in markup, so ``[bold]`` or
``[$accent]`` in a title stays literal.
"""

from __future__ import annotations

from engine.text import printable


def clean(value: object, *, limit: int | None = None) -> str:
    """``value`` as a string with control characters made visible, cut to ``limit``."""
    return printable("" if value is None else str(value), limit=limit)
