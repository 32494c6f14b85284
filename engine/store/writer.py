"""The one writer: a thread that owns the write connection and commits in batches.

Producers enqueue statements; the thread gathers them for up to ``interval`` seconds or
``max_rows`` items, runs runs of the same statement with ``executemany`` inside one
transaction, and then resolves each item's future, so a caller that awaits its future knows
the row is on disk. When someone is waiting for a commit, the batch closes after a short
``linger`` instead of the whole interval, so a lone request is not held back. A bad item
fails alone: the batch is retried item by item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from engine.store.db import GROUP, connect

log = logging.getLogger(__name__)

Params = Sequence[Any] | dict[str, Any]


@dataclass(slots=True)
class _Item:
    sql: str | None
    params: Params | None
    call: Callable[[sqlite3.Connection], Any] | None
    future: Future[Any] | asyncio.Future[Any] | None = field(default=None)


class WriterClosed(Exception):
    """The writer has stopped; nothing more can be written."""


class Writer:
    """Batched writes to one database from any thread."""

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = 2000,
        interval: float = 0.1,
        linger: float = 0.002,
        queue_size: int = 100_000,
        group: str = GROUP,
    ) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        self.interval = interval
        self.linger = min(linger, interval)
        # A deque and an event rather than queue.Queue: appends take no lock, which matters
        # at tens of thousands of alerts a second.
        self._items: deque[_Item] = deque()
        self._capacity = queue_size
        self._wake = threading.Event()
        self._conn = connect(self.path, group=group)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._closed = False
        self.batches = 0
        self.rows = 0
        self.errors = 0
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._items)

    @property
    def capacity(self) -> int:
        return self._capacity

    def execute(self, sql: str, params: Params = (), *, wait: bool = False) -> Future[Any] | None:
        """Queue one statement; with ``wait`` returns a future resolved after its commit.

        Raises :class:`queue.Full` when the queue is full, so the caller decides whether to
        drop (and count) or to wait.
        """
        return self._put(_Item(sql, params, None, Future() if wait else None))

    def call(self, fn: Callable[[sqlite3.Connection], Any]) -> Future[Any]:
        """Run ``fn(conn)`` inside the next transaction; the future holds its return value."""
        future: Future[Any] = Future()
        self._put(_Item(None, None, fn, future))
        return future

    def execute_async(self, sql: str, params: Params = ()) -> asyncio.Future[Any]:
        """:meth:`execute` for the event loop: an asyncio future resolved after the commit.

        The futures of one batch are resolved together in one callback on their loop, so a
        burst of confirmed writes costs one wake-up of the loop per transaction, not per row.
        """
        future = asyncio.get_running_loop().create_future()
        self._put(_Item(sql, params, None, future))
        return future

    async def run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(conn)`` inside the next transaction, from the loop; returns its value."""
        future = asyncio.get_running_loop().create_future()
        self._put(_Item(None, None, fn, future))
        return await future

    def _put(self, item: _Item) -> Future[Any] | asyncio.Future[Any] | None:
        if self._closed:
            raise WriterClosed(f"{self.path}: writer is closed")
        if len(self._items) >= self._capacity:
            raise queue.Full
        self._items.append(item)
        if not self._wake.is_set():
            self._wake.set()
        return item.future

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything queued so far is committed."""
        self.call(lambda conn: None).result(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        self._conn.close()

    def _wait(self, timeout: float | None) -> None:
        self._wake.clear()
        if not self._items and not self._closed:
            self._wake.wait(timeout)

    def _run(self) -> None:
        items = self._items
        while True:
            if not items:
                if self._closed:
                    return
                self._wait(None)
                continue
            batch: list[_Item] = []
            deadline = time.monotonic() + self.interval
            while len(batch) < self.max_rows:
                if items:
                    item = items.popleft()
                    batch.append(item)
                    if item.future is not None:
                        deadline = min(deadline, time.monotonic() + self.linger)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._wait(remaining)
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        try:
            results = self._transaction(batch)
        except Exception:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        else:
            self.batches += 1
            self.rows += len(batch)
            _settle([_outcome(item, result) for item, result in zip(batch, results, strict=True)
                     if item.future is not None])  # fmt: skip
            return
        # One item spoiled the batch: run each alone so only that one fails.
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        for item in batch:
            try:
                (result,) = self._transaction([item])
            except Exception as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                self.errors += 1
                log.error("store write failed: %s (%s)", exc, item.sql or item.call)
                outcomes.append((item.future, None, exc))
                continue
            self.rows += 1
            outcomes.append(_outcome(item, result))
        _settle([o for o in outcomes if o[0] is not None])

    def _transaction(self, batch: list[_Item]) -> list[Any]:
        conn = self._conn
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        for key, group in groupby(batch, key=lambda i: i.sql):
            items = list(group)
            if key is None:
                for item in items:
                    assert item.call is not None
                    # A call may refuse (an operator's request that does not apply): undo
                    # just its changes and let the rest of the batch commit.
                    conn.execute("SAVEPOINT item")
                    try:
                        results.append(item.call(conn))
                    except Exception as exc:
                        conn.execute("ROLLBACK TO item")
                        results.append(_Refused(exc))
                    conn.execute("RELEASE item")
            elif len(items) == 1:
                cur = conn.execute(key, items[0].params or ())
                results.append(cur.lastrowid)
            else:
                conn.executemany(key, [i.params or () for i in items])
                results.extend([None] * len(items))
        conn.execute("COMMIT")
        return results


@dataclass(frozen=True, slots=True)
class _Refused:
    """What a call raised inside a batch that still committed."""

    error: BaseException


def _outcome(item: _Item, result: Any) -> tuple[Any, Any, BaseException | None]:
    if isinstance(result, _Refused):
        return item.future, None, result.error
    return item.future, result, None


def _settle(outcomes: list[tuple[Any, Any, BaseException | None]]) -> None:
    """Resolve futures after a commit: thread futures directly, asyncio ones per loop at once."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
    for future, result, exc in outcomes:
        if isinstance(future, asyncio.Future):
            by_loop.setdefault(future.get_loop(), []).append((future, result, exc))
        elif exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(_settle_on_loop, settled)


def _settle_on_loop(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, exc in outcomes:
        if future.done():
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
