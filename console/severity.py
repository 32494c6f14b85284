"""How alert severities look everywhere in the console: a short text label first, colour second.

The labels carry the meaning on monochrome and NO_COLOR terminals; the styles use the
terminal's own 16 ANSI colours so they stay readable on any palette.
"""

from __future__ import annotations

from typing import Literal

# Most urgent first, as the engine names them.
SEVERITIES = ("critical", "high", "medium", "low", "info")

LABEL = {"critical": "CRIT", "high": "HIGH", "medium": "MED", "low": "LOW", "info": "INFO"}

STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}

RANK = {name: len(SEVERITIES) - i for i, name in enumerate(SEVERITIES)}

ToastLevel = Literal["information", "warning", "error"]


def toast_level(severity: str) -> ToastLevel:
    """The notification level for an alert of ``severity``."""
    if severity in ("critical", "high"):
        return "error"
    if severity == "medium":
        return "warning"
    return "information"
