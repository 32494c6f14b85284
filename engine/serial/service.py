"""The engine's serial part: the open sessions, what the control API asks of them, and where
what they produce goes (the ``serial`` topic, transcripts, the store, the inventory, alerts).

Every session is a row of ``serial_sessions`` (its id is the row's), updated while it runs and
when it closes, with the boot-log report in its summary. A finding goes on the device the
session is attached to (given when it was opened, or recognised by the MAC address the boot log
printed once the inventory knows it) and, when it is serious, raises an alert.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from engine.errors import Busy, EngineError, Invalid, NotFound, Refused, Unavailable
from engine.fileperms import PermissionProblem
from engine.model import AlertEvent, Severity
from engine.scan.creds import shipped_pairs
from engine.scan.findings import Finding
from engine.serial import ports
from engine.serial.allow import PortPolicy, PortRefused
from engine.serial.login import LoginCheck
from engine.serial.session import SerialProblem, SerialSession
from engine.serial.settings import SettingsError
from engine.serial.transcript import TranscriptWriter, transcript_path
from engine.shipped import MissingContent

if TYPE_CHECKING:
    from engine.alerts.manager import AlertManager
    from engine.config import SerialConfig
    from engine.devices.inventory import Inventory
    from engine.events import EventBus
    from engine.scan.scope import Network
    from engine.store.writer import Writer

log = logging.getLogger(__name__)

SUMMARY_INTERVAL = 5.0
READ_LIMIT = 1 << 20
ALERT_SEVERITY = Severity.HIGH


class SerialService:
    def __init__(
        self,
        config: SerialConfig,
        scope: list[Network],
        group: str,
        writer: Writer,
        bus: EventBus,
        alerts: AlertManager,
        inventory: Inventory,
    ) -> None:
        self.config = config
        self.policy = PortPolicy(config.allow, config.urls, scope, config.open)
        self.group = group
        self.writer = writer
        self.bus = bus
        self.alerts = alerts
        self.inventory = inventory
        self.sessions: dict[int, SerialSession] = {}
        self.state = "running"
        self._logins: dict[int, LoginCheck] = {}
        self._write_locks: dict[int, asyncio.Lock] = {}
        self._login_tried: set[int] = set()
        self._written: dict[int, tuple[Any, ...]] = {}
        self._last_summary = 0.0

    async def start(self) -> None:
        for port in self.config.open:
            try:
                await self.open(port, by="config", wait=True)
            except EngineError as exc:
                log.warning("serial: %s (the engine goes on without it)", exc)

    async def stop(self) -> None:
        for sid in list(self.sessions):
            await self.close(sid)

    # -- what the control API asks --------------------------------------------------------------

    async def open(
        self,
        port: str,
        *,
        settings: dict[str, Any] | None = None,
        device: str = "",
        by: str = "",
        wait: bool = False,
    ) -> dict[str, Any]:
        """Open a session on ``port``; with ``wait``, one whose device is not there yet
        waits for it (else that is refused with the reason)."""
        port = port.strip()
        if not port:
            raise Invalid("a port is needed: a path such as /dev/ttyUSB0 or a URL")
        try:
            await asyncio.to_thread(self.policy.check, port)
        except PortRefused as exc:
            log.warning("serial: %s (asked by %s)", exc, by or "?")
            raise Refused(str(exc)) from None
        except OSError:
            pass  # nothing there (yet): the session's open says so, and waits with ``wait``
        for session in self.sessions.values():
            if port in (session.port, session.stable):
                raise Busy(f"{port} is open already as session {session.id}; attach to it")
        if len(self.sessions) >= self.config.max_sessions:
            raise Busy(f"{len(self.sessions)} sessions are open ([serial] max_sessions)")
        try:
            line = self.config.line_settings().changed(settings or {})
        except SettingsError as exc:
            raise Invalid(str(exc)) from None
        started = time.time()
        name = ports.short_name(ports.stable_path(port) or port)
        path = transcript_path(self.config.transcripts(self.writer.path), name, started)
        sid = await self.writer.run(
            lambda conn: (
                conn.execute(
                    "INSERT INTO serial_sessions (device, started, transcript, summary)"
                    " VALUES (?, ?, ?, ?)",
                    (name, started, str(path), json.dumps({"port": port, "by": by})),
                ).lastrowid
            )
        )
        try:
            transcript = await asyncio.to_thread(
                TranscriptWriter, path, f"session {sid}, port {port}, {line.describe()}", self.group
            )
        except (OSError, PermissionProblem) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            await self._forget(sid, f"transcript: {why}")
            raise Unavailable(f"cannot write the transcript {path}: {why}") from None
        session = SerialSession(
            sid,
            port,
            line,
            transcript,
            asyncio.get_running_loop(),
            on_data=self._data,
            on_change=self._changed,
            on_findings=self._found,
            check=self.policy.check,
            ring_bytes=self.config.scrollback,
        )
        session.started = started
        try:
            await asyncio.to_thread(functools.partial(session.start, wait=wait))
        except (SerialProblem, PortRefused) as exc:
            await asyncio.to_thread(transcript.close)
            path.unlink(missing_ok=True)
            await self._forget(sid, str(exc))
            raise (Refused if isinstance(exc, PortRefused) else Unavailable)(str(exc)) from None
        if device:
            self._attach(session, device)
        self.sessions[sid] = session
        self._publish(session, "opened", info=session.info())
        log.info("serial session %d: %s %s (by %s)", sid, port, line.describe(), by or "?")
        return session.info()

    async def close(self, sid: int) -> dict[str, Any]:
        session = self._session(sid)
        del self.sessions[sid]
        self._logins.pop(sid, None)
        self._write_locks.pop(sid, None)
        await asyncio.to_thread(session.close)
        await self._save(session, ended=time.time())
        self._publish(session, "closed", info=session.info())
        return session.info()

    async def write(self, sid: int, data: bytes) -> int:
        session = self._session(sid)
        # Requests run concurrently; the lock (FIFO) keeps their bytes in the order they came.
        async with self._write_locks.setdefault(sid, asyncio.Lock()):
            sent = await self._run(session.write, data)
        if sent and self.bus.wants("serial"):
            self._publish(session, "tx", ts=time.time(), data=_b64(data[:sent]))
        return sent

    async def send_text(self, sid: int, text: str) -> int:
        """Text as typed: newlines go out as the session's map_out says."""
        session = self._session(sid)
        return await self.write(sid, session.settings.outgoing(text))

    async def macro(self, sid: int, name: str) -> int:
        if name not in self.config.macros:
            known = ", ".join(sorted(self.config.macros)) or "none configured: [serial.macros]"
            raise NotFound(f"no macro {name!r} (macros: {known})")
        self._session(sid).note(f"macro {name}")
        return await self.send_text(sid, self.config.macros[name])

    async def configure(self, sid: int, changes: dict[str, Any]) -> dict[str, Any]:
        session = self._session(sid)
        try:
            settings = session.settings.changed(changes)
        except SettingsError as exc:
            raise Invalid(str(exc)) from None
        await self._run(session.apply, settings)
        return session.info()

    async def line(self, sid: int, name: str, action: str, pulse: float) -> dict[str, Any]:
        session = self._session(sid)
        await self._run(session.set_line, name, action, pulse)
        return session.info()

    async def send_break(self, sid: int, duration: float) -> None:
        await self._run(self._session(sid).send_break, duration)

    async def reconnect(self, sid: int) -> dict[str, Any]:
        session = self._session(sid)
        await asyncio.to_thread(session.reconnect)
        return session.info()

    def attach(self, sid: int, device: str) -> dict[str, Any]:
        session = self._session(sid)
        if not self._attach(session, device):
            raise NotFound(f"no device {device!r} in the inventory")
        return session.info()

    async def login(self, sid: int) -> dict[str, Any]:
        """Try the shipped default credentials at the session's login prompt."""
        session = self._session(sid)
        if sid in self._logins:
            raise Busy(f"a login check is running on session {sid}")
        try:
            pairs = shipped_pairs().get("serial", [])[: self.config.creds_max_attempts]
        except MissingContent as exc:
            raise Unavailable(str(exc)) from None
        check = LoginCheck(lambda data: self.write(sid, data), session.settings.enter())
        self._logins[sid] = check
        session.note(f"default-credential check: up to {len(pairs)} pairs")
        try:
            result = await check.run(pairs)  # a refused write is an EngineError already
        finally:
            self._logins.pop(sid, None)
        outcome: dict[str, Any] = {"tried": result.tried, "reason": result.reason, "works": None}
        if result.pair is not None:
            pair = result.pair
            outcome["works"] = {"user": pair.user, "password": pair.password, "source": pair.source}
            password = f"'{pair.password}'" if pair.password else "an empty password"
            finding = Finding(
                "default-credential",
                Severity.CRITICAL,
                f"Default login works on the serial console ({pair.user})",
                f"{pair.user} with {password} gave a shell (from {pair.source})",
                "Change the password of this account, or disable the login on the console.",
                proto="serial",
            )
            session.analyzer.report.findings.append(finding)
            self._found(session, [finding])
        session.note(f"default-credential check: {result.reason} after {result.tried}")
        return outcome

    def get(self, sid: int, tail: int) -> dict[str, Any]:
        session = self._session(sid)
        start = max(session.rx - max(tail, 0), 0)
        offset, data, stamps = session.read(start, min(tail, READ_LIMIT))
        return {
            **session.info(),
            "report": session.analyzer.report.to_json(),
            "offset": offset,
            "data": _b64(data),
            "stamps": stamps,
        }

    def read(self, sid: int, offset: int, limit: int) -> dict[str, Any]:
        session = self._session(sid)
        start, data, stamps = session.read(offset, min(limit, READ_LIMIT))
        return {"offset": start, "data": _b64(data), "stamps": stamps, "rx": session.rx}

    def listing(self) -> list[dict[str, Any]]:
        return [s.info() for s in self.sessions.values()]

    def summary(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for session in self.sessions.values():
            states[session.state] = states.get(session.state, 0) + 1
        return {"state": self.state, "sessions": len(self.sessions), "by_state": states}

    async def tick(self) -> None:
        """Attach sessions to devices the inventory has come to know, and save summaries."""
        for session in self.sessions.values():
            if session.device is None and (mac := session.analyzer.report.identity["mac"]):
                self._attach(session, mac)
        now = time.time()
        if now - self._last_summary >= SUMMARY_INTERVAL:
            self._last_summary = now
            for session in list(self.sessions.values()):
                await self._save(session)

    # -- callbacks from the sessions' threads (on the loop) ----------------------------------

    def _data(self, session: SerialSession, offset: int, ts: float, data: bytes) -> None:
        if (check := self._logins.get(session.id)) is not None:
            check.received(data)
        if self.bus.wants("serial"):
            self._publish(session, "rx", offset=offset, ts=ts, data=_b64(data))

    def _changed(self, session: SerialSession) -> None:
        self._publish(session, "state", info=session.info())

    def _found(self, session: SerialSession, findings: list[Finding]) -> None:
        items = [f.to_json() for f in findings]
        self._publish(session, "findings", findings=items, report=session.analyzer.report.to_json())
        if session.device is None and (mac := session.analyzer.report.identity["mac"]):
            self._attach(session, mac)
        elif session.device is not None:
            self.inventory.add_findings(session.device, items, "serial")
        for finding in findings:
            if finding.severity >= ALERT_SEVERITY:
                self._alert(session, finding)
        if (
            self.config.check_default_creds
            and any(f.kind == "login-prompt" for f in findings)
            and session.id not in self._login_tried
            and session.id in self.sessions
        ):
            self._login_tried.add(session.id)
            asyncio.get_running_loop().create_task(self._auto_login(session.id))

    async def _auto_login(self, sid: int) -> None:
        try:
            await self.login(sid)
        except EngineError as exc:
            log.info("serial session %d: default-credential check: %s", sid, exc)

    # -- helpers --------------------------------------------------------------------------------

    def _session(self, sid: int) -> SerialSession:
        session = self.sessions.get(sid)
        if session is None:
            raise NotFound(f"no open serial session {sid}")
        return session

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except SerialProblem as exc:
            raise Unavailable(str(exc)) from None

    def _attach(self, session: SerialSession, key: str) -> bool:
        device = self.inventory.add_findings(
            key, [f.to_json() for f in session.analyzer.report.findings], "serial"
        )
        if device is None:
            return False
        session.device = str(device.id)
        session.note(f"attached to device {device.id} ({device.mac or device.ip})")
        self._publish(session, "state", info=session.info())
        return True

    def _alert(self, session: SerialSession, finding: Finding) -> None:
        device = self.inventory.find(session.device) if session.device else None
        where = f"{session.name}" + (f" ({device.ip or device.mac})" if device else "")
        self.alerts.raise_alert(
            AlertEvent(
                severity=finding.severity,
                source="serial",
                rule=f"serial {finding.kind} {session.name}",
                title=f"{finding.title} on {where}",
                src=device.ip if device else "",
                device=(device.mac or device.ip) if device else session.name,
                evidence={
                    "session": session.id,
                    "port": session.port,
                    "evidence": finding.evidence,
                    "fix": finding.fix,
                    "device": session.device,
                },
            )
        )

    def _publish(self, session: SerialSession, kind: str, **data: Any) -> None:
        if self.bus.wants("serial"):
            self.bus.publish("serial", {"session": session.id, "kind": kind, **data})

    async def _save(self, session: SerialSession, ended: float | None = None) -> None:
        report = session.analyzer.report
        row = (
            ended,
            session.rx,
            session.tx,
            json.dumps(
                {
                    "port": session.port,
                    "path": session.stable or session.port,
                    "name": session.name,
                    "settings": session.settings.to_dict(),
                    "device": session.device,
                    "reconnects": session.reconnects,
                    "state": session.state,
                    "report": report.to_json(),
                }
            ),
        )
        if ended is None and self._written.get(session.id) == row:
            return
        self._written[session.id] = row
        sid = session.id
        await self.writer.run(
            lambda conn: conn.execute(
                "UPDATE serial_sessions SET ended = ?, bytes_rx = ?, bytes_tx = ?, summary = ?"
                " WHERE id = ?",
                (*row, sid),
            )
        )

    async def _forget(self, sid: int, why: str) -> None:
        summary = json.dumps({"error": why})
        await self.writer.run(
            lambda conn: conn.execute(
                "UPDATE serial_sessions SET ended = ?, summary = ? WHERE id = ?",
                (time.time(), summary, sid),
            )
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def query_sessions(conn: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Recorded sessions, newest first (the store's summaries, open ones included)."""
    rows = conn.execute(
        "SELECT id, device, started, ended, transcript, bytes_rx, bytes_tx, summary"
        " FROM serial_sessions ORDER BY started DESC, id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    out = []
    for sid, device, started, ended, transcript, rx, tx, summary in rows:
        out.append(
            {
                "id": sid,
                "name": device,
                "started": started,
                "ended": ended,
                "transcript": transcript,
                "rx": rx,
                "tx": tx,
                "summary": json.loads(summary or "{}"),
            }
        )
    return out
