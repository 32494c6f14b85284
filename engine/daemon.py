"""The engine: one asyncio loop owning the writer, the alert manager, the event bus and the
control server. ``iotsec engine`` runs it in the foreground until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from engine import commands as engine_commands
from engine import shipped, thisbox
from engine.alerts import commands as alerts_commands
from engine.alerts.manager import AlertManager
from engine.audit import AuditTrail
from engine.capture import commands as capture_commands
from engine.capture.service import CaptureService
from engine.config import Config
from engine.control.registry import Registry
from engine.control.server import ControlServer
from engine.detect import commands as detect_commands
from engine.detect.classification import ClassificationError, shipped_classifications
from engine.detect.parser import shipped_rule_files
from engine.detect.service import DetectService, rule_states
from engine.devices import commands as devices_commands
from engine.devices.inventory import Inventory
from engine.errors import EngineError
from engine.events import EventBus
from engine.logwatch import commands as logwatch_commands
from engine.logwatch.filters import FilterError, shipped_filters
from engine.logwatch.service import LogWatch
from engine.model import Operator, Role, Severity
from engine.respond import commands as respond_commands
from engine.respond.manager import BanManager
from engine.scan import commands as scan_commands
from engine.scan.creds import shipped_pairs
from engine.scan.scope import parse_scope
from engine.scan.service import ScanService
from engine.serial import commands as serial_commands
from engine.serial.service import SerialService
from engine.store.db import connect, lock_database
from engine.store.retention import prune
from engine.store.writer import Writer
from engine.text import printable

log = logging.getLogger("iotsec.engine")

T = TypeVar("T")
VERSION = "0.1.0"
STATUS_INTERVAL = 2.0
INVENTORY_INTERVAL = 1.0


class Engine:
    version = VERSION

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db_path = config.store.db_path()
        self.socket_path = config.control.socket_path()
        self.started = time.time()
        self.bus = EventBus(config.control.queue_size, config.control.queue_bytes)
        self.writer: Writer | None = None
        self.trail: AuditTrail | None = None
        self.alerts: AlertManager | None = None  # type: ignore[assignment]
        self.server: ControlServer | None = None
        self.capture: CaptureService = None  # type: ignore[assignment]
        self.detect: DetectService = None  # type: ignore[assignment]
        self.respond: BanManager = None  # type: ignore[assignment]
        self.logwatch: LogWatch = None  # type: ignore[assignment]
        self.devices: Inventory = None  # type: ignore[assignment]
        self.scans: ScanService = None  # type: ignore[assignment]
        self.serial: SerialService = None  # type: ignore[assignment]
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._lock: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self.pruned: dict[str, int] = {}
        self.shipped: dict[str, Any] = {}  # what the shipped content holds, counted at start

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        store = self.config.store
        group = self.config.control.group
        self.server = ControlServer(self, self.config.control)
        await self.server.claim()
        self._lock = lock_database(self.db_path, group)
        self.writer = Writer(
            self.db_path, max_rows=store.batch_rows, interval=store.batch_interval, group=group
        )
        self.trail = AuditTrail(self.db_path, self.writer, self.bus, self.read)
        self._reader = connect(self.db_path, readonly=True)
        self.alerts = AlertManager(
            self.writer,
            self.bus,
            fold_window=self.config.alerts.fold_window,
            notify_severity=Severity.parse(self.config.alerts.notify_severity),
        )
        await self.read(self.alerts.load)
        self.shipped = await asyncio.to_thread(shipped_content)
        self.detect = DetectService(self.config, self.alerts, self.writer, self.bus)
        await self.detect.start(await self.read(rule_states))
        self.capture = CaptureService(self.config.capture, self.writer, self.bus,
                                      self.detect.detector, self.detect.raise_matches)  # fmt: skip
        self.respond = BanManager(self.config.respond, self.writer, self.bus, self.read,
                                  self.server.ssh_clients)  # fmt: skip
        await self.respond.start()
        self.detect.respond = self.respond.consider
        self.logwatch = LogWatch(self.config.logwatch, self.alerts, self.writer, self.bus,
                                 self.read)  # fmt: skip
        self.logwatch.respond = self.respond.consider
        await self.logwatch.start()
        scope = parse_scope(self.config.scan.scope)
        self.devices = Inventory(self.config.devices, scope, self.writer, self.bus, self.alerts)
        await self.read(self.devices.load)
        self.respond.devices = self.devices
        # This box is no device, and what is local depends on the interface a frame came in on.
        interfaces = await asyncio.to_thread(thisbox.interfaces)
        self.devices.know_this_box(interfaces)
        with self.capture.pipeline.lock:
            self.capture.pipeline.set_links(thisbox.networks_by_interface(interfaces))
        self.capture.on_facts = self.devices.observe
        self.scans = ScanService(self.config.scan, scope, self.writer, self.bus, self.read,
                                 self.devices)  # fmt: skip
        self.detect.suppress = self.scans.own.suppress
        self.devices.quiet = self.scans.own.quiet
        await self.scans.start()
        self.serial = SerialService(self.config.serial, scope, group, self.writer, self.bus,
                                    self.alerts, self.devices)  # fmt: skip
        await self.serial.start()  # the config's ports, before any client can ask for them
        register_commands(self.server.registry, self)
        await self.server.start()
        await self.capture.start_configured()
        self.background(self._every(0.5, self.capture.tick))
        self.background(self._every(1.0, self._housekeeping))
        self.background(self._every(INVENTORY_INTERVAL, self._inventory))
        self.background(self._every(self.config.respond.check_interval, self.respond.tick))
        self.background(self._every(STATUS_INTERVAL, self._publish_status))
        self.background(self._every(store.retention.prune_interval, self._prune))
        log.info(
            "engine %s started: database %s, control socket %s",
            VERSION, self.db_path, self.socket_path,
        )  # fmt: skip

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.logwatch is not None:
            await self.logwatch.stop()  # its last lines and positions reach the writer
        if self.scans is not None:
            await self.scans.stop()  # running scans are cancelled and marked so
        if self.serial is not None:
            await self.serial.stop()  # transcripts closed, sessions' summaries saved
        if self.capture is not None:
            await self.capture.stop()  # open flows end and reach the writer before it closes
        if self.devices is not None:
            self.devices.flush()
        if self.alerts is not None:
            self.alerts.flush_events()
        if self._reader is not None:
            # Readers close first, so the writer's connection is the last and removes the WAL.
            self._reader.close()
        if self.writer is not None:
            self.writer.close()
        if self.trail is not None:
            self.trail.save_head()
        if self._lock is not None:
            os.close(self._lock)
        log.info("engine stopped")

    def request_stop(self) -> None:
        self._stopping.set()

    def reload_on_signal(self) -> None:
        """SIGHUP: reload the rules, as ``iotsec rules reload`` does, and audit it."""

        async def reload() -> None:
            try:
                await self.detect.reload()
                result = "ok"
            except EngineError as exc:
                result = f"failed: {exc}"
            signal_sender = Operator(os.getuid(), "SIGHUP", Role.ADMIN)
            await self.audit(signal_sender, "rules.reload", {}, result)

        if self.detect is not None:
            self.background(reload())

    async def run(self) -> None:
        """Run until :meth:`request_stop` (SIGTERM/SIGINT in the daemon)."""
        await self.start()
        gc.freeze()  # what start-up loaded stays put: later collections skip it
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _every(self, seconds: float, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except Exception:
                log.exception("periodic task %s failed", fn.__name__)

    async def _housekeeping(self) -> None:
        self.alerts.expire_index()
        await self.alerts.expire_silences()
        await asyncio.to_thread(self.trail.save_head)

    async def _inventory(self) -> None:
        self.devices.tick()
        await self.scans.tick()
        await self.serial.tick()

    async def _prune(self) -> None:
        limits = self.config.store.retention
        removed = await self.writer.run(lambda conn: prune(conn, limits, time.time()))
        if removed:
            self.pruned = {k: self.pruned.get(k, 0) + v for k, v in removed.items()}
            log.info("retention pruned %s", removed)

    async def _publish_status(self) -> None:
        if self.bus.wants("status"):
            self.bus.publish("status", await self.status())

    # -- what parts and the control API use ---------------------------------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a query on the read-only connection, off the loop."""

        def locked() -> T:
            with self._reader_lock:
                return fn(self._reader)

        return await asyncio.to_thread(locked)

    async def audit(self, operator: Operator, command: str, args: dict[str, Any],
                    result: str) -> None:  # fmt: skip
        await self.trail.record(operator, command, args, result)

    async def status(self) -> dict[str, Any]:
        def counts(conn: sqlite3.Connection) -> dict[str, Any]:
            by_sev = dict(
                conn.execute(
                    "SELECT severity, count(*) FROM alerts WHERE state = 'open' GROUP BY severity"
                ).fetchall()
            )
            return {"by_severity": by_sev}

        db = await self.read(counts)
        size = sum(
            os.path.getsize(p) for p in (self.db_path, f"{self.db_path}-wal") if os.path.exists(p)
        )
        writer = self.writer
        rules = _rules_summary(self.detect.status())
        parts = {"store": "running", "control": "running", "alerts": "running",
                 "capture": self.capture.state, "detect": self.detect.state,
                 "respond": self.respond.state, "logwatch": self.logwatch.state,
                 "devices": self.devices.state, "scan": self.scans.state,
                 "serial": self.serial.state}  # fmt: skip
        return {
            "version": VERSION,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 1),
            "parts": parts,
            "queues": {
                "writer": {"depth": writer.depth, "capacity": writer.capacity},
                "subscribers": {s.name: s.queue.qsize() for s in self.bus.subscribers},
            },
            "dropped": {
                "alerts": self.alerts.dropped,
                "events": self.bus.dropped,
            },
            "alerts": {
                "raised": self.alerts.raised,
                "folded": self.alerts.folded,
                "open": {Severity(k).label: v for k, v in sorted(db["by_severity"].items())},
                "silences": len(self.alerts.silences),
            },
            "bans": self.respond.status(),
            "capture": _capture_summary(self.capture.status()),
            "rules": rules,
            "content": {
                **self.shipped,
                "packet_rules": rules["accepted"],
                "log_filters": len(
                    {f.source for jail in self.logwatch.jails.values() for f in jail.filters}
                ),
            },
            "logs": self.logwatch.summary(),
            "devices": self.devices.status(),
            "scans": self.scans.summary(),
            "serial": self.serial.summary(),
            "store": {
                "path": str(self.db_path),
                "size": size,
                "batches": writer.batches,
                "rows": writer.rows,
                "errors": writer.errors,
                "pruned": self.pruned,
            },
            "control": self.server.status(),
        }


def register_commands(registry: Registry, engine: Engine) -> None:
    """Every part's control commands (the server has added its own), part by part."""
    engine_commands.register(registry, engine.status, engine.trail)
    alerts_commands.register(registry, engine.alerts, engine.read)
    capture_commands.register(registry, engine.capture)
    detect_commands.register(registry, engine.detect)
    respond_commands.register(registry, engine.respond)
    logwatch_commands.register(registry, engine.logwatch)
    devices_commands.register(registry, engine.devices, engine.capture, engine.read)
    scan_commands.register(registry, engine.scans)
    serial_commands.register(registry, engine.serial, engine.read)


def _capture_summary(status: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "reason", "interfaces", "bpf", "packets", "bytes", "kernel_drops",
            "queue_drops", "store_drops", "malformed")  # fmt: skip
    return {**{k: status[k] for k in keys}, "flows": status["flows"]}


def _rules_summary(status: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "accepted", "running", "reloads", "reload_error", "hits", "alerts")
    return {**{k: status[k] for k in keys}, "rejected": len(status["rejected"]),
            "disabled": len(status["disabled"])}  # fmt: skip


def shipped_content() -> dict[str, Any]:
    """Where the shipped content is, its log filters and credential pairs, and what of it is
    missing (each logged: an engine without its rules must say so, not run on none)."""
    problems: list[str] = []

    def counted(what: Callable[[], int]) -> int:
        try:
            return what()
        except (shipped.MissingContent, ClassificationError, FilterError, ValueError) as exc:
            problems.append(str(exc))
            log.error("shipped content: %s", exc)
            return 0

    # The packet rules loaded are the rules' status; here only whether the pack is there (also
    # when the config names other rule files: the install is broken all the same).
    counted(lambda: len(shipped_rule_files()))
    counted(lambda: len(shipped_classifications()))
    filters = counted(lambda: len(shipped_filters()))
    pairs = counted(lambda: len({(p.user, p.password) for listed in shipped_pairs().values()
                                 for p in listed}))  # fmt: skip
    return {"folder": str(shipped.folder()), "shipped_filters": filters,
            "credential_pairs": pairs, "problems": problems}  # fmt: skip


def tune_gc() -> None:
    """Alert storms make many short-lived objects while the fold index holds many long-lived
    ones; fewer young collections keep the collector off the hot path."""
    gc.set_threshold(50_000, 20, 20)


class EscapingFormatter(logging.Formatter):
    """Log lines whose message has every control and format character escaped: a value a
    client, file, packet or device named (a port with a newline in it) cannot forge a line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def run_engine(config: Config) -> int:
    """The daemon's main: logs to stderr, stops cleanly on SIGTERM/SIGINT; returns an exit code."""
    level = getattr(logging, config.engine.log_level.upper(), logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    engine = Engine(config)
    tune_gc()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, engine.request_stop)
        loop.add_signal_handler(signal.SIGHUP, engine.reload_on_signal)
        await engine.run()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
