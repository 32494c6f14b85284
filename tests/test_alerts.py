"""Alert folding, silences and the workflow, on the real writer and database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.alerts.manager import AlertError, AlertManager, fetch_alert, fetch_history
from engine.events import EventBus, Subscriber
from engine.model import AlertEvent, AlertState, Severity
from engine.store.db import connect
from engine.store.writer import Writer


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[AlertManager, EventBus, Clock, Path]]:
    path = tmp_path / "iotsec.db"
    writer = Writer(path, interval=0.01)
    bus = EventBus()
    clock = Clock()
    manager = AlertManager(writer, bus, fold_window=300, clock=clock)
    yield manager, bus, clock, path
    writer.close()


def event(**kw: object) -> AlertEvent:
    base = dict(severity=Severity.HIGH, source="rules", rule="2023019", title="Mirai telnet probe",
                src="10.9.0.2", dst="10.9.1.5")  # fmt: skip
    base.update(kw)
    return AlertEvent(**base)  # type: ignore[arg-type]


def rows(path: Path) -> list[tuple]:
    conn = connect(path, readonly=True)
    try:
        return conn.execute("SELECT id, count, state, rule, src FROM alerts ORDER BY id").fetchall()
    finally:
        conn.close()


async def test_storm_of_identical_alerts_is_one_row(setup) -> None:
    manager, _bus, _clock, path = setup
    for _ in range(9_999):
        manager.raise_alert(event())
    alert, future = manager.raise_alert(event(), wait=True)
    await future
    assert alert.count == 10_000
    assert rows(path) == [(1, 10_000, "open", "2023019", "10.9.0.2")]


async def test_different_src_or_rule_are_separate(setup) -> None:
    manager, _bus, _clock, path = setup
    manager.raise_alert(event())
    manager.raise_alert(event(src="10.9.0.3"))
    _, future = manager.raise_alert(event(rule="2023020"), wait=True)
    await future
    assert [r[0] for r in rows(path)] == [1, 2, 3]


async def test_fold_window_and_resolve_start_new_alerts(setup) -> None:
    manager, _bus, clock, path = setup
    first, _ = manager.raise_alert(event())
    clock.now += 301
    second, _ = manager.raise_alert(event())
    assert second.id != first.id
    await manager.transition(second.id, "resolve", "alice", "patched")
    third, future = manager.raise_alert(event(), wait=True)
    await future
    assert third.id not in (first.id, second.id)
    assert [r[2] for r in rows(path)] == ["open", "resolved", "open"]


async def test_ack_records_who_and_note(setup) -> None:
    manager, _bus, _clock, path = setup
    alert, _ = manager.raise_alert(event())
    acked = await manager.transition(alert.id, "ack", "alice", "on it")
    assert acked.state is AlertState.ACKNOWLEDGED
    # folding keeps counting on an acknowledged alert
    again, future = manager.raise_alert(event(), wait=True)
    await future
    assert again.id == alert.id and again.count == 2
    conn = connect(path, readonly=True)
    stored = fetch_alert(conn, alert.id)
    assert (stored.state, stored.ack_by, stored.ack_note, stored.count) == (
        AlertState.ACKNOWLEDGED, "alice", "on it", 2,
    )  # fmt: skip
    assert [h["action"] for h in fetch_history(conn, alert.id)] == ["ack"]
    with pytest.raises(AlertError, match="already acknowledged"):
        await manager.transition(alert.id, "ack", "bob")
    with pytest.raises(AlertError, match="no alert with id 999"):
        await manager.transition(999, "ack", "bob")


async def test_silence_records_but_does_not_notify(setup) -> None:
    manager, bus, clock, path = setup
    sub = bus.subscribe("t", ["alerts"])
    loud, _ = manager.raise_alert(event())
    silence, hidden = await manager.add_silence(
        rule="2023019", src="", dst="", device="", duration=7200, operator="alice"
    )
    assert hidden == 1  # the open alert is silenced too
    quiet, future = manager.raise_alert(event(src="10.9.0.77"), wait=True)
    await future
    assert quiet.state is AlertState.SILENCED and quiet.silence_id == silence.id
    manager.flush_events()
    published = {a["id"]: a for msg in drain(sub) for a in msg["data"]}
    assert published[quiet.id]["notify"] is False
    assert published[loud.id]["state"] == "silenced"
    assert {r[0]: r[2] for r in rows(path)} == {1: "silenced", 2: "silenced"}

    clock.now += 7201
    await manager.expire_silences()
    assert manager.silences == []
    assert {r[0]: r[2] for r in rows(path)} == {1: "open", 2: "open"}
    other, _ = manager.raise_alert(event(src="10.9.0.78"))
    assert other.state is AlertState.OPEN


async def test_silence_needs_a_matcher(setup) -> None:
    manager, *_ = setup
    with pytest.raises(AlertError, match="at least one"):
        await manager.add_silence(rule="", src="", dst="", device="", duration=60, operator="a")


async def test_a_silence_is_extended_from_its_end_and_ends_within_a_year(setup) -> None:
    manager, bus, _clock, path = setup
    sub = bus.subscribe("t", ["silences"])
    manager.raise_alert(event())
    silence, _ = await manager.add_silence(
        rule="2023019", src="", dst="", device="", duration=3600, operator="alice"
    )
    longer = await manager.extend_silence(silence.id, 7200, "bob")
    assert longer.expires == silence.expires + 7200
    assert manager.silences == [longer]
    assert drain(sub)[-1]["data"][0]["expires"] == longer.expires
    conn = connect(path, readonly=True)
    try:
        stored = conn.execute("SELECT expires FROM silences WHERE id = ?", (silence.id,))
        assert stored.fetchone()[0] == longer.expires
    finally:
        conn.close()
    # Extending the alerts it hides changes nothing about them.
    assert {r[0]: r[2] for r in rows(path)} == {1: "silenced"}

    with pytest.raises(AlertError, match="within 366d"):
        await manager.extend_silence(silence.id, 366 * 86400, "bob")
    with pytest.raises(AlertError, match="positive"):
        await manager.extend_silence(silence.id, 0, "bob")
    with pytest.raises(AlertError, match="at most 366d"):
        await manager.add_silence(rule="x", src="", dst="", device="", duration=367 * 86400,
                                  operator="a")  # fmt: skip
    await manager.end_silence(silence.id, "alice")
    with pytest.raises(AlertError, match=f"no silence in force with id {silence.id}"):
        await manager.extend_silence(silence.id, 60, "bob")


async def test_a_silence_that_ran_out_is_extended_from_now(setup) -> None:
    manager, _bus, clock, _path = setup
    silence, _ = await manager.add_silence(
        rule="x", src="", dst="", device="", duration=60, operator="alice"
    )
    clock.now += 120  # ran out; housekeeping has not ended it yet
    longer = await manager.extend_silence(silence.id, 600, "bob")
    assert longer.expires == clock.now + 600


async def test_restart_continues_ids_and_folding(setup) -> None:
    manager, bus, clock, path = setup
    alert, future = manager.raise_alert(event(), wait=True)
    await future
    writer2 = Writer(path)
    again = AlertManager(writer2, bus, fold_window=300, clock=clock)
    again.load(connect(path, readonly=True))
    folded, future = again.raise_alert(event(), wait=True)
    await future
    new, _ = again.raise_alert(event(rule="other"))
    assert folded.id == alert.id and folded.count == 2
    assert new.id == alert.id + 1
    writer2.close()


def drain(sub: Subscriber) -> list:
    out = []
    while not sub.queue.empty():
        out.append(sub.get_nowait())
    return out


async def test_a_worse_occurrence_raises_severity_and_notifies(setup) -> None:
    manager, bus, _clock, path = setup
    sub = bus.subscribe("t", ["alerts"])
    first, _ = manager.raise_alert(event(severity=Severity.LOW))
    manager.flush_events()
    worse, future = manager.raise_alert(event(severity=Severity.CRITICAL), wait=True)
    await future
    manager.flush_events()
    assert worse.id == first.id and worse.severity is Severity.CRITICAL
    messages = drain(sub)
    assert messages[-1]["data"][0]["notify"] is True
    assert messages[-1]["data"][0]["severity"] == "critical"
    conn = connect(path, readonly=True)
    assert conn.execute("SELECT severity, count FROM alerts").fetchone() == (4, 2)
