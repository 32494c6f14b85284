"""The event stream: topics published inside the engine, delivered to subscribed control clients.

Every subscriber has a bounded queue; when one falls behind, its events are dropped and counted
(and the count is sent to it with the next event it does receive), never buffered without limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TOPICS = frozenset(
    {"alerts", "silences", "status", "audit", "traffic", "facts", "rules", "bans", "logs",
     "devices", "scans", "serial"}
)  # fmt: skip


@dataclass(eq=False)
class Subscriber:
    name: str
    topics: set[str]
    queue: asyncio.Queue[dict[str, Any]]
    dropped: int = 0
    unreported: int = field(default=0, repr=False)


class EventBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._subscribers: list[Subscriber] = []
        self.published = 0

    @property
    def subscribers(self) -> list[Subscriber]:
        return list(self._subscribers)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self._subscribers)

    def subscribe(self, name: str, topics: Iterable[str]) -> Subscriber:
        sub = Subscriber(name, set(topics), asyncio.Queue(self.queue_size))
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    def wants(self, topic: str) -> bool:
        """Whether anyone listens to ``topic`` (so a publisher can skip building the event)."""
        return any(topic in s.topics for s in self._subscribers)

    def publish(self, topic: str, data: Any) -> None:
        """Deliver to every subscriber of ``topic``; call from the engine's loop only."""
        self.published += 1
        for sub in self._subscribers:
            if topic not in sub.topics:
                continue
            message: dict[str, Any] = {"event": topic, "data": data}
            if sub.unreported:
                message["dropped"] = sub.unreported
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                sub.dropped += 1
                sub.unreported += 1
            else:
                sub.unreported = 0
