"""The engine on the lab's gateway, capturing on both its interfaces (``lan0`` and ``ext0``)
while the outside pings the LAN through it: one device per lab device, each with its own MAC,
the gateway (this box) none; then a scan by the engine itself raises no alert, and its summary
counts the rule hits it suppressed."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from engine.control.client import Client
from engine.lab.topology import Plan
from tests.conftest import require_root, start_engine, wait_for
from tests.test_devices_engine import finished


def macs(netns: str) -> set[str]:
    shown = subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    return {link["address"] for link in json.loads(shown) if link.get("link_type") == "ether"}


def addresses(netns: str) -> set[str]:
    shown = subprocess.run(["ip", "-n", netns, "-j", "addr", "show"], capture_output=True,
                           text=True, check=True).stdout  # fmt: skip
    return {a["local"] for link in json.loads(shown) for a in link.get("addr_info", [])}


def settled(client: Client) -> list[dict[str, Any]]:
    """The alerts once no new one has come for two seconds (the capture hands them over in
    batches)."""
    before: list[dict[str, Any]] = []
    for _ in range(30):
        now = [(a["id"], a["count"]) for a in client.request("alerts.list", {"limit": 10000})]
        if now == before:
            return client.request("alerts.list", {"limit": 10000})
        before = now  # type: ignore[assignment]
        time.sleep(2)
    raise AssertionError("the alerts did not settle")


def test_routed_traffic_is_attributed_and_our_scan_raises_no_alert(
    lab: Plan, tmp_path: Path
) -> None:
    require_root("the lab's namespaces")
    engine = start_engine(
        tmp_path,
        '[capture]\ninterfaces = ["lan0", "ext0"]\n'
        f'[scan]\nscope = ["{lab.lan}"]\n'
        "[devices]\nlearning = 0\nalert_findings = false\nalert_new_port = false\n",
        prefix=("ip", "netns", "exec", lab.gateway.netns),
    )
    ours = addresses(lab.gateway.netns)
    our_macs = macs(lab.gateway.netns)
    try:
        with engine.client() as client:
            wait_for(lambda: client.request("capture.status")["state"] == "running", "capture")
            for host in lab.devices:  # from outside, through the gateway
                done = subprocess.run(["ip", "netns", "exec", lab.attacker.netns, "ping", "-n",
                                       "-c", "2", "-i", "0.2", "-W", "2", host.address],
                                      capture_output=True, text=True)  # fmt: skip
                assert done.returncode == 0, done.stdout + done.stderr
            wait_for(
                lambda: (
                    {h.address for h in lab.devices}
                    <= {d["ip"] for d in client.request("devices.list")}
                ),
                "the lab's devices",
            )
            before = settled(client)
            listed = client.request("devices.list")
            devices = [d for d in listed if not d["this_box"]]
            by_ip = {d["ip"]: d for d in devices}
            for host in lab.devices:
                [mac] = macs(host.netns)
                assert by_ip[host.address]["mac"] == mac, host.role
                assert (
                    host.address
                    in client.request("devices.get", {"device": host.address})["addresses"]
                )
            [outside_mac] = macs(lab.attacker.netns)
            assert by_ip[lab.attacker.address]["mac"] == outside_mac
            assert len({d["mac"] for d in devices}) == len(devices)
            for device in devices:
                assert device["mac"] not in our_macs
                assert not set(device["addresses"]) & ours
            for device in listed:
                if device["this_box"]:
                    assert device["mac"] in our_macs | {""} and set(device["addresses"]) <= ours
            camera = next(h.address for h in lab.devices if h.role == "camera")
            assert client.request("devices.get", {"device": camera})["ip"] == camera
            new = [a for a in before if a["rule"] == "new-device"]
            assert new and not {a["src"] for a in new} & ours

            run = client.request("scan.start", {"targets": [str(lab.lan)]})
            done = finished(client, run["id"])
            assert done["state"] == "done"
            hosts = {h["address"] for h in done["hosts"]}
            assert {h.address for h in lab.devices} <= hosts
            after = settled(client)
            assert [(a["id"], a["count"]) for a in after] == [(a["id"], a["count"]) for a in before]
            summary = wait_for(
                lambda: (
                    (s := client.request("scan.get", {"id": run["id"]})["summary"])[
                        "suppressed_hits"
                    ]
                    and s
                ),
                "the suppressed hits",
                20,
            )
            assert summary["suppressed_hits"] > 0
            assert summary["new_devices"] == 0
    finally:
        assert engine.stop() == 0
