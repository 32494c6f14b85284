"""Run a callback soon after something changed, but at most once per interval: the changes in
between are picked up by that one run. Used for table updates and notifications.

With a CPU budget, a run whose cost (the callback and the repaint after it) is more than its
share of one core makes the next one wait longer, so a storm slows the updates down instead of
taking over the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.message_pump import MessagePump
from textual.timer import Timer

# Textual timers need a positive delay; this is "as soon as the loop is free".
SOON = 0.001
# However expensive, a run comes at least this often.
LONGEST_GAP = 2.0


class Throttle:
    def __init__(
        self,
        owner: MessagePump,
        interval: float,
        callback: Callable[[], None],
        *,
        budget: float | None = None,
    ) -> None:
        self.owner = owner
        self.interval = interval
        self.callback = callback
        self.budget = budget
        self._timer: Timer | None = None
        self._last = float("-inf")
        self.gap = interval

    def request(self) -> None:
        """Run the callback once the gap since the last run has passed."""
        if self._timer is None:
            delay = max(SOON, self._last + self.gap - time.monotonic())
            self._timer = self.owner.set_timer(delay, self._run)

    def _run(self) -> None:
        self._timer = None
        self._last = time.monotonic()
        started = time.process_time()
        self.callback()
        if self.budget:
            self.owner.call_after_refresh(self._charge, started)

    def _charge(self, started: float) -> None:
        cost = time.process_time() - started
        self.gap = min(LONGEST_GAP, max(self.interval, cost / (self.budget or 1)))
