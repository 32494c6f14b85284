"""The alert commands of the control API: alerts.* (list, show, the operator workflow, inject)
and silences.*."""

from __future__ import annotations

import asyncio
import queue
from typing import TYPE_CHECKING, Any

from engine.alerts.manager import (
    AlertManager,
    fetch_alert,
    fetch_history,
    query_alerts,
    silence_counts,
)
from engine.control import arguments as arg
from engine.control.arguments import NOTE_ARGS, ONE_ID
from engine.control.registry import Args, Caller, Registry
from engine.control.schema import Duration, Int, Object, Text, Texts
from engine.durations import parse_duration
from engine.errors import BadArgument, NotFound
from engine.model import Alert, AlertEvent, AlertState, Role, Severity

if TYPE_CHECKING:
    from engine.store.db import Reader

ADDRESSES = {"src": Text(64), "dst": Text(64), "device": Text()}


def register(registry: Registry, alerts: AlertManager, read: Reader) -> None:
    @registry.command("alerts.list", args={"state": Texts(count=8, limit=32, one=True),
                                           "severity": Text(32), "source": Text(),
                                           "limit": Int()})  # fmt: skip
    async def listing(caller: Caller, args: Args) -> list[dict[str, Any]]:
        """Alerts newest first; ``state`` (one or a list), ``severity`` (minimum), ``source``
        (rules, logwatch, ...), ``limit``."""
        states = args.get("state") or []
        if isinstance(states, str):
            states = [states]
        if not isinstance(states, list) or not all(isinstance(s, str) for s in states):
            raise BadArgument("state must be a state name or a list of them")
        states = [AlertState.parse(s).value for s in states]
        severity = Severity.parse(arg.text(args, "severity", "info"))
        source = arg.text(args, "source")
        limit = max(1, arg.limit(args, 1000, 100_000))
        found = await read(lambda conn: query_alerts(conn, states=states, limit=limit,
                                                     min_severity=int(severity),
                                                     source=source))  # fmt: skip
        return [a.to_json() for a in found]

    @registry.command("alerts.get", args={"id": Int()})
    async def get(caller: Caller, args: Args) -> dict[str, Any]:
        """One alert with its evidence and history."""
        alert_id = arg.number(args, "id")
        alert, history = await read(
            lambda conn: (fetch_alert(conn, alert_id), fetch_history(conn, alert_id))
        )
        if alert is None:
            raise NotFound(f"no alert with id {alert_id}")
        return {**alert.to_json(), "history": history}

    async def transition(caller: Caller, args: Args, action: str) -> dict[str, Any]:
        alert = await alerts.transition(
            arg.number(args, "id"), action, caller.operator.name, arg.text(args, "note")
        )
        return alert.to_json()

    @registry.command("alerts.ack", Role.OPERATOR, changes_state=True, args=NOTE_ARGS)
    async def ack(caller: Caller, args: Args) -> dict[str, Any]:
        """Acknowledge an alert with a note: you are on it."""
        return await transition(caller, args, "ack")

    @registry.command("alerts.resolve", Role.OPERATOR, changes_state=True, args=NOTE_ARGS)
    async def resolve(caller: Caller, args: Args) -> dict[str, Any]:
        """Resolve an alert; the next identical event opens a new one."""
        return await transition(caller, args, "resolve")

    @registry.command("alerts.reopen", Role.OPERATOR, changes_state=True, args=NOTE_ARGS)
    async def reopen(caller: Caller, args: Args) -> dict[str, Any]:
        """Open an acknowledged or resolved alert again."""
        return await transition(caller, args, "reopen")

    @registry.command("alerts.silence", Role.OPERATOR, changes_state=True,
                      args={"duration": Duration(), "rule": Text(), **ADDRESSES,
                            "comment": Text(1024)})  # fmt: skip
    async def silence(caller: Caller, args: Args) -> dict[str, Any]:
        """Silence alerts matching rule/src/dst/device for a duration."""
        duration = args.get("duration")
        made, hidden = await alerts.add_silence(
            rule=arg.text(args, "rule"),
            src=arg.address(args, "src"),
            dst=arg.address(args, "dst"),
            device=arg.text(args, "device"),
            duration=parse_duration("1h" if duration is None else duration),
            operator=caller.operator.name,
            comment=arg.text(args, "comment"),
        )
        return {**made.to_json(), "silenced": hidden}

    @registry.command("alerts.unsilence", Role.OPERATOR, changes_state=True, args=ONE_ID)
    async def unsilence(caller: Caller, args: Args) -> dict[str, Any]:
        """End a silence now; the alerts it hid open again."""
        silence_id = arg.number(args, "id")
        reopened = await alerts.end_silence(silence_id, caller.operator.name)
        return {"id": silence_id, "reopened": reopened}

    @registry.command("silences.extend", Role.OPERATOR, changes_state=True,
                      args={"id": Int(), "duration": Duration()})  # fmt: skip
    async def extend(caller: Caller, args: Args) -> dict[str, Any]:
        """Let a silence in force run ``duration`` longer (default 1h)."""
        duration = args.get("duration")
        extended = await alerts.extend_silence(
            arg.number(args, "id"),
            parse_duration("1h" if duration is None else duration),
            caller.operator.name,
        )
        return extended.to_json()

    @registry.command("silences.list")
    async def silences(caller: Caller, args: Args) -> list[dict[str, Any]]:
        """Silences in force, soonest made first, each with how many alerts it hides now."""
        hidden = await read(silence_counts)
        return [{**s.to_json(), "hidden": hidden.get(s.id, 0)} for s in alerts.silences]

    @registry.command("alerts.inject", Role.ADMIN, changes_state=True,
                      args={"title": Text(1024), "evidence": Object(), "severity": Text(32),
                            "rule": Text(), **ADDRESSES})  # fmt: skip
    async def inject(caller: Caller, args: Args) -> dict[str, Any]:
        """Raise an alert through the engine like a detecting part would."""
        title = arg.text(args, "title").strip()
        if not title:
            raise BadArgument("an injected alert needs a title")
        evidence = args.get("evidence") or {}
        if not isinstance(evidence, dict):
            raise BadArgument("evidence must be a JSON object")
        event = AlertEvent(
            severity=Severity.parse(arg.text(args, "severity", "medium")),
            source="inject",
            rule=arg.text(args, "rule", "inject").strip() or "inject",
            title=title,
            src=arg.address(args, "src"),
            dst=arg.address(args, "dst"),
            device=arg.text(args, "device"),
            evidence={**evidence, "injected_by": caller.operator.name},
        )
        alert = await raise_committed(alerts, event)
        return {"id": alert.id, "count": alert.count, "state": alert.state.value}


async def raise_committed(alerts: AlertManager, event: AlertEvent) -> Alert:
    """Record an alert and return once its row is committed (waits while the writer is full)."""
    while True:
        try:
            alert, future = alerts.raise_alert(event, wait=True)
            break
        except queue.Full:
            await asyncio.sleep(0.01)
    await future
    return alert
