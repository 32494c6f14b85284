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


def _seed_devices(db) -> None:
    """A small inventory written straight into a new database: a camera with findings, a
    broker, a router, a gone sensor."""
    from engine.devices.inventory import UPSERT_DEVICE, UPSERT_FINDING
    from engine.devices.model import Device, DeviceFinding
    from engine.store.db import connect

    def service(port: int, name: str, product: str = "") -> dict:
        return {"port": port, "proto": "tcp", "service": name, "product": product}

    devices = [
        Device(
            1,
            T0 - 86400,
            T0 - 20,
            "c0:56:e3:12:34:56",
            "192.168.1.20",
            ["192.168.1.20"],
            "ipcam-7",
            "Hangzhou Hikvision Digital Technology Co.,Ltd.",
            "camera",
            "rtsp on 554/tcp",
            services=[service(23, "telnet"), service(80, "http"), service(554, "rtsp")],
            seen_by={"arp", "dhcp", "scan"},
            risk=90,
            last_scan=3,
        ),
        Device(
            2,
            T0 - 600,
            T0 - 5,
            "02:42:ac:11:00:05",
            "192.168.1.31",
            ["192.168.1.31"],
            "broker",
            "",
            "MQTT broker",
            "mqtt on 1883/tcp",
            services=[service(1883, "mqtt")],
            seen_by={"ip", "scan"},
            risk=25,
            last_scan=3,
        ),
        Device(
            3,
            T0 - 7 * 86400,
            T0 - 2,
            "e0:91:f5:73:8c:c2",
            "192.168.1.1",
            ["192.168.1.1"],
            "",
            "NETGEAR",
            "router",
            "SSDP server 'MiniUPnPd/1.6'",
            seen_by={"ip", "ssdp"},
        ),
        Device(
            4,
            T0 - 3 * 86400,
            T0 - 2 * 86400,
            "24:0a:c4:00:11:22",
            "192.168.1.77",
            ["192.168.1.77"],
            "esp-sensor",
            "Espressif Inc.",
            "IoT module",
            "MAC vendor Espressif Inc.",
            state="gone",
            seen_by={"dhcp"},
        ),
    ]
    findings = [
        (1, "default-credentials", 4, "Default credentials work", 23),
        (1, "telnet-cleartext", 3, "Telnet remote login in cleartext", 23),
        (1, "rtsp-no-auth", 3, "RTSP stream without authentication", 554),
        (2, "mqtt-anonymous", 3, "MQTT broker accepts anonymous clients", 1883),
    ]
    conn = connect(db)
    try:
        conn.execute("BEGIN")
        conn.executemany(UPSERT_DEVICE, [d.row() for d in devices])
        for n, (device, kind, sev, title, port) in enumerate(findings, 1):
            detail = {"evidence": "seen", "fix": "fix it", "confidence": "high"}
            conn.execute(
                UPSERT_FINDING,
                DeviceFinding(
                    n, device, kind, Severity(sev), title, detail, port, "tcp", T0, T0
                ).row(),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture
def inventory_engine(tmp_path) -> Iterator[EngineProcess]:
    with in_utc():
        _seed_devices(tmp_path / "state" / "iotsec.db")
        engine = start_engine(tmp_path, '[devices]\ngone_after = "36500d"\n')
        try:
            yield engine
        finally:
            engine.stop()


def test_devices_at_80x24(inventory_engine, snap_compare):
    from console.panes.devices import DevicesPane

    app = console_for(inventory_engine.config)

    async def run_before(pilot) -> None:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        pane = app.query_one(DevicesPane)
        pane.clock = lambda: T0
        await pilot.press("2")
        await wait_until(pilot, lambda: pane.table.row_count == 4, "the seeded devices")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
