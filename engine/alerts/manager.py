"""Alerts: folding identical events into one row, silences, and the operator workflow.

Runs on the engine's loop. Ids are given out here, so a raised alert has its id at once while
its row is written by the batching writer. Alerts still inside the fold window are kept in a
bounded index, so an alert storm becomes count updates of one row rather than new rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from engine.durations import format_duration
from engine.errors import Invalid
from engine.events import EventBus
from engine.model import Alert, AlertEvent, AlertState, Severity, Silence
from engine.store.writer import Writer, WriterClosed

log = logging.getLogger(__name__)

MAX_EVIDENCE_BYTES = 16_384
MAX_TEXT = 512
PUBLISH_INTERVAL = 0.1
# A silence ends within a year: what must stay quiet longer is a rule to disable.
MAX_SILENCE = 366 * 86400

_INSERT = (
    "INSERT INTO alerts (id, severity, source, rule, title, src, dst, device, first_seen,"
    " last_seen, count, state, evidence, silence_id, attacker, target)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_FOLD = (
    "UPDATE alerts SET count = count + 1, last_seen = max(last_seen, ?),"
    " severity = max(severity, ?) WHERE id = ?"
)
_COLUMNS = (
    "id, severity, source, rule, title, src, dst, device, first_seen, last_seen, count,"
    " state, evidence, ack_by, ack_note, ack_at, silence_id, attacker, target"
)


# One encoder made once: json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":")).encode


class AlertError(Invalid):
    """An operator's request about alerts that cannot be done (unknown id, bad state)."""


def _row_alert(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> Alert:
    return Alert.from_row(dict(zip([c[0] for c in cur.description], row, strict=True)))


def fetch_alert(conn: sqlite3.Connection, alert_id: int) -> Alert | None:
    cur = conn.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))
    row = cur.fetchone()
    return _row_alert(cur, row) if row else None


def fetch_history(conn: sqlite3.Connection, alert_id: int) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT ts, operator, action, note FROM alert_history WHERE alert_id = ? ORDER BY id",
        (alert_id,),
    )
    return [dict(zip(("ts", "operator", "action", "note"), r, strict=True)) for r in cur]


def silence_counts(conn: sqlite3.Connection) -> dict[int, int]:
    """How many alerts each silence hides now, by silence id."""
    rows = conn.execute(
        "SELECT silence_id, count(*) FROM alerts WHERE state = 'silenced'"
        " AND silence_id IS NOT NULL GROUP BY silence_id"
    )
    return dict(rows.fetchall())


def query_alerts(
    conn: sqlite3.Connection,
    *,
    states: list[str] | None = None,
    min_severity: int = 0,
    limit: int = 1000,
    source: str = "",
    hosts: list[str] | None = None,
    device: str = "",
) -> list[Alert]:
    """Alerts newest first, optionally only in ``states``, at least ``min_severity``, from
    one ``source`` (rules, logwatch, ...) and about one of ``hosts`` (as source or
    destination) or a ``device``."""
    where, params = ["severity >= ?"], [min_severity]
    if states:
        where.append(f"state IN ({','.join('?' * len(states))})")
        params.extend(states)
    if source:
        where.append("source = ?")
        params.append(source)
    if hosts is not None or device:
        marks = ",".join("?" * len(hosts or [])) or "NULL"
        where.append(f"(src IN ({marks}) OR dst IN ({marks}) OR device = ?)")
        params.extend([*(hosts or []), *(hosts or []), device])
    cur = conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE {' AND '.join(where)}"
        " ORDER BY last_seen DESC, id DESC LIMIT ?",
        (*params, limit),
    )
    return [_row_alert(cur, r) for r in cur.fetchall()]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


class AlertManager:
    def __init__(
        self,
        writer: Writer,
        bus: EventBus,
        *,
        fold_window: float = 300.0,
        notify_severity: Severity = Severity.HIGH,
        max_index: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.writer = writer
        self.bus = bus
        self.fold_window = fold_window
        self.notify_severity = notify_severity
        self.max_index = max_index
        self.clock = clock
        self._next_id = 1
        # fold key -> alert still inside its fold window, oldest first
        self._index: OrderedDict[tuple[str, str, str], Alert] = OrderedDict()
        self._by_id: dict[int, Alert] = {}
        self._silences: dict[int, Silence] = {}
        self._pending: dict[int, tuple[Alert, bool]] = {}
        self._flusher: asyncio.TimerHandle | None = None
        self.raised = 0
        self.folded = 0
        self.dropped = 0

    # -- start-up ---------------------------------------------------------------------------

    def load(self, conn: sqlite3.Connection) -> None:
        """Take up where the last run stopped: next id, foldable alerts, active silences."""
        now = self.clock()
        self._next_id = (conn.execute("SELECT max(id) FROM alerts").fetchone()[0] or 0) + 1
        cur = conn.execute(
            f"SELECT {_COLUMNS} FROM alerts WHERE state != 'resolved' AND last_seen >= ?"
            " ORDER BY last_seen",
            (now - self.fold_window,),
        )
        for row in cur.fetchall():
            self._remember(_row_alert(cur, row))
        # Silences that ran out while the engine was down are loaded too, so that the first
        # housekeeping round ends them and reopens what they hid.
        cur = conn.execute(
            "SELECT id, rule, src, dst, device, created, expires, created_by, comment"
            " FROM silences WHERE ended IS NULL"
        )
        for r in cur.fetchall():
            self._silences[r[0]] = Silence(*r)

    @property
    def silences(self) -> list[Silence]:
        return sorted(self._silences.values(), key=lambda s: s.id)

    @property
    def index_size(self) -> int:
        return len(self._index)

    # -- raising ----------------------------------------------------------------------------

    def raise_alert(
        self, event: AlertEvent, *, wait: bool = False
    ) -> tuple[Alert, asyncio.Future[Any] | None]:
        """Record ``event``: a new alert, or one more count on an identical recent one.

        Returns the alert and, with ``wait``, a future resolved once it is committed. Raises
        :class:`queue.Full` only when the writer is full and ``wait`` is set; without ``wait``
        a full writer drops the event and counts it.
        """
        ts = event.ts or self.clock()
        key = event.fold_key
        alert = self._index.get(key)
        if alert is not None and ts - alert.last_seen <= self.fold_window:
            params: tuple[Any, ...] = (ts, int(event.severity), alert.id)
            sql = _FOLD
            created = False
            # A worse occurrence raises the alert's severity and notifies again.
            notify = event.severity > alert.severity
        else:
            evidence_dict = event.evidence
            evidence = _encode(evidence_dict)
            if len(evidence) > MAX_EVIDENCE_BYTES:
                evidence_dict = {"truncated": evidence[:MAX_EVIDENCE_BYTES]}
                evidence = _encode(evidence_dict)
            silence = self._silence_for(event.rule, event.src, event.dst, event.device)
            attacker, target = event.sides()
            alert = Alert(
                id=self._next_id,
                severity=event.severity,
                source=event.source,
                rule=event.rule,
                title=_clip(event.title),
                src=event.src,
                dst=event.dst,
                device=event.device,
                first_seen=ts,
                last_seen=ts,
                count=0,
                state=AlertState.SILENCED if silence else AlertState.OPEN,
                evidence=evidence_dict,
                silence_id=silence.id if silence else None,
                attacker=attacker,
                target=target,
            )
            sql = _INSERT
            params = (
                alert.id, int(alert.severity), alert.source, alert.rule, alert.title, alert.src,
                alert.dst, alert.device, ts, ts, 1, alert.state.value, evidence, alert.silence_id,
                attacker, target,
            )  # fmt: skip
            created = notify = True
        try:
            if wait:
                future: asyncio.Future[Any] | None = self.writer.execute_async(sql, params)
            else:
                future = self.writer.execute(sql, params)
        except (queue.Full, WriterClosed):
            if wait:
                raise
            self.dropped += 1
            return alert, None
        self.raised += 1
        if created:
            self._next_id += 1
            self._remember(alert)
        else:
            self.folded += 1
            self._index.move_to_end(key)
            alert.severity = max(alert.severity, event.severity)
        alert.count += 1
        alert.last_seen = max(alert.last_seen, ts)
        self._queue_publish(alert, notify=notify)
        return alert, future

    def _remember(self, alert: Alert) -> None:
        key = (alert.rule, alert.src, alert.dst)
        old = self._index.pop(key, None)
        if old is not None:
            self._by_id.pop(old.id, None)
        self._index[key] = alert
        self._by_id[alert.id] = alert
        while len(self._index) > self.max_index:
            _, evicted = self._index.popitem(last=False)
            self._by_id.pop(evicted.id, None)

    def _forget(self, alert_id: int) -> None:
        alert = self._by_id.pop(alert_id, None)
        if alert is not None:
            self._index.pop((alert.rule, alert.src, alert.dst), None)

    def expire_index(self) -> None:
        """Drop alerts whose fold window has passed (the next identical event is a new alert)."""
        horizon = self.clock() - self.fold_window
        while self._index:
            key, alert = next(iter(self._index.items()))
            if alert.last_seen >= horizon:
                break
            del self._index[key]
            self._by_id.pop(alert.id, None)

    # -- publishing -------------------------------------------------------------------------

    def _queue_publish(self, alert: Alert, *, notify: bool = False) -> None:
        notify = (
            notify and alert.state is AlertState.OPEN and alert.severity >= self.notify_severity
        )
        earlier = self._pending.get(alert.id)
        self._pending[alert.id] = (alert, notify or bool(earlier and earlier[1]))
        if self._flusher is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._flusher = loop.call_later(PUBLISH_INTERVAL, self.flush_events)

    def flush_events(self) -> None:
        """Publish every alert that changed since the last flush, once each."""
        self._flusher = None
        if not self._pending:
            return
        if not self.bus.wants("alerts"):
            self._pending.clear()
            return
        batch = [{**a.to_json(), "notify": n} for a, n in self._pending.values()]
        self._pending.clear()
        self.bus.publish("alerts", batch)

    # -- the operator's workflow ------------------------------------------------------------

    async def transition(self, alert_id: int, action: str, operator: str, note: str = "") -> Alert:
        """Acknowledge, resolve or reopen one alert and record who did it and why."""
        states = {
            "ack": AlertState.ACKNOWLEDGED,
            "resolve": AlertState.RESOLVED,
            "reopen": AlertState.OPEN,
        }
        target = states[action]
        now = self.clock()
        note = _clip(note)

        def apply(conn: sqlite3.Connection) -> Alert:
            alert = fetch_alert(conn, alert_id)
            if alert is None:
                raise AlertError(f"no alert with id {alert_id}")
            if alert.state is target:
                raise AlertError(f"alert {alert_id} is already {target.value}")
            if action == "ack":
                if alert.state is AlertState.RESOLVED:
                    raise AlertError(f"alert {alert_id} is resolved; reopen it first")
                conn.execute(
                    "UPDATE alerts SET state = ?, ack_by = ?, ack_note = ?, ack_at = ?"
                    " WHERE id = ?",
                    (target.value, operator, note, now, alert_id),
                )
            else:
                conn.execute("UPDATE alerts SET state = ? WHERE id = ?", (target.value, alert_id))
            conn.execute(
                "INSERT INTO alert_history (alert_id, ts, operator, action, note)"
                " VALUES (?, ?, ?, ?, ?)",
                (alert_id, now, operator, action, note),
            )
            return fetch_alert(conn, alert_id)  # type: ignore[return-value]

        if action == "resolve":
            # From now on an identical event opens a new alert, even before this commits.
            self._forget(alert_id)
        alert = await self.writer.run(apply)
        live = self._by_id.get(alert_id)
        if live is not None:
            live.state, live.ack_by, live.ack_note, live.ack_at = (
                alert.state, alert.ack_by, alert.ack_note, alert.ack_at,
            )  # fmt: skip
            alert = replace(live)
        self._queue_publish(alert)
        return alert

    def _silence_for(self, rule: str, src: str, dst: str, device: str) -> Silence | None:
        now = self.clock()
        for silence in self._silences.values():
            if silence.expires > now and silence.matches(rule, src, dst, device):
                return silence
        return None

    async def add_silence(
        self,
        *,
        rule: str,
        src: str,
        dst: str,
        device: str,
        duration: float,
        operator: str,
        comment: str = "",
    ) -> tuple[Silence, int]:
        """Silence matching alerts, current open ones included; returns it and how many it hid."""
        if not (rule or src or dst or device):
            raise AlertError("a silence needs at least one of rule, src, dst or device")
        if duration <= 0:
            raise AlertError("a silence needs a positive duration")
        if duration > MAX_SILENCE:
            raise AlertError(
                f"a silence lasts at most {format_duration(MAX_SILENCE)}; disable the rule instead"
            )
        now = self.clock()
        expires = now + duration
        comment = _clip(comment)

        def apply(conn: sqlite3.Connection) -> tuple[int, list[int]]:
            cur = conn.execute(
                "INSERT INTO silences (rule, src, dst, device, created, expires, created_by,"
                " comment) VALUES (?,?,?,?,?,?,?,?)",
                (rule, src, dst, device, now, expires, operator, comment),
            )
            sid = cur.lastrowid
            where, params = ["state = 'open'"], []
            for column, value in (("rule", rule), ("src", src), ("dst", dst), ("device", device)):
                if value:
                    where.append(f"{column} = ?")
                    params.append(value)
            ids = [
                r[0]
                for r in conn.execute(
                    f"UPDATE alerts SET state = 'silenced', silence_id = ? WHERE"
                    f" {' AND '.join(where)} RETURNING id",
                    (sid, *params),
                )
            ]
            return sid, ids  # type: ignore[return-value]

        sid, ids = await self.writer.run(apply)
        silence = Silence(sid, rule, src, dst, device, now, expires, operator, comment)
        self._silences[sid] = silence
        await self._republish(ids, AlertState.SILENCED, sid)
        self.bus.publish("silences", [s.to_json() for s in self.silences])
        return silence, len(ids)

    async def end_silence(self, silence_id: int, operator: str, *, expired: bool = False) -> int:
        """End a silence now; the alerts it hid that are still silenced open again."""
        now = self.clock()

        def apply(conn: sqlite3.Connection) -> list[int]:
            row = conn.execute("SELECT ended FROM silences WHERE id = ?", (silence_id,)).fetchone()
            if row is None:
                raise AlertError(f"no silence with id {silence_id}")
            if row[0] is not None:
                raise AlertError(f"silence {silence_id} has already ended")
            conn.execute("UPDATE silences SET ended = ? WHERE id = ?", (now, silence_id))
            return [
                r[0]
                for r in conn.execute(
                    "UPDATE alerts SET state = 'open', silence_id = NULL"
                    " WHERE silence_id = ? AND state = 'silenced' RETURNING id",
                    (silence_id,),
                )
            ]

        ids = await self.writer.run(apply)
        self._silences.pop(silence_id, None)
        await self._republish(ids, AlertState.OPEN, None)
        self.bus.publish("silences", [s.to_json() for s in self.silences])
        log.info(
            "silence %d %s by %s; %d alerts open again",
            silence_id, "expired" if expired else "ended", operator, len(ids),
        )  # fmt: skip
        return len(ids)

    async def extend_silence(self, silence_id: int, duration: float, operator: str) -> Silence:
        """Let a silence in force run ``duration`` longer than it would have (from now, when it
        was about to end this instant); its matches and the alerts it hides stay as they are."""
        if duration <= 0:
            raise AlertError("a silence is extended by a positive duration")
        silence = self._silences.get(silence_id)
        if silence is None:
            raise AlertError(f"no silence in force with id {silence_id}")
        expires = max(silence.expires, self.clock()) + duration
        if expires - self.clock() > MAX_SILENCE:
            raise AlertError(
                f"a silence ends within {format_duration(MAX_SILENCE)} from now; disable the"
                " rule instead"
            )

        def apply(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT ended FROM silences WHERE id = ?", (silence_id,)).fetchone()
            if row is None or row[0] is not None:
                raise AlertError(f"silence {silence_id} has already ended")
            conn.execute("UPDATE silences SET expires = ? WHERE id = ?", (expires, silence_id))

        await self.writer.run(apply)
        silence = replace(silence, expires=expires)
        self._silences[silence_id] = silence
        self.bus.publish("silences", [s.to_json() for s in self.silences])
        log.info("silence %d extended by %s by %s", silence_id, format_duration(duration), operator)
        return silence

    async def expire_silences(self) -> None:
        now = self.clock()
        for silence in [s for s in self._silences.values() if s.expires <= now]:
            try:
                await self.end_silence(silence.id, "engine", expired=True)
            except AlertError:
                self._silences.pop(silence.id, None)

    async def _republish(self, ids: list[int], state: AlertState, silence_id: int | None) -> None:
        """Bring in-memory copies in line with a bulk state change and tell subscribers."""
        missing = []
        for alert_id in ids:
            live = self._by_id.get(alert_id)
            if live is None:
                missing.append(alert_id)
                continue
            live.state, live.silence_id = state, silence_id
            self._queue_publish(live)
        if missing:

            def read(conn: sqlite3.Connection) -> list[Alert]:
                return [a for i in missing if (a := fetch_alert(conn, i)) is not None]

            for alert in await self.writer.run(read):
                self._queue_publish(alert)
