# Over 500 lines: one class, the reader thread and the loop for every kind of source.
"""The logwatch part of the engine: the jails' files followed (watchdog's inotify events wake
a reader thread; it also polls, and only polls where inotify is not available), syslog
received from devices, the systemd journal followed; each line examined by its jails' filters
in that thread, and the failures handed to the loop in batches, where the jails count them,
raise alerts and ask the response policy for bans. Each file's position is saved in the store
after every batch, so a restart resumes where the last run stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError as FutureCancelled
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.config import LogwatchConfig
from engine.errors import NotFound
from engine.logwatch.access import LogAccess, Refused, glob_base
from engine.logwatch.filters import Examiner, FilterError, Verdict, find_filter
from engine.logwatch.follower import Follower, Position, last_lines
from engine.logwatch.jails import Failure, Jail
from engine.logwatch.journal import JournalReader
from engine.logwatch.syslog import SyslogMessage, SyslogReceiver
from engine.text import printable

if TYPE_CHECKING:
    import sqlite3

    from engine.alerts.manager import AlertManager
    from engine.events import EventBus
    from engine.model import AlertEvent
    from engine.store.writer import Writer

log = logging.getLogger("iotsec.logwatch")

SAVE_POSITION = (
    "INSERT INTO log_offsets (path, inode, head_hash, offset, updated) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (path) DO UPDATE SET inode = excluded.inode, head_hash = excluded.head_hash,"
    " offset = excluded.offset, updated = excluded.updated"
)
GLOB_RESCAN = 10.0  # seconds between looks for new files matching a jail's glob
QUEUED_MESSAGES = 20_000  # syslog and journal lines waiting for the reader thread


@dataclass
class Route:
    """One jail reading one source through its filters (one examiner each: they remember)."""

    jail: Jail
    examiners: list[Examiner]

    def failure(self, line: str, now: float) -> Verdict | None:
        """The failure the jail's filters find in a whole line, if any."""
        return _failure(e.examine(line, now) for e in self.examiners)

    def message_failure(self, program: str, message: str, ts: float | None) -> Verdict | None:
        """The failure they find in a message its source has split from program and time."""
        return _failure(e.examine_message(program, message, ts) for e in self.examiners)


@dataclass
class Source:
    name: str  # the path, "syslog" or "journal:<matches>"
    routes: list[Route] = field(default_factory=list)
    lines: int = 0
    matched: int = 0
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=2000))  # syslog, journal


class LogWatch:
    def __init__(
        self,
        config: LogwatchConfig,
        alerts: AlertManager,
        writer: Writer,
        bus: EventBus,
        read: Callable[..., Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.alerts = alerts
        self.writer = writer
        self.bus = bus
        self.read_store = read
        self.clock = clock
        self.respond: Callable[[AlertEvent, int | None], None] | None = None
        self.jails: dict[str, Jail] = {}
        self.files: dict[str, Source] = {}
        self.followers: dict[str, Follower] = {}
        self.patterns: dict[str, list[Jail]] = {}  # a jail's glob -> its jails
        self.access = LogAccess.for_owners(config.owners)
        self.skipped: dict[str, str] = {}  # files a glob found that the rules refuse -> why
        self.syslog_source = Source("syslog")
        self.journals: dict[str, tuple[Source, JournalReader]] = {}
        self.receiver: SyslogReceiver | None = None
        self.watcher = "polling"
        self.state = "not started"
        self.reason = ""
        self.messages: deque[tuple[Source, str, str, float | None, str]] = deque()
        self.dropped = 0
        self._saved: dict[str, Position] = {}
        self._written: dict[str, Position] = {}
        self._wake = threading.Event()
        self._files_changed = threading.Event()  # inotify saw a change (messages wake too)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._handler = _Wake(self._wake, self._files_changed)
        self._watched_dirs: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_rescan = 0.0

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not any(j.enabled for j in self.config.jail):
            self.state, self.reason = "idle", "no jails configured ([[logwatch.jail]])"
            return
        self._saved = await self.read_store(_saved_positions)
        for config in self.config.jail:
            if not config.enabled:
                continue
            try:
                filters = [find_filter(name, config.mode) for name in config.filters]
            except FilterError as exc:
                broken = Jail(config, [])
                broken.state = f"error: {exc}"
                self.jails[config.name] = broken
                log.error("logwatch: jail %s not started: %s", config.name, exc)
                continue
            jail = Jail(config, filters)
            self.jails[config.name] = jail
            for pattern in config.files:
                if glob.has_magic(pattern):
                    self.patterns.setdefault(pattern, []).append(jail)
                else:
                    self._follow(pattern, jail)
            if config.syslog:
                self.syslog_source.routes.append(_route(jail))
            if config.journal:
                await self._start_journal(jail)
        self._rescan()
        if self.config.syslog.enabled:
            await self._start_syslog()
        self._start_watcher()
        self._thread = threading.Thread(target=self._run, name="logwatch", daemon=True)
        self._thread.start()
        self.state = "running"
        log.info(
            "logwatch: %d jails, %d files (%s)", len(self.jails), len(self.followers), self.watcher
        )

    async def stop(self) -> None:
        # Sources first; then the thread's last pass reads what they queued and the files' ends.
        if self.receiver is not None:
            await self.receiver.stop()
        for _, reader in self.journals.values():
            await reader.stop()
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 5)
        for follower in list(self.followers.values()):
            follower.close()
        if self.state == "running":
            self.state = "stopped"

    # -- sources -----------------------------------------------------------------------------

    def _follow(self, path: str, jail: Jail, beneath: str | None = None) -> None:
        path = os.path.abspath(path)
        source = self.files.get(path)
        if source is None:
            source = self.files[path] = Source(path)
            self.followers[path] = Follower(
                path, self._saved.get(path), jail.config.from_start, self.access, beneath
            )
            self._watch_dir(os.path.dirname(path))
        if all(route.jail is not jail for route in source.routes):
            source.routes.append(_route(jail))

    def _rescan(self) -> None:
        """Files that match a jail's glob now (a new one is read from its start), those the
        rules of LogAccess allow; the others are said once, and looked at again next time."""
        skipped: dict[str, str] = {}
        for pattern, jails in self.patterns.items():
            beneath = glob_base(pattern)
            for found in sorted(glob.glob(pattern)):
                path = os.path.abspath(found)
                if path in self.files or (os.path.isdir(path) and not os.path.islink(path)):
                    continue
                reason = self._refusal(path, beneath)
                if reason:
                    skipped[path] = reason
                    continue
                for jail in jails:
                    self._follow(path, jail, beneath)
            self._watch_dir(os.path.dirname(os.path.abspath(pattern)))
        for path, reason in skipped.items():
            if self.skipped.get(path) != reason:
                log.warning("logwatch: skipped %s", reason)
        self.skipped = skipped
        self._next_rescan = time.monotonic() + GLOB_RESCAN

    def _refusal(self, path: str, beneath: str) -> str:
        """Why the rules refuse a file a glob found ("" when they do not; one that cannot be
        opened for another reason is followed, and its follower says why)."""
        try:
            self.access.open(path, beneath).close()
        except Refused as exc:
            return str(exc)
        except OSError:
            return ""
        return ""

    async def _start_syslog(self) -> None:
        settings = self.config.syslog
        self.receiver = SyslogReceiver(
            self._received,
            settings.address,
            settings.port,
            udp=settings.udp,
            tcp=settings.tcp,
            max_message=settings.max_message,
            udp_buffer=settings.udp_buffer,
            max_connections=settings.max_connections,
            idle_timeout=settings.idle_timeout,
        )
        try:
            await self.receiver.start()
        except OSError as exc:
            self.receiver = None
            self.reason = f"syslog receiver not started: {exc}"
            log.error("logwatch: %s", self.reason)

    def _received(self, messages: list[SyslogMessage]) -> None:
        source = self.syslog_source
        for message in messages:
            self._queue((source, message.program, message.message, message.ts, message.line()))

    async def _start_journal(self, jail: Jail) -> None:
        matches = " ".join(jail.config.journal)
        key = f"journal:{matches}"
        if key not in self.journals:
            source = Source(key)
            reader = JournalReader(
                list(jail.config.journal),
                lambda entries, source=source: self._journal(source, entries),
                cursor=await self.read_store(lambda conn: _saved_cursor(conn, key)),
                from_start=jail.config.from_start,
                directory=self.config.journal_directory,
                save_cursor=lambda cursor: self._save_cursor(key, cursor),
            )
            self.journals[key] = (source, reader)
            await reader.start()
        self.journals[key][0].routes.append(_route(jail))

    def _journal(self, source: Source, entries: list[tuple[str, str, float | None, str]]) -> None:
        for program, message, ts, line in entries:
            self._queue((source, program, message, ts, line))

    def _queue(self, item: tuple[Source, str, str, float | None, str]) -> None:
        if len(self.messages) >= QUEUED_MESSAGES:
            self.dropped += 1
            return
        self.messages.append(item)
        self._wake.set()

    def _save_cursor(self, key: str, cursor: str) -> None:
        with contextlib.suppress(queue.Full):  # the next entry saves a newer cursor
            self.writer.execute(
                "INSERT INTO journal_cursors (matches, cursor, updated) VALUES (?, ?, ?)"
                " ON CONFLICT (matches) DO UPDATE SET cursor = excluded.cursor,"
                " updated = excluded.updated",
                (key, cursor, time.time()),
            )

    # -- watching ------------------------------------------------------------------------------

    def _start_watcher(self) -> None:
        if self.config.watcher == "polling":
            return
        try:
            from watchdog.observers.inotify import InotifyObserver
        except ImportError as exc:  # not Linux
            self._no_inotify(f"inotify not available: {exc}")
            return
        observer = InotifyObserver()
        try:
            for directory in sorted(self._watched_dirs):
                if os.path.isdir(directory):
                    observer.schedule(self._handler, directory, recursive=False)
            observer.start()
        except OSError as exc:
            self._no_inotify(f"inotify failed: {exc}")
            return
        self._observer = observer
        self.watcher = "inotify"

    def _no_inotify(self, why: str) -> None:
        if self.config.watcher == "inotify":
            self.reason = f"{why}; polling every {self.config.poll_interval:g}s instead"
        log.warning("logwatch: %s; polling every %gs", why, self.config.poll_interval)

    def _watch_dir(self, directory: str) -> None:
        if directory in self._watched_dirs:
            return
        self._watched_dirs.add(directory)
        if self._observer is not None and os.path.isdir(directory):
            try:
                self._observer.schedule(self._handler, directory, recursive=False)
            except OSError as exc:
                log.warning("logwatch: cannot watch %s (%s); it is polled", directory, exc)

    # -- the reader thread ---------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.config.poll_interval
        polling = self._observer is None
        poll_at = time.monotonic() + interval
        first = True
        while True:
            self._wake.wait(max(0.0, poll_at - time.monotonic()))
            self._wake.clear()
            last = self._stopping.is_set()  # a last pass after the stop, then out
            # Syslog and journal messages wake the thread too: the files are read only when
            # inotify saw a change, or to poll them.
            changed = self._files_changed.is_set()
            self._files_changed.clear()
            now = time.monotonic()
            try:
                if self.patterns and now >= self._next_rescan:
                    self._rescan()
                    changed = True
                if changed or first or last or polling or now >= poll_at:
                    poll_at = now + interval
                    for path, follower in list(self.followers.items()):
                        self._read_file(self.files[path], follower)
                self._read_messages()
            except (RuntimeError, FutureCancelled):
                return  # the loop is gone
            if last:
                return
            first = False

    def _read_file(self, source: Source, follower: Follower) -> None:
        while True:
            lines = follower.read()
            position = follower.position
            if not lines and position == self._written.get(source.name):
                return
            hits = self._examine(source, lines)
            self._hand_over(source, hits, position)
            if not follower.behind:
                return

    def _read_messages(self) -> None:
        by_source: dict[int, tuple[Source, list[tuple[Jail, Verdict, str]]]] = {}
        while self.messages:
            source, program, message, ts, line = self.messages.popleft()
            source.lines += 1
            source.recent.append(line)
            entry = by_source.setdefault(id(source), (source, []))
            for route in source.routes:
                failed = route.message_failure(program, message, ts)
                if failed is not None:
                    entry[1].append((route.jail, failed, line))
        for source, hits in by_source.values():
            source.matched += len(hits)
            self._hand_over(source, hits, None)

    def _examine(self, source: Source, lines: list[str]) -> list[tuple[Jail, Verdict, str]]:
        hits = []
        now = self.clock()
        for line in lines:
            for route in source.routes:
                failed = route.failure(line, now)
                if failed is not None:
                    hits.append((route.jail, failed, line))
        source.lines += len(lines)
        source.matched += len(hits)
        return hits

    def _hand_over(
        self, source: Source, hits: list[tuple[Jail, Verdict, str]], position: Position | None
    ) -> None:
        if not hits and position is None:
            return  # nothing to count and no position to save
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._deliver(source, hits, position), self._loop)
        future.result()  # in order, and the thread waits while the loop is behind

    # -- on the loop ---------------------------------------------------------------------------

    async def _deliver(
        self, source: Source, hits: list[tuple[Jail, Verdict, str]], position: Position | None
    ) -> None:
        now = self.clock()
        for jail, verdict, line in hits:
            ts = verdict.ts if verdict.ts is not None else now
            event = jail.fail(verdict.host, Failure(ts, line, source.name, verdict.user))
            if event is not None:
                self._raise(event)
        if position is not None and position != self._written.get(source.name):
            while True:
                try:
                    self.writer.execute(
                        SAVE_POSITION,
                        (source.name, position.inode, position.head, position.offset, now),
                    )
                    break
                except queue.Full:
                    await asyncio.sleep(0.01)
            self._written[source.name] = position

    def _raise(self, event: AlertEvent) -> None:
        alert, _ = self.alerts.raise_alert(event)
        log.info("logwatch: %s", event.title)
        if self.respond is not None:
            self.respond(event, alert.id)
        if self.bus.wants("logs"):
            self.bus.publish(
                "logs", {"event": "alert", "jail": event.rule, "host": event.src, "alert": alert.id}
            )

    # -- what the control API shows ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        files = []
        # The reader thread adds the files a jail's glob matches, so snapshots are iterated:
        # the followers first, as a path is in self.files before it is in self.followers.
        followers = sorted(list(self.followers.items()))
        sources = dict(self.files)
        for path, follower in followers:
            source = sources[path]
            files.append(
                {
                    "path": path,
                    "state": follower.state,
                    "error": follower.error,
                    "offset": follower.offset,
                    "size": follower.size,
                    "lines": source.lines,
                    "matched": source.matched,
                    "rotations": follower.rotations,
                    "truncations": follower.truncations,
                    "jails": [route.jail.name for route in source.routes],
                }
            )
        jails = []
        for jail in self.jails.values():
            config = jail.config
            jails.append(
                {
                    "name": jail.name,
                    "state": jail.state,
                    "filters": list(config.filters),
                    "files": list(config.files),
                    "syslog": config.syslog,
                    "journal": list(config.journal),
                    "maxretry": config.maxretry,
                    "findtime": config.findtime,
                    "severity": config.severity,
                    "ban": config.ban,
                    **jail.status_counts(),
                    "hosts": jail.hosts(10),
                }
            )
        receiver = self.receiver
        return {
            "state": self.state,
            "reason": self.reason,
            "watcher": self.watcher,
            "files": files,
            "skipped": [{"path": p, "reason": r} for p, r in sorted(self.skipped.items())],
            "owners": list(self.access.names),
            "jails": jails,
            "syslog": {
                "enabled": receiver is not None,
                "address": self.config.syslog.address,
                "udp_port": receiver.udp_port if receiver else None,
                "tcp_port": receiver.tcp_port if receiver else None,
                "received": receiver.received if receiver else 0,
                "malformed": receiver.malformed if receiver else 0,
                "last_error": receiver.last_error if receiver else "",
                "cut": receiver.cut if receiver else 0,
                "udp_dropped": receiver.udp_dropped if receiver else 0,
                "udp_buffer": receiver.udp_buffer if receiver else None,
                "tcp_connections": len(receiver.connections) if receiver else 0,
                "tcp_refused": receiver.refused if receiver else 0,
                "tcp_timed_out": receiver.timed_out if receiver else 0,
                "lines": self.syslog_source.lines,
                "matched": self.syslog_source.matched,
            },
            "journal": [
                {
                    "matches": key.removeprefix("journal:"),
                    "state": reader.state,
                    "lines": source.lines,
                    "matched": source.matched,
                }
                for key, (source, reader) in self.journals.items()
            ],
            "dropped": self.dropped,
        }

    def summary(self) -> dict[str, Any]:
        """What ``iotsec status`` shows of log watching: counts only (the engine's status is
        published every two seconds; no file is looked at and no host list sorted for it)."""
        jails = self.jails.values()
        return {
            "state": self.state,
            "watcher": self.watcher,
            "files": len(self.files),
            "jails": len(self.jails),
            "currently_failed": sum(j.currently_failed() for j in jails),
            "alerts": sum(j.tripped for j in jails),
        }

    async def tail(self, name: str, lines: int = 200) -> dict[str, Any]:
        """The last lines of a followed file (or "syslog", or a journal source), each with the
        jail and host it fails, for showing with the matches highlighted."""
        follower = self.followers.get(name)
        if follower is not None:
            source = self.files[name]
            # Opened again by its path, so under the same rules as the follower's opens.
            texts = await asyncio.to_thread(last_lines, name, lines, self.access, follower.beneath)
        else:
            found = self.syslog_source if name == "syslog" else self.journals.get(name, (None,))[0]
            if found is None:
                followed = ", ".join([*self.files, "syslog", *self.journals])
                raise NotFound(f"{name!r} is not followed (followed: {followed})")
            source = found
            texts = list(source.recent)[-lines:]
        routes = [_route(route.jail) for route in source.routes]  # fresh: they remember hosts
        now = self.clock()
        out = []
        for text in texts:
            row: dict[str, Any] = {"text": printable(text)}
            for route in routes:
                failed = route.failure(text, now)
                if failed is not None:
                    row.update(jail=route.jail.name, host=failed.host)
                    break
            out.append(row)
        return {"source": name, "lines": out}


class _Wake:
    """watchdog's event handler: any change in a watched directory marks the files changed and
    wakes the reader thread (it then looks at every followed file: a stat each, cheaper than
    matching paths)."""

    def __init__(self, wake: threading.Event, changed: threading.Event) -> None:
        self.wake = wake
        self.changed = changed

    def dispatch(self, event: Any) -> None:
        if not event.is_directory or event.event_type == "moved":
            self.changed.set()
            self.wake.set()


def _failure(verdicts: Iterable[Verdict]) -> Verdict | None:
    """The first failure among a jail's filters' verdicts on one line (the rest are not asked:
    one failure per line per jail, whichever filter saw it)."""
    return next((v for v in verdicts if v.kind == "matched"), None)


def _route(jail: Jail) -> Route:
    return Route(jail, [Examiner(f) for f in jail.filters])


def _saved_positions(conn: sqlite3.Connection) -> dict[str, Position]:
    rows = conn.execute("SELECT path, inode, head_hash, offset FROM log_offsets").fetchall()
    return {path: Position(inode, head, offset) for path, inode, head, offset in rows}


def _saved_cursor(conn: sqlite3.Connection, key: str) -> str:
    row = conn.execute("SELECT cursor FROM journal_cursors WHERE matches = ?", (key,)).fetchone()
    return row[0] if row else ""
