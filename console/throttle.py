"""Run a callback soon after something changed, but at most once per interval: the changes in
between are picked up by that one run. Used for table updates and notifications.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.message_pump import MessagePump
from textual.timer import Timer

# Textual timers need a positive delay; this is "as soon as the loop is free".
SOON = 0.001


class Throttle:
    def __init__(self, owner: MessagePump, interval: float, callback: Callable[[], None]) -> None:
        self.owner = owner
        self.interval = interval
        self.callback = callback
        self._timer: Timer | None = None
        self._last = 0.0

    def request(self) -> None:
        """Run the callback once the interval since the last run has passed."""
        if self._timer is None:
            delay = max(SOON, self._last + self.interval - time.monotonic())
            self._timer = self.owner.set_timer(delay, self._run)

    def _run(self) -> None:
        self._timer = None
        self._last = time.monotonic()
        self.callback()
