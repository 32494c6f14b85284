"""Polling the engine without overlap: one poll at a time, the next armed with a one-shot timer
when the last has finished, so a slow engine slows the polls instead of piling them up. Used
by the views that show what the engine holds (traffic, rules, bans)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual.dom import DOMNode
from textual.timer import Timer

from engine.control.protocol import ControlError

SOON = 0.001


class Poller:
    """Polls for ``owner`` (a widget or screen): ``fetch`` asks and shows, ``failed`` shows an
    engine error; ``wanted`` says whether polling should go on; ``interval`` is the pace, and
    ``retry`` the pace after an error (default: the same)."""

    def __init__(self, owner: DOMNode, name: str, fetch: Callable[[], Awaitable[None]],
                 failed: Callable[[ControlError], None], wanted: Callable[[], bool],
                 interval: Callable[[], float], retry: float | None = None) -> None:  # fmt: skip
        self.owner = owner
        self.name = name
        self.fetch = fetch
        self.failed = failed
        self.wanted = wanted
        self.interval = interval
        self.retry = retry
        self._timer: Timer | None = None
        self._polling = False
        self._again = False

    def now(self) -> None:
        """Poll at once, or right after the poll in flight."""
        if self._polling:
            self._again = True
            return
        self.stop()
        self._start()

    def again(self) -> None:
        """The poll in flight asked an older question: poll again as soon as it is done."""
        self._again = True

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _start(self) -> None:
        self._timer = None
        if not self.wanted():
            return
        self._polling = True
        app: Any = self.owner.app
        app.run_worker(self._poll(), name=f"{self.name} update", group=f"{self.name}-poll",
                       exit_on_error=False)  # fmt: skip

    async def _poll(self) -> None:
        delay = self.interval()
        try:
            await self.fetch()
        except ControlError as exc:
            if self.retry is not None:
                delay = self.retry
            self.failed(exc)
        finally:
            self._polling = False
            if self.wanted():
                self._timer = self.owner.set_timer(SOON if self._again else delay, self._start)
            self._again = False
