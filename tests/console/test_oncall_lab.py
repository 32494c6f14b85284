"""The on-call night in tmux at 80x24 against the lab and its engine (issue 19's harms 2 and 3):
after a Telnet brute force from outside, `b` on an alert the camera's own answer raised (its
login prompt, its "Login incorrect") offers the outside address, never the camera; and a scan of
the lab from the Devices pane leaves the Alerts pane as it was, its rule hits counted in the
scan's summary as suppressed; and (harm 4) capture on both of the gateway's links makes one
device per lab device, with its own MAC, the camera found by its address."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import LabConfig
from engine.control.client import Client
from engine.lab import topology
from engine.lab.topology import Plan
from tests.conftest import ROOT, require_root, require_tool
from tests.console.test_console_tmux import Tmux, wait_gone

# Not the default lab, nor another test's.
LAB = LabConfig(prefix="iotoc", lan="10.253.77.0/24", outside="10.253.78.0/24")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    session = Tmux("oncall")
    yield session
    session.kill()


def alerts_now(iotsec: Any) -> dict[int, tuple[int, str]]:
    """Every alert the engine holds: its count and state, by id."""
    listed = json.loads(iotsec("alerts", "--limit", "100000", "--json"))
    return {a["id"]: (a["count"], a["state"]) for a in listed}


def settled(iotsec: Any, quiet: float = 3.0, timeout: float = 60.0) -> dict[int, tuple[int, str]]:
    """The alerts once nothing has changed for ``quiet`` seconds (the capture's last batch and
    the brute force's threshold windows have landed)."""
    deadline = time.monotonic() + timeout
    last, since = alerts_now(iotsec), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the alerts kept changing"
        time.sleep(0.5)
        now = alerts_now(iotsec)
        if now != last:
            last, since = now, time.monotonic()
    return last


def test_oncall_ban_offers_the_outside_host_and_our_scan_raises_nothing(
    tmp_path: Path, tmux: Tmux
) -> None:
    require_root("the lab makes network namespaces")
    for tool in ("ip", "nft", "tmux"):
        require_tool(tool)
    config = tmp_path / "iotsec.toml"
    config.write_text(
        f'[control]\nsocket = "{tmp_path / "run" / "control.sock"}"\n'
        f'[lab]\nprefix = "{LAB.prefix}"\nlan = "{LAB.lan}"\noutside = "{LAB.outside}"\n'
    )

    def iotsec(*args: str, timeout: float = 120) -> str:
        done = subprocess.run([sys.executable, "-m", "console.cli", "--config", str(config),
                               *args], capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    plan = Plan.from_config(LAB)
    camera = next(d for d in plan.devices if d.role == "camera")
    outside = str(plan.attacker.address)
    try:
        status = json.loads(iotsec("lab", "up", "--engine", "--json", timeout=300))
        assert status["engine"]["running"], status["engine"]
        console = tmux.start_console(config)
        tmux.wait_for(r"● lab engine │ capture: running")
        iotsec("lab", "run", "bruteforce")

        # Harm 2: the camera's "Login incorrect" is its answer; the attacker is outside.
        failed = next(
            a for a in json.loads(iotsec("alerts", "--json")) if a["rule"] == "9100003"
        )  # the shipped "IOTSEC TELNET login failed", raised on the server's side
        assert failed["src"] == str(camera.address)
        assert (failed["attacker"], failed["target"]) == (outside, str(camera.address))
        tmux.keys("/")
        tmux.wait_for(r"filter: words that must all appear")
        tmux.keys("login failed", "Enter")
        tmux.wait_for(r"Alerts [1-9]\d* of \d+ │ filter: login failed─")
        attacker, target = re.escape(outside), re.escape(str(camera.address))
        tmux.wait_for(rf"{attacker} +{target} +IOTSEC TELNET login fa")
        time.sleep(0.3)  # a person's pause: Enter has given the rows the keys back
        tmux.keys("b")
        tmux.wait_for(rf"Ban {attacker}, the attacker of alert #{failed['id']}")
        assert str(camera.address) not in tmux.screen().split("Ban ", 1)[1].split(",")[0]
        tmux.keys("Escape")
        tmux.wait_for(r"filter: login failed")
        tmux.keys("Escape")

        # Harm 3: a scan of the lab from the Devices pane leaves the Alerts pane unchanged.
        before = settled(iotsec)
        title_before = tmux.wait_for(r"Alerts \d+").group(0)
        tmux.keys("2")
        tmux.wait_for(r"Devices \d+ present")
        tmux.keys("S")
        tmux.wait_for(r"Scan #\d+ of the scan scope started")
        tmux.wait_for(r"Scan ended", timeout=240)
        with Client(status["engine"]["socket"]) as client:
            (scan,) = client.request("scan.list", {"limit": 1})
        assert scan["state"] == "done" and scan["summary"]["hosts"] >= 3, scan
        # The toasts, drawn over the table's right-hand side after their "▌", as one text.
        toasts = [line.split("▌", 1)[1] for line in tmux.screen().splitlines() if "▌" in line]
        told = " ".join(" ".join(toasts).split())
        hosts = scan["summary"]["hosts"]
        assert f"Scan #{scan['id']} of {LAB.lan} done: {hosts} hosts" in told, told
        assert "suppressed: our scan" in told, told
        time.sleep(12)  # the scan's grace: answers that arrive after it ended are its own too
        with Client(status["engine"]["socket"]) as client:
            scan = client.request("scan.get", {"id": scan["id"]})
        assert scan["summary"]["suppressed_hits"] > 0, "the scan tripped no rule to suppress"
        assert settled(iotsec) == before

        # Harm 4: with capture on both of the gateway's links, each lab device is one device
        # with its own MAC, holding its own address only, and the camera is found by address.
        with Client(status["engine"]["socket"]) as client:
            devices = client.request("devices.list")
        holders: dict[str, list[str]] = {}
        for device in devices:
            for address in device["addresses"]:
                holders.setdefault(address, []).append(device["mac"])
        for host in [*plan.devices, plan.attacker]:
            mac = topology.in_netns(host.netns, "cat", "/sys/class/net/eth0/address").stdout
            assert holders.get(host.address) == [mac.strip()], (host, holders)
        tmux.keys("/")
        tmux.wait_for(r"filter: text in the address, MAC")
        tmux.keys(str(camera.address), "Enter")
        tmux.wait_for(rf"Devices \d+ present.* 1 shown, filter: {target}")
        tmux.wait_for(rf"\n *(new +)?{target} +")
        tmux.keys("Escape")  # and wait: Escape and a key right after it read as Alt+key
        tmux.wait_for(r"Devices \d+ present[^│]*│ by risk─")

        tmux.keys("3")
        assert tmux.wait_for(r"Alerts \d+").group(0) == title_before
        tmux.keys("q")
        wait_gone(console)
    finally:
        subprocess.run([sys.executable, "-m", "console.cli", "--config", str(config), "lab",
                        "down"], capture_output=True, timeout=120, cwd=ROOT)  # fmt: skip
