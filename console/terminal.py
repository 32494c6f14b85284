"""Leaving cleanly when the terminal goes away (SSH dropped, tmux pane killed).

A hangup arrives as SIGHUP; if it does not (the console is not the terminal's foreground
process), the terminal itself stops answering, which a once-a-second check notices. Either way
the app exits instead of reading end-of-file from a dead terminal in a busy loop.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import termios
from typing import Any

from textual.app import App

HANGUP_STATUS = 128 + signal.SIGHUP
CHECK_SECONDS = 1.0


class TerminalWatch:
    def __init__(self, app: App[Any]) -> None:
        self.app = app

    def start(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hang_up)
        self.app.set_interval(CHECK_SECONDS, self._check)

    def stop(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def _check(self) -> None:
        try:
            termios.tcgetattr(sys.__stdin__.fileno())
        except (termios.error, OSError, ValueError, AttributeError):
            self._hang_up()

    def _hang_up(self) -> None:
        self.app.exit(return_code=HANGUP_STATUS)
