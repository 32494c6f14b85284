"""One log line from raw bytes: decoded as UTF-8 with bad bytes replaced (a line that is not
valid UTF-8 is still read), its newline removed, and cut with a mark past MAX_LINE bytes so
that no line can exhaust memory."""

from __future__ import annotations

MAX_LINE = 16384
MARK = "…[cut]"


def decode(raw: bytes) -> str:
    """The text of one line (``raw`` may end with its newline)."""
    if len(raw) > MAX_LINE:
        return raw[:MAX_LINE].decode("utf-8", "replace") + MARK
    return raw.decode("utf-8", "replace").rstrip("\r\n")
