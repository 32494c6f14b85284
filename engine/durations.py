"""Human durations ("90s", "15m", "2h", "7d", "1h30m") as used in config and on the command line."""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
# Longer than anything sensible, short enough that a date after it can still be printed.
MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as ``"2h"``, ``"1h30m"`` or a plain number of seconds."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as '30m', got {text!r}")
    if isinstance(text, int | float):
        return _checked(float(text), text)
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as '30m', got {text!r}")
    s = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return _checked(float(s), text)
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"expected a duration such as '90s', '15m', '2h' or '7d', got {text!r}")
    return _checked(total, text)


def _checked(seconds: float, text: object) -> float:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and not negative, got {text!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"a duration must be at most 100 years, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest readable form of a duration: ``"2h"``, ``"1h30m"``, ``"45s"``."""
    seconds = round(seconds)
    if seconds <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            n, seconds = divmod(seconds, size)
            out.append(f"{n}{unit}")
    return "".join(out[:2])


def format_age(seconds: float) -> str:
    """How long ago, in the largest unit that fits, as tables show it: ``"20s"``, ``"5m"``,
    ``"3h"``, ``"2d"``."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
