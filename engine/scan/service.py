"""Scans in the engine: started by an operator (console, ``iotsec scan``) or by a schedule
(``[[scan.schedule]]``), watched while they run (progress on the ``scans`` topic), cancelled;
each finished scan is stored with its results and its difference from the previous scan of the
same targets, and fed to the device inventory. Their own traffic, which the capture sees,
raises no alert (see :mod:`engine.scan.own`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from engine.config import ScanConfig, ScheduleConfig
from engine.devices.inventory import Coverage, Inventory
from engine.errors import Busy, EngineError, NotFound, Refused
from engine.scan.diff import diff_scans
from engine.scan.own import OwnScans, ScanTraffic, source_addresses
from engine.scan.ports import PortsError, parse_ports
from engine.scan.scanner import HostResult, Options, profile_ports, scan
from engine.scan.scope import Network, ScopeError, expand

if TYPE_CHECKING:
    from engine.events import EventBus
    from engine.store.db import Reader
    from engine.store.writer import Writer

T = TypeVar("T")

log = logging.getLogger("iotsec.scan")

PROGRESS_EVERY = 0.25  # seconds between two progress events of one scan
RECENT = 20  # finished scans kept in memory for scan.status


@dataclass
class ScanRun:
    id: int
    kind: str  # "manual", or "schedule:NAME"
    targets: list[str]
    options: dict[str, Any]
    requested_by: str
    started: float
    state: str = "running"  # running, done, cancelled, failed
    phase: str = "starting"
    done: int = 0
    total: int = 0
    finished: float | None = None
    error: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    _published: float = field(default=0.0, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "targets": self.targets,
            "options": self.options,
            "requested_by": self.requested_by,
            "started": self.started,
            "state": self.state,
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "finished": self.finished,
            "error": self.error,
            "summary": self.summary,
        }


class ScanService:
    def __init__(self, config: ScanConfig, scope: list[Network], writer: Writer, bus: EventBus,
                 read: Reader, inventory: Inventory) -> None:  # fmt: skip
        self.config = config
        self.scope = scope  # [scan] scope, parsed
        self.writer = writer
        self.bus = bus
        self.read = read
        self.inventory = inventory
        self.running: dict[int, ScanRun] = {}
        self.recent: deque[ScanRun] = deque(maxlen=RECENT)
        self._last_run: dict[str, float] = {}
        self.own = OwnScans()
        self.state = "stopped"

    async def start(self) -> None:
        """Remember when each schedule last ran, and mark scans a stopped engine left running."""

        def load(conn: sqlite3.Connection) -> dict[str, float]:
            rows = conn.execute(
                "SELECT kind, max(started) FROM scans WHERE kind LIKE 'schedule:%' GROUP BY kind"
            ).fetchall()
            return {kind.removeprefix("schedule:"): started for kind, started in rows}

        self._last_run = await self.read(load)
        await self.writer.run(
            lambda conn: conn.execute(
                "UPDATE scans SET status = 'failed', error = 'the engine stopped during the scan'"
                " WHERE status = 'running'"
            )
        )
        self.state = "running" if self.scope else "no scope"

    async def stop(self) -> None:
        runs = list(self.running.values())
        for run in runs:
            if run.task is not None:
                run.task.cancel()
        await asyncio.gather(*(r.task for r in runs if r.task), return_exceptions=True)

    # -- starting, cancelling, looking --------------------------------------------------------

    async def begin(
        self,
        targets: list[str],
        *,
        profile: str = "quick",
        ports: str = "",
        udp: bool = True,
        check_default_creds: bool = False,
        by: str = "",
        kind: str = "manual",
    ) -> dict[str, Any]:
        """Start a scan; refused when a target is outside the scope, the ports
        do not parse or ``max_running`` scans are running."""
        try:
            addresses = expand(targets or self.config.scope, self.scope)
            chosen = parse_ports(ports) if ports else profile_ports(profile)
        except (ScopeError, PortsError) as exc:
            raise Refused(str(exc)) from None
        if len(self.running) >= self.config.max_running:
            ids = ", ".join(str(i) for i in self.running)
            raise Busy(
                f"{len(self.running)} scans are running (ids {ids}); wait for"
                " one or cancel it ([scan] max_running)"
            )
        options = Options(ports=chosen, check_default_creds=check_default_creds, udp=udp)
        described = {
            "profile": profile,
            "ports": ports or profile,
            "port_count": len(chosen),
            "udp": udp,
            "check_default_creds": check_default_creds,
        }
        targets = list(targets or self.config.scope)
        ours = await asyncio.to_thread(source_addresses, addresses)
        started = time.time()

        def insert(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO scans (started, kind, targets, status, options, requested_by)"
                " VALUES (?, ?, ?, 'running', ?, ?)",
                (started, kind, json.dumps(targets), json.dumps(described), by),
            )
            return int(cur.lastrowid or 0)

        scan_id = await self.writer.run(insert)
        run = ScanRun(scan_id, kind, targets, described, by, started, total=len(chosen))
        self.running[scan_id] = run
        self.own.begin(scan_id, ours, addresses, started)
        run.task = asyncio.create_task(self._run(run, addresses, options))
        self._publish(run, force=True)
        return run.to_json()

    async def cancel(self, scan_id: int) -> dict[str, Any]:
        run = self.running.get(scan_id)
        if run is None:
            raise NotFound(f"no scan {scan_id} is running")
        if run.task is not None:
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
        return run.to_json()

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "scope": list(self.config.scope),
            "running": [r.to_json() for r in self.running.values()],
            "recent": [r.to_json() for r in reversed(self.recent)],
            "schedules": [self._schedule_status(s) for s in self.config.schedule],
        }

    def summary(self) -> dict[str, Any]:
        """The counts the engine's status carries."""
        return {
            "state": self.state,
            "running": len(self.running),
            "schedules": sum(1 for s in self.config.schedule if s.enabled),
        }

    async def get(self, scan_id: int) -> dict[str, Any]:
        """A scan as stored: its results (the hosts) and its difference from the one before."""
        run = self.running.get(scan_id)
        if run is not None:
            return {**run.to_json(), "hosts": [], "diff": None}
        row = await self.read(
            lambda conn: conn.execute(
                "SELECT id, kind, targets, options, requested_by, started, status, finished, error,"
                " summary, results, diff FROM scans WHERE id = ?",
                (scan_id,),
            ).fetchone()
        )
        if row is None:
            raise NotFound(f"no scan {scan_id}")
        (
            id_,
            kind,
            targets,
            options,
            by,
            started,
            status,
            finished,
            error,
            summary,
            results,
            diff,
        ) = row
        return {
            "id": id_,
            "kind": kind,
            "targets": json.loads(targets),
            "options": json.loads(options),
            "requested_by": by,
            "started": started,
            "state": status,
            "finished": finished,
            "error": error,
            "summary": json.loads(summary),
            "hosts": json.loads(results),
            "diff": json.loads(diff) or None,
        }

    async def history(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self.read(
            lambda conn: conn.execute(
                "SELECT id, kind, targets, requested_by, started, status, finished, error, summary"
                " FROM scans ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [
            {
                "id": r[0],
                "kind": r[1],
                "targets": json.loads(r[2]),
                "requested_by": r[3],
                "started": r[4],
                "state": r[5],
                "finished": r[6],
                "error": r[7],
                "summary": json.loads(r[8]),
            }
            for r in rows
        ]

    # -- schedules ----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Start each schedule that is due (one interval after its last start; at once when it
        never ran) and not still running; count the late answers of the scans that ended."""
        now = time.time()
        for traffic in self.own.expire(now):
            await self._suppressed(traffic)
        for schedule in self.config.schedule:
            kind = f"schedule:{schedule.name}"
            if not schedule.enabled or any(r.kind == kind for r in self.running.values()):
                continue
            last = self._last_run.get(schedule.name)
            if last is not None and now - last < schedule.interval:
                continue
            try:
                await self.begin(
                    list(schedule.targets),
                    profile=schedule.profile,
                    ports=schedule.ports,
                    udp=schedule.udp,
                    check_default_creds=schedule.check_default_creds,
                    by="schedule",
                    kind=kind,
                )
            except EngineError as exc:
                log.warning("scheduled scan %s not started: %s", schedule.name, exc)
                continue
            self._last_run[schedule.name] = now

    def _schedule_status(self, schedule: ScheduleConfig) -> dict[str, Any]:
        last = self._last_run.get(schedule.name)
        return {
            "name": schedule.name,
            "targets": list(schedule.targets or self.config.scope),
            "interval": schedule.interval,
            "profile": schedule.profile,
            "enabled": schedule.enabled,
            "last_run": last,
            "next_run": (last + schedule.interval) if last is not None else None,
        }

    # -- a scan's life ------------------------------------------------------------------------

    async def _run(self, run: ScanRun, addresses: list[Any], options: Options) -> None:
        def progress(phase: str, done: int, total: int) -> None:
            run.phase, run.done, run.total = phase, done, total
            self._publish(run)

        try:
            hosts = await scan(addresses, options, self.config, progress)
            await self._finish(run, hosts, options)
        except asyncio.CancelledError:
            await self._end(run, "cancelled", "cancelled")
        except (OSError, ValueError) as exc:
            log.warning("scan %s failed: %s", run.id, exc)
            await self._end(run, "failed", str(exc))

    async def _finish(self, run: ScanRun, hosts: list[HostResult], options: Options) -> None:
        results = [h.to_json() for h in hosts if _up(h)]
        coverage = Coverage(frozenset(options.ports), options.udp, options.check_default_creds)
        changes = self.inventory.apply_scan(run.id, results, coverage,
                                            requested=run.kind == "manual")  # fmt: skip
        previous = await self.read(lambda conn: _previous(conn, run))
        diff = diff_scans(previous, results) if previous is not None else None
        severities: dict[str, int] = {}
        for host in results:
            for finding in host["findings"]:
                severities[finding["severity"]] = severities.get(finding["severity"], 0) + 1
        run.summary = {
            "hosts": len(results),
            "open_ports": sum(len(h["ports"]) for h in results),
            "findings": severities,
            **{k: len(v) for k, v in changes.items()},
            "changed_since_previous": diff["changed"] if diff else None,
            "suppressed_hits": 0,
        }
        await self._end(run, "done", "", results, diff)

    async def _end(
        self,
        run: ScanRun,
        state: str,
        error: str,
        results: list[dict[str, Any]] | None = None,
        diff: dict[str, Any] | None = None,
    ) -> None:
        run.state, run.error, run.finished = state, error, time.time()
        run.phase = state
        traffic = self.own.end(run.id, run.finished)
        if traffic is not None and run.summary:
            run.summary["suppressed_hits"] = traffic.suppressed
        params = (
            run.finished,
            state,
            error,
            json.dumps(run.summary),
            json.dumps(results or []),
            json.dumps(diff or {}),
            run.id,
        )
        with contextlib.suppress(Exception):
            await asyncio.shield(
                self.writer.run(
                    lambda conn: conn.execute(
                        "UPDATE scans SET finished = ?, status = ?, error = ?, summary = ?,"
                        " results = ?, diff = ? WHERE id = ?",
                        params,
                    )
                )
            )
        self.running.pop(run.id, None)
        self.recent.append(run)
        self._publish(run, force=True)

    async def _suppressed(self, traffic: ScanTraffic) -> None:
        """A finished scan's rule hits suppressed, counted to the end of its grace (the
        answers that came after it ended, and the capture's last batch, count too)."""
        run = next((r for r in self.recent if r.id == traffic.scan_id), None)
        if run is None or not run.summary or run.summary["suppressed_hits"] == traffic.suppressed:
            return
        run.summary["suppressed_hits"] = traffic.suppressed
        summary = json.dumps(run.summary)
        with contextlib.suppress(Exception):
            await self.writer.run(
                lambda conn: conn.execute(
                    "UPDATE scans SET summary = ? WHERE id = ?", (summary, run.id)
                )
            )
        self._publish(run, force=True)

    def _publish(self, run: ScanRun, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - run._published < PROGRESS_EVERY:
            return
        run._published = now
        if self.bus.wants("scans"):
            self.bus.publish("scans", run.to_json())


def _up(host: HostResult) -> bool:
    """A host given alone is in the results even when nothing answered; it is up only when a
    port answered (open or closed) or discovery found it."""
    return host.how != "given" or bool(host.ports) or host.closed > 0


def _previous(conn: sqlite3.Connection, run: ScanRun) -> list[dict[str, Any]] | None:
    row = conn.execute(
        "SELECT results FROM scans WHERE kind = ? AND targets = ? AND status = 'done' AND id < ?"
        " ORDER BY id DESC LIMIT 1",
        (run.kind, json.dumps(run.targets), run.id),
    ).fetchone()
    return json.loads(row[0]) if row else None
