"""Untrusted text (from the network, logs, a serial line, another operator) made safe to show."""

from __future__ import annotations

import re

# C0 controls except tab, DEL, and the C1 range: any of them can move the cursor, change the
# terminal's state or start an escape sequence.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str, *, limit: int | None = None) -> str:
    """``text`` with control characters shown as ``\\xNN`` and, with ``limit``, cut short."""
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    if limit is not None and len(out) > limit:
        out = out[: max(limit - 1, 0)] + "…"
    return out
