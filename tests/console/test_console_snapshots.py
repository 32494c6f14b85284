"""What the console shows, as snapshots: alerts seeded into the engine's database with fixed
timestamps and shown in UTC, so every run draws the same screen.

Update after an intended change with ``pytest tests/console --snapshot-update`` and look at
the new SVGs before committing them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from console_helpers import (
    console_for,
    in_utc,
    pane_title,
    rule_titles,
    seed_alerts,
    shown_ids,
    wait_until,
)

from console.widgets.status_bar import StatusBar
from engine.model import Severity
from tests.conftest import EngineProcess, start_engine

T0 = 1713669000.0  # 2024-04-21 03:10:00 UTC


def _seed() -> list[dict]:
    titles = rule_titles(10)
    rows = [
        ("critical", titles[4], "203.0.113.7", "192.168.1.20", 41, "open"),
        ("high", titles[8], "198.51.100.23", "192.168.1.20", 3, "open"),
        ("high", titles[5], "203.0.113.9", "192.168.1.31", 12, "acknowledged"),
        ("medium", titles[3], "192.168.1.1", "10.20.30.40", 1, "open"),
        ("medium", titles[9], "198.51.100.4", "192.168.1.20", 7, "silenced"),
        ("low", titles[1], "2001:db8::17", "192.168.1.5", 2, "resolved"),
        ("info", titles[0], "192.168.1.77", "", 1, "open"),
    ]
    return [
        {
            "id": i,
            "severity": int(Severity.parse(sev)),
            "rule": f"20{i:05d}",
            "title": title,
            "src": src,
            "dst": dst,
            "count": count,
            "state": state,
            "ts": T0 - 97 * i,
            "evidence": json.dumps({"sid": 2000000 + i, "proto": "TCP", "dport": 23}),
        }
        for i, (sev, title, src, dst, count, state) in enumerate(rows, 1)
    ]


@pytest.fixture
def seeded_engine(tmp_path) -> Iterator[EngineProcess]:
    with in_utc():
        seed_alerts(tmp_path / "state" / "iotsec.db", _seed())
        engine = start_engine(tmp_path)
        try:
            yield engine
        finally:
            engine.stop()


def _loaded(app) -> bool:
    return len(shown_ids(app)) == len(_seed()) and "open:" in str(app.query_one(StatusBar).render())


def test_alerts_at_80x24(seeded_engine, snap_compare):
    app = console_for(seeded_engine.config)

    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: _loaded(app), "the seeded alerts")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_alerts_at_160x48(seeded_engine, snap_compare):
    app = console_for(seeded_engine.config)

    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: _loaded(app), "the seeded alerts")

    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


def test_alerts_filtered_and_paused_at_80x24(seeded_engine, snap_compare):
    app = console_for(seeded_engine.config)

    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: _loaded(app), "the seeded alerts")
        await pilot.press("slash", *"busybox", "enter", "p")
        await wait_until(pilot, lambda: "PAUSED" in pane_title(app), "paused")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_alert_detail_at_80x24(seeded_engine, snap_compare):
    app = console_for(seeded_engine.config)

    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: _loaded(app), "the seeded alerts")
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: "sid" in str(app.screen.query_one("#evidence").render()), "the evidence"
        )

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
