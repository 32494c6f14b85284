"""The Devices pane and a device's detail, driven through the real console (Pilot) against a
real engine: devices from a replayed capture (mDNS) and from a scan of a loopback listener,
sorted, filtered, opened; scan, ban and traffic from there."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import console_for, request, wait_until
from test_console_rules import box_title, connected, notified, text
from test_console_traffic import replay, rows

from console.app import IotsecApp
from console.panes.traffic import TrafficPane
from console.panes.traffic_table import TrafficTable
from console.screens.ban_form import BanScreen
from console.screens.device_detail import DeviceScreen, device_content
from tests.conftest import EngineProcess, start_engine, wait_for

SIZE = (100, 30)
HOST = "johanna-QEMU-Virtual-Machine"


@pytest.fixture
def listener() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def inventory(tmp_path, listener: int) -> Iterator[EngineProcess]:
    """An engine that knows two devices: one from the mDNS capture, one scanned."""
    engine = start_engine(tmp_path, '[scan]\nscope = ["127.0.0.0/8"]\n')
    replay(engine, "zeek_mdns.pcap")
    run = request(
        engine, "scan.start", {"targets": ["127.0.0.1"], "ports": str(listener), "udp": False}
    )
    wait_for(lambda: request(engine, "scan.get", {"id": run["id"]})["state"] == "done", "scan")
    wait_for(lambda: len(request(engine, "devices.list")) == 2, "both devices")
    yield engine
    engine.stop()


def device_rows(app: IotsecApp) -> list[list[str]]:
    return rows(app.query_one("#device-table", TrafficTable))


async def open_devices(pilot: Any, app: IotsecApp) -> None:
    await connected(pilot, app)
    await pilot.press("2")
    await wait_until(pilot, lambda: len(device_rows(app)) == 2, "the devices")


async def test_the_inventory_sorted_filtered_and_described(inventory: EngineProcess, listener):
    app = console_for(inventory.config)
    async with app.run_test(size=SIZE) as pilot:
        await open_devices(pilot, app)
        assert app.query_one("#device-table").has_focus
        shown = device_rows(app)
        # Riskiest first: neither has findings, so both 0; both first seen just now.
        assert {r[1] for r in shown} == {"10.0.2.7", "127.0.0.1"}
        assert all(r[0] == "new" for r in shown)
        (mdns,) = [r for r in shown if r[1] == "10.0.2.7"]
        assert mdns[8] == "8a:3c:d6:e1:4d:c4" and mdns[6].startswith("johanna")
        (scanned,) = [r for r in shown if r[1] == "127.0.0.1"]
        assert scanned[-1] == f"{listener}/tcp"
        assert box_title(app, "#devices-pane").startswith("Devices 2 present, 2 new │ by risk")
        await pilot.press("o")
        assert "by address" in box_title(app, "#devices-pane")
        assert [r[1] for r in device_rows(app)] == ["10.0.2.7", "127.0.0.1"]
        assert text(app, "#device-detail").startswith("10.0.2.7  type unknown")
        await pilot.press("slash", *"johanna", "enter")
        assert [r[1] for r in device_rows(app)] == ["10.0.2.7"]
        assert "1 shown, filter: johanna" in box_title(app, "#devices-pane")
        await pilot.press("escape")
        assert len(device_rows(app)) == 2
        await pilot.press("question_mark")
        assert dict(app.screen.keys)["s"].startswith("Scan the device under the cursor")
        await pilot.press("escape")
        # All of 127.0.0.0/8 is more than a scan takes: the engine's refusal is shown.
        await pilot.press("S")
        await wait_until(pilot, lambda: notified(app, "Scan the scan scope failed: more than"),
                         "the refusal")  # fmt: skip


async def test_a_device_in_detail_and_what_can_be_done_to_it(inventory: EngineProcess, listener):
    app = console_for(inventory.config)
    async with app.run_test(size=SIZE) as pilot:
        await open_devices(pilot, app)
        await pilot.press("o")  # by address: 127.0.0.1 second
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DeviceScreen), "the detail")
        await wait_until(pilot, lambda: "Services" in text(app, "#device-text"), "the device")
        body = text(app, "#device-text")
        assert f"{listener}/tcp" in body and "seen by    scan" in body
        assert "last scan  #1" in body and "none open" in body
        assert "risk       0 of 100\n" in body, "no findings, no reason"
        assert text(app, "#title") == "Device 2: 127.0.0.1"
        await pilot.press("s")
        await wait_until(pilot, lambda: notified(app, "Scan #2 of 127.0.0.1 started"), "scan")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BanScreen), "the ban dialog")
        assert app.screen.address == "127.0.0.1"
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DeviceScreen), "back")
        await pilot.press("escape")
        await pilot.press("up", "t")
        await wait_until(pilot, lambda: app.query_one("#panes").active == "traffic", "traffic")
        traffic = app.query_one(TrafficPane)
        assert set(traffic.filter.split(" or ")) == {
            "host 10.0.2.7",
            "host fd52:429e:c03c:8235:883c:d6ff:fee1:4dc4",
            "host fe80::883c:d6ff:fee1:4dc4",
        }
        await pilot.press("2", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DeviceScreen), "the detail")
        await wait_until(pilot, lambda: HOST in text(app, "#device-text"), "the mDNS device")
        body = text(app, "#device-text")
        assert f"mdns       names: {HOST}.local" in body
        assert "udp 10.0.2.7:5353 -> 224.0.0.251:5353 mdns" in body


def test_the_detail_says_why_the_risk_is_what_it_is() -> None:
    reason = "usable by an attacker now: Default credentials work; Telnet in cleartext"
    body = device_content({"risk": 97, "risk_reason": reason}).plain
    assert f"risk       97 of 100 ({reason})" in body
