"""Untrusted text (from the network, logs, a serial line, another operator) made safe to show."""

from __future__ import annotations

import re

# Unicode's format characters (category Cf, Unicode 14; a test checks this against the running
# Python's tables): bidi overrides and isolates (U+202A-202E, U+2066-2069) reorder what follows
# on screen and zero-width ones hide text, so an address or a command could read as another.
FORMAT_CHARACTERS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
# C0 controls except tab, DEL, the C1 range: any of them can move the cursor, change the
# terminal's state or start an escape sequence; and the format characters above.
_UNSAFE = re.compile(f"[\x00-\x08\x0a-\x1f\x7f-\x9f{FORMAT_CHARACTERS}]")


def printable(text: str, *, limit: int | None = None) -> str:
    """``text`` with control and format characters shown as ``\\xNN`` / ``\\uNNNN`` and,
    with ``limit``, cut short."""
    out = _UNSAFE.sub(_escaped, text)
    if limit is not None and len(out) > limit:
        out = out[: max(limit - 1, 0)] + "…"
    return out


def unsafe_character(text: str) -> str | None:
    """The first control or format character in ``text`` (escaped), or None: for values such
    as filters that must hold none at all."""
    found = _UNSAFE.search(text)
    return None if found is None else _escaped(found)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
