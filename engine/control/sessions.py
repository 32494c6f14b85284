"""One control connection: who it is, how far behind its reader is, its subscription; and the
timer that closes a connection which never says hello."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from engine.control.protocol import encode
from engine.events import Subscriber
from engine.model import Operator
from engine.text import printable

log = logging.getLogger("engine.control.server")


class Session:
    """One client connection: who it is, its subscription, its writer."""

    def __init__(self, operator: Operator, writer: asyncio.StreamWriter, max_pending: int,
                 pid: int = 0, on_cut_off: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.operator = operator
        self.writer = writer
        self.max_pending = max_pending  # [control] max_pending_bytes
        self.pid = pid
        self.on_cut_off = on_cut_off
        self.client = "unknown"
        self.greeted = False
        # The address the client says its SSH session comes from, verified or not: it keeps
        # this client's own bans off it (only a verified one protects it from everyone's).
        self.claimed_ssh_client = ""
        self.cut_off = False  # disconnected for not reading its replies
        self.subscriber: Subscriber | None = None
        self.forwarder: asyncio.Task[None] | None = None
        self._events = asyncio.Lock()

    def pending(self) -> int:
        """Bytes written for this client that it has not read yet."""
        transport = self.writer.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def over_bound(self, extra: int = 0) -> bool:
        """Whether ``extra`` more bytes would pass [control] max_pending_bytes; if so the
        client is disconnected (once, with one log line)."""
        bound = self.max_pending
        waiting = self.pending()
        if waiting + extra <= bound:
            return False
        if not self.writer.is_closing():
            log.warning("disconnected %s (pid %s, %s): %d bytes of replies wait unread, over"
                        " [control] max_pending_bytes (%d)", self.operator.name, self.pid,
                        printable(self.client), waiting + extra, bound)  # fmt: skip
            self.cut_off = True
            self.writer.transport.abort()  # drops what waits: the memory comes back now
            if self.on_cut_off is not None:
                self.on_cut_off()
        return True

    async def send(self, message: dict[str, Any]) -> None:
        """A reply, written at once (replies never wait behind each other)."""
        if self.writer.is_closing():
            return
        data = encode(message)
        if not self.over_bound(len(data)):
            self.writer.write(data)

    async def send_event(self, line: bytes) -> None:
        """An event (one JSON line as the bus encoded it, once for every subscriber): waits
        while the client is behind, so the subscriber's bounded queue (which drops and
        counts) takes up the slack instead of the socket's buffer."""
        async with self._events:
            if self.writer.is_closing():
                raise ConnectionError("closed")
            await self.writer.drain()
            if not self.writer.is_closing() and not self.over_bound(len(line)):
                self.writer.write(line)


class HelloWatchdog:
    """Closes a connection that sits idle for ``idle`` seconds without having said hello (it
    would hold a connection slot for nothing). One timer per connection, re-armed from the
    time of the last request, so a busy connection costs nothing per request."""

    def __init__(self, session: Session, idle: float) -> None:
        self.session = session
        self.idle = idle
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self._timer = self.loop.call_at(self.last + idle, self._check)

    def _check(self) -> None:
        session = self.session
        if session.greeted or session.writer.is_closing():
            return
        due = self.last + self.idle
        if self.loop.time() < due:
            self._timer = self.loop.call_at(due, self._check)
            return
        log.warning("closed a control connection of %s (pid %s): idle without a hello"
                    " ([control] hello_timeout)", session.operator.name, session.pid)  # fmt: skip
        session.writer.close()

    def cancel(self) -> None:
        self._timer.cancel()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send what is written, then read what the client sent until it hangs up too: a Unix socket
    closed with unread input resets the connection, and the client could lose the reason."""
    await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
    while await reader.read(1 << 16):
        pass
