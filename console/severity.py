"""How alert severities look everywhere in the console: a short text label first, colour second.

The labels carry the meaning on monochrome and NO_COLOR terminals. The one palette, ``STYLE``,
is used by every pane, screen and the status bar that draws a severity.
"""

from __future__ import annotations

import os
from typing import Literal

# Most urgent first, as the engine names them.
SEVERITIES = ("critical", "high", "medium", "low", "info")

LABEL = {"critical": "CRIT", "high": "HIGH", "medium": "MED", "low": "LOW", "info": "INFO"}

# Hex colours, not names: Rich reads "red" as the terminal's ANSI red, which Textual first turns
# into its theme's red, while Textual's own styles read it as #ff0000, so on 16 colours the same
# name came out as different colours in the table and the status bar. Each of these is exact in
# 256 colours and lands on the same hue in 16: CRIT bold bright white on red (160 / 1), HIGH
# bold bright red (203 / 9), MED bright yellow (220 / 11), LOW bright cyan (81 / 14), INFO dim.
COLOUR_STYLE = {
    "critical": "bold #ffffff on #d70000",
    "high": "bold #ff5f5f",
    "medium": "#ffd700",
    "low": "#5fd7ff",
    "info": "dim",
}

# Under NO_COLOR Textual turns every colour into a grey of the same brightness, which made red
# dark grey on near-black; so the order is told by weight alone, never by a colour.
NO_COLOUR_STYLE = {
    "critical": "bold reverse",
    "high": "bold",
    "medium": "",
    "low": "dim",
    "info": "dim",
}

# Read once at start, as Textual reads NO_COLOR (set, even empty, means no colour).
STYLE = NO_COLOUR_STYLE if os.environ.get("NO_COLOR") is not None else COLOUR_STYLE

RANK = {name: len(SEVERITIES) - i for i, name in enumerate(SEVERITIES)}

ToastLevel = Literal["information", "warning", "error"]


def toast_level(severity: str) -> ToastLevel:
    """The notification level for an alert of ``severity``."""
    if severity in ("critical", "high"):
        return "error"
    if severity == "medium":
        return "warning"
    return "information"
