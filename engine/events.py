"""The event stream: topics published inside the engine, delivered to subscribed control clients.

Every subscriber has a queue bounded both in events and in bytes (one serial event can be 90 KB,
so a count alone does not bound memory); when one falls behind, its events are dropped and
counted (and the count is sent to it with the next event it does receive), never buffered
without limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TOPICS = frozenset(
    {"alerts", "silences", "status", "audit", "traffic", "facts", "rules", "bans", "logs",
     "devices", "scans", "serial"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Event:
    """One event for one subscriber: the message, and the same as the JSON line sent."""

    message: dict[str, Any]
    line: bytes


@dataclass(eq=False)
class Subscriber:
    name: str
    topics: set[str]
    queue: asyncio.Queue[Event]
    max_bytes: int = 8 << 20
    bytes: int = 0  # the size, as sent, of what waits in the queue
    dropped: int = 0
    unreported: int = field(default=0, repr=False)

    def offer(self, event: Event) -> bool:
        """Queue ``event`` unless that passes a bound."""
        if self.bytes + len(event.line) > self.max_bytes:
            return False
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        self.bytes += len(event.line)
        return True

    async def get(self) -> Event:
        event = await self.queue.get()
        self.bytes -= len(event.line)
        return event

    def get_nowait(self) -> dict[str, Any]:
        event = self.queue.get_nowait()
        self.bytes -= len(event.line)
        return event.message


class EventBus:
    def __init__(self, queue_size: int = 1000, queue_bytes: int = 8 << 20) -> None:
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self._subscribers: list[Subscriber] = []
        self.published = 0

    @property
    def subscribers(self) -> list[Subscriber]:
        return list(self._subscribers)

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self._subscribers)

    def subscribe(self, name: str, topics: Iterable[str]) -> Subscriber:
        sub = Subscriber(name, set(topics), asyncio.Queue(self.queue_size), self.queue_bytes)
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
        head = b""
        for sub in self._subscribers:
            if topic not in sub.topics:
                continue
            if not head:  # encoded once, only when someone listens, for every subscriber
                body = json.dumps(data, separators=(",", ":"), default=str).encode()
                head = b'{"event":' + json.dumps(topic).encode() + b',"data":' + body
            message: dict[str, Any] = {"event": topic, "data": data}
            tail = b"}\n"
            if sub.unreported:
                message["dropped"] = sub.unreported
                tail = b',"dropped":%d}\n' % sub.unreported
            if sub.offer(Event(message, head + tail)):
                sub.unreported = 0
            else:
                sub.dropped += 1
                sub.unreported += 1
