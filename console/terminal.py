"""Leaving cleanly when the terminal goes away (SSH dropped, tmux pane killed).

A hangup normally arrives as SIGHUP. It does not when the console is not in the terminal's
session; then the only sign is that reads return end-of-file, on which Textual's input thread
would spin. So a thread also sleeps in ``poll`` on the terminal, which wakes it with POLLHUP
the moment the other side closes. Either way the app exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import signal
import sys
import threading
from typing import Any

from textual.app import App

HANGUP_STATUS = 128 + signal.SIGHUP


class TerminalWatch:
    def __init__(self, app: App[Any]) -> None:
        self.app = app

    def start(self) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hang_up)
        threading.Thread(target=self._wait_for_hangup, name="hangup-watch", daemon=True).start()

    def stop(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def _wait_for_hangup(self) -> None:
        poller = select.poll()
        # Hang-up, error and invalid-descriptor events are always reported; asking for no
        # others keeps this thread asleep until one happens.
        poller.register(sys.__stdin__.fileno(), 0)
        poller.poll()
        with contextlib.suppress(RuntimeError):  # the app has already stopped
            self.app.call_from_thread(self._hang_up)

    def _hang_up(self) -> None:
        self.app.exit(return_code=HANGUP_STATUS)
