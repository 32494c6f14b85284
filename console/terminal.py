"""Leaving cleanly when the terminal goes away (SSH dropped, tmux pane killed).

A hangup normally arrives as SIGHUP. It does not when the console is not in the terminal's
session; then the only sign is that reads return end-of-file, on which Textual's input thread
would spin. So a thread also sleeps in ``poll`` on the terminal, which wakes it with POLLHUP
the moment the other side closes. Either way the app exits at once.

Textual's shutdown still writes to the terminal (to restore its modes), and with the terminal
gone that write can block for ever. So a hangup also arms a last resort: if the process is
still here a few seconds later, it stops what it started and leaves without Textual.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from textual.app import App

HANGUP_STATUS = 128 + signal.SIGHUP
# How long Textual gets to shut down after a hangup before the process leaves without it.
EXIT_GRACE = 3.0


class TerminalWatch:
    def __init__(self, app: App[Any], *, before_forced_exit: Callable[[], None]) -> None:
        self.app = app
        self.before_forced_exit = before_forced_exit
        self._leaving = threading.Event()

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
        if not self._leaving.is_set():
            self._leaving.set()
            threading.Thread(target=self._leave_anyway, name="hangup-exit", daemon=True).start()
        self.app.exit(return_code=HANGUP_STATUS)

    def _leave_anyway(self) -> None:
        time.sleep(EXIT_GRACE)
        # Still running: the shutdown is stuck on the vanished terminal.
        with contextlib.suppress(Exception):
            self.before_forced_exit()
        os._exit(HANGUP_STATUS)
