"""The inventory and scans in a running engine: scans started, watched, cancelled and scheduled
through the control API and ``iotsec scan``; their results, differences and alerts; devices
found from live traffic between network namespaces, marked gone and back; all kept across a
restart."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.control.client import Client
from engine.control.protocol import ControlError
from engine.lab.topology import Plan
from engine.scan.ports import TOP_IOT_PORTS
from tests.conftest import (
    LOOPBACK_SCOPE,
    ROOT,
    EngineProcess,
    require_root,
    start_engine,
    wait_for,
)
from tests.test_capture_live import RECEIVER, SENDER, Pair, pair  # noqa: F401 - the fixture
from tests.test_scan import nmap_open


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    """TCP listeners on free loopback ports (the kernel completes the handshakes)."""
    made: list[socket.socket] = []
    yield made
    for s in made:
        s.close()


def listen(made: list[socket.socket]) -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    made.append(s)
    return s.getsockname()[1]


def finished(client: Client, scan_id: int, timeout: float = 120) -> dict[str, Any]:
    return wait_for(
        lambda: (s := client.request("scan.get", {"id": scan_id}))["state"] != "running" and s,
        f"scan {scan_id}",
        timeout,
    )


def alert_rules(client: Client, source: str) -> list[str]:
    return sorted(a["rule"] for a in client.request("alerts.list", {"source": source}))


def test_scans_in_the_engine_feed_the_inventory_and_differ(
    tmp_path: Path, listeners: list[socket.socket]
) -> None:
    first_port = listen(listeners)
    engine = start_engine(tmp_path, LOOPBACK_SCOPE)
    try:
        with engine.client() as client, engine.client("events") as events:
            events.request("subscribe", {"topics": ["scans"]})
            run = client.request(
                "scan.start", {"targets": ["127.0.0.1"], "ports": str(first_port), "udp": False}
            )
            assert run["state"] == "running" and run["requested_by"]
            states = []
            while not states or states[-1] == "running":
                data = events.next_event()["data"]
                if data["id"] == run["id"]:
                    states.append(data["state"])
            assert states[0] == "running" and states[-1] == "done"
            first = client.request("scan.get", {"id": run["id"]})
            assert [p["port"] for p in first["hosts"][0]["ports"]] == [first_port]
            assert first["diff"] is None and first["summary"]["new_devices"] == 1
            device = client.request("devices.get", {"device": "127.0.0.1"})
            assert [s["port"] for s in device["services"]] == [first_port]
            assert device["last_scan"] == run["id"] and device["seen_by"] == ["scan"]
            assert device["this_box"]  # loopback: this box, so no new-device alert

            second_port = listen(listeners)
            ports = f"{first_port},{second_port}"
            again = finished(
                client,
                client.request(
                    "scan.start", {"targets": ["127.0.0.1"], "ports": ports, "udp": False}
                )["id"],
            )
            # The same targets: compared with the first scan.
            assert [p["port"] for p in again["diff"]["opened"]] == [second_port]
            assert again["summary"]["new_ports"] == 1
            assert alert_rules(client, "devices") == [f"new-open-port {second_port}/tcp"]
            listeners.pop().close()
            third = finished(
                client,
                client.request(
                    "scan.start", {"targets": ["127.0.0.1"], "ports": ports, "udp": False}
                )["id"],
            )
            assert [p["port"] for p in third["diff"]["closed"]] == [second_port]
        listed = json.loads(engine.cli("devices", "--json").stdout)
        assert [d["ip"] for d in listed] == ["127.0.0.1"]
        shown = engine.cli("devices", "show", "127.0.0.1").stdout
        assert f"{first_port}/tcp" in shown and "first seen" in shown
    finally:
        assert engine.stop() == 0
    # Kept across a restart.
    engine = start_engine(tmp_path, LOOPBACK_SCOPE)
    try:
        with engine.client() as client:
            device = client.request("devices.get", {"device": "127.0.0.1"})
            assert [s["port"] for s in device["services"]] == [first_port]
            assert [s["id"] for s in client.request("scan.list")] == [3, 2, 1]
    finally:
        assert engine.stop() == 0


def test_scans_are_refused_outside_the_scope_cancelled_and_limited(tmp_path: Path) -> None:
    engine = start_engine(tmp_path, LOOPBACK_SCOPE)
    try:
        with engine.client() as client:
            with pytest.raises(ControlError, match="outside the scan scope") as refused:
                client.request("scan.start", {"targets": ["127.0.0.1", "10.0.0.1"]})
            assert refused.value.code == "refused"
            # Every TCP port at [scan] rate 2000/s: half a minute each, until cancelled.
            slow = [
                client.request(
                    "scan.start", {"targets": [f"127.0.0.{n}"], "profile": "full", "udp": False}
                )
                for n in (2, 3)
            ]
            with pytest.raises(ControlError, match="2 scans are running") as busy:
                client.request("scan.start", {"targets": ["127.0.0.4"]})
            assert busy.value.code == "busy"
            running = client.request("scan.status")["running"]
            assert {r["id"] for r in running} == {s["id"] for s in slow}
            wait_for(
                lambda: all(r["done"] > 0 for r in client.request("scan.status")["running"]),
                "progress",
            )
            for s in slow:
                assert client.request("scan.cancel", {"id": s["id"]})["state"] == "cancelled"
            assert client.request("scan.status")["running"] == []
            assert {s["state"] for s in client.request("scan.list")} == {"cancelled"}
            assert client.request("devices.list") == []  # a cancelled scan records nothing
        audit = engine.cli("audit", "--json").stdout
        assert '"scan.cancel"' in audit and '"scan.start"' in audit
    finally:
        assert engine.stop() == 0


def test_a_schedule_runs_when_due_and_not_again_after_a_restart(
    tmp_path: Path, listeners: list[socket.socket]
) -> None:
    port = listen(listeners)
    schedule = (
        f'[[scan.schedule]]\nname = "hourly"\ntargets = ["127.0.0.1"]\n'
        f'ports = "{port}"\nudp = false\ninterval = "1h"\n'
    )
    engine = start_engine(tmp_path, LOOPBACK_SCOPE + schedule)
    try:
        with engine.client() as client:
            (run,) = wait_for(lambda: client.request("scan.list"), "the scheduled scan")
            assert run["kind"] == "schedule:hourly" and run["requested_by"] == "schedule"
            assert finished(client, run["id"])["state"] == "done"
            (status,) = client.request("scan.status")["schedules"]
            assert status["next_run"] - status["last_run"] == 3600
    finally:
        assert engine.stop() == 0
    engine = start_engine(tmp_path, LOOPBACK_SCOPE + schedule)
    try:
        time.sleep(2.5)  # two of the engine's one-second looks at the schedules
        with engine.client() as client:
            assert len(client.request("scan.list")) == 1
    finally:
        assert engine.stop() == 0


def send_announcements(pair: Pair) -> None:  # noqa: F811
    """From the sender's namespace: a DHCP DISCOVER naming the host, and an mDNS answer that
    announces a printer (IPP) at the sender's address."""
    code = f"""
from scapy.all import BOOTP, DHCP, DNS, DNSRR, IP, UDP, Ether, sendp
mac = "{pair.mac_a}"
discover = (Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67) / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=9)
            / DHCP(options=[("message-type", "discover"), ("hostname", b"printer-2f"),
                            ("vendor_class_id", b"udhcp 1.36.1"), "end"]))
answer = DNS(qr=1, aa=1, an=DNSRR(rrname="_ipp._tcp.local", type="PTR",
                                  rdata="Office._ipp._tcp.local")
         / DNSRR(rrname="printer-2f.local", type="A", rdata="{SENDER}"))
mdns = (Ether(src=mac, dst="01:00:5e:00:00:fb") / IP(src="{SENDER}", dst="224.0.0.251")
        / UDP(sport=5353, dport=5353) / answer)
sendp([discover, mdns], iface="{pair.veth_a}", verbose=False)
"""
    done = pair.run(pair.a, sys.executable, "-c", code, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def device_of(engine: EngineProcess, mac: str) -> dict[str, Any] | None:
    listed = json.loads(engine.cli("devices", "--json").stdout)
    return next((d for d in listed if d["mac"] == mac), None)


def test_live_traffic_builds_devices_that_go_and_come_back(pair: Pair, tmp_path: Path) -> None:  # noqa: F811
    require_root("capture in the test's network namespaces")
    config = (f'[capture]\ninterfaces = ["{pair.veth_b}"]\n'
              '[devices]\ngone_after = "3s"\nlearning = "0s"\n')  # fmt: skip
    engine = start_engine(tmp_path, config, prefix=("ip", "netns", "exec", pair.b))
    try:
        with engine.client("events") as events:
            events.request("subscribe", {"topics": ["devices"]})
            with engine.client() as client:
                wait_for(lambda: client.request("capture.status")["state"] == "running", "capture")
            send_announcements(pair)
            pair.ping(2)
            device = wait_for(
                lambda: (d := device_of(engine, pair.mac_a)) and d["kind"] and d,
                "the sender's device",
            )
            assert device["ip"] == SENDER and device["hostname"] == "printer-2f"
            assert (device["kind"], device["kind_reason"]) == ("printer", "mDNS announces _ipp")
            assert {"dhcp", "mdns"} <= set(device["seen_by"])
            shown = json.loads(engine.cli("devices", "show", pair.mac_a, "--json").stdout)
            assert shown["details"]["dhcp"]["vendor_class"] == "udhcp 1.36.1"
            assert "Office._ipp._tcp.local" in shown["details"]["mdns"]["services"]
            assert any(f["proto"] == "icmp" for f in shown["live_flows"] + shown["flows"])
            receiver = wait_for(
                lambda: device_of(engine, _mac(pair, pair.b, pair.veth_b)), "the receiver's device"
            )
            assert receiver["ip"] == RECEIVER
            # Quiet for gone_after: gone (an event and an alert); a ping brings it back.
            wait_for(lambda: device_of(engine, pair.mac_a)["state"] == "gone", "gone", 10)
            pair.ping(1)
            wait_for(lambda: device_of(engine, pair.mac_a)["state"] == "present", "back")
            changes = []
            while "back" not in changes:
                message = events.next_event()
                if message["data"]["device"]["mac"] == pair.mac_a:
                    changes.append(message["data"]["change"])
            assert changes[-2:] == ["gone", "back"]
        alerts = json.loads(engine.cli("alerts", "--json").stdout)
        titles = [a["title"] for a in alerts if a["source"] == "devices"]
        assert any(t.startswith(f"Device gone: {SENDER} (printer-2f)") for t in titles)
        assert any(t.startswith("New device ") and pair.mac_a in t for t in titles)
    finally:
        assert engine.stop() == 0


def _mac(pair: Pair, netns: str, link: str) -> str:  # noqa: F811
    shown = pair.run(netns, "ip", "-j", "link", "show", link)
    return json.loads(shown.stdout)[0]["address"]


def test_iotsec_scan_runs_in_the_engine_and_the_lab_becomes_the_inventory(
    lab: Plan, tmp_path: Path
) -> None:
    require_root("the lab's namespaces")
    engine = start_engine(
        tmp_path,
        f'[scan]\nscope = ["{lab.lan}"]\n',
        prefix=("ip", "netns", "exec", lab.gateway.netns),
    )
    roles = {d.role: d.address for d in lab.devices}
    targets = [roles[r] for r in ("camera", "broker", "sensor", "controller")]
    try:
        done = engine.cli("scan", *targets, "--json")
        data = json.loads(done.stdout)
        assert data["scan"] == 1
        hosts = {h["address"]: h for h in data["hosts"]}
        assert set(hosts) == set(targets)
        ports = ",".join(map(str, TOP_IOT_PORTS))
        for address in targets:
            tcp = sorted(p["port"] for p in hosts[address]["ports"] if p["proto"] == "tcp")
            assert tcp == nmap_open(lab, address, ports), address
        inventory = {d["ip"]: d for d in json.loads(engine.cli("devices", "--json").stdout)}
        assert set(inventory) == set(targets)
        assert all(d["mac"] and d["seen_by"] == ["scan"] for d in inventory.values())
        assert inventory[roles["broker"]]["kind"] == "MQTT broker"
        assert inventory[roles["controller"]]["kind"] == "industrial controller"
        assert inventory[roles["camera"]]["risk"] > inventory[roles["controller"]]["risk"] > 0
        findings = json.loads(engine.cli("findings", "--json").stdout)
        camera = {f["kind"]: f for f in findings if f["address"] == roles["camera"]}
        assert "login" in camera["telnet-cleartext"]["evidence"]
        assert camera["telnet-cleartext"]["fix"]
        text = engine.cli("findings", "--severity", "high").stdout
        assert "mqtt" in text.lower() and "evidence:" in text and "fix:" in text
        again = engine.cli("scan", *targets)
        assert "no change since the previous scan of these targets" in again.stdout
    finally:
        assert engine.stop() == 0


def link_local(pair: Pair, netns: str, link: str) -> str:  # noqa: F811
    """The link's IPv6 link-local address, once duplicate address detection has passed."""

    def ready() -> str:
        shown = json.loads(pair.run(netns, "ip", "-j", "-6", "addr", "show", link).stdout)
        return next(
            (a["local"] for a in shown[0]["addr_info"]
             if a["scope"] == "link" and not a.get("tentative")),
            "",
        )  # fmt: skip

    return wait_for(ready, f"the link-local address of {link}")


def test_arp_ndp_and_link_local_traffic_are_one_live_device(pair: Pair, tmp_path: Path) -> None:  # noqa: F811
    """The sender shows IPv6 first (neighbour discovery, then echoes to the receiver's
    link-local and global addresses), then ARP and IPv4: one device with all its addresses,
    one new-device alert."""
    require_root("capture in the test's network namespaces")
    own, peer = link_local(pair, pair.a, pair.veth_a), link_local(pair, pair.b, pair.veth_b)
    # Global addresses outside [devices] local_networks: the sender's joins its device because
    # neighbour discovery vouches for it.
    own_global, peer_global = "2001:db8:97::1", "2001:db8:97::2"
    for netns, link, address in ((pair.a, pair.veth_a, own_global),
                                 (pair.b, pair.veth_b, peer_global)):  # fmt: skip
        done = pair.run(netns, "ip", "addr", "add", f"{address}/64", "dev", link, "nodad")
        assert done.returncode == 0, done.stderr
    config = f'[capture]\ninterfaces = ["{pair.veth_b}"]\n[devices]\nlearning = "0s"\n'
    engine = start_engine(tmp_path, config, prefix=("ip", "netns", "exec", pair.b))
    try:
        with engine.client() as client:
            wait_for(lambda: client.request("capture.status")["state"] == "running", "capture")
        for netns in (pair.a, pair.b):  # so that NDP and ARP are asked again
            pair.run(netns, "ip", "neigh", "flush", "all")
        # Echoes to each address, after neighbour discovery for it.
        for target in (f"{peer}%{pair.veth_a}", peer_global):
            done = pair.run(pair.a, "ping", "-6", "-n", "-c", "3", "-i", "0.05", target)
            assert done.returncode == 0, done.stdout + done.stderr
        pair.ping(2)
        wait_for(
            lambda: (d := device_of(engine, pair.mac_a)) and SENDER in d["addresses"],
            "the sender's IPv4 address",
        )
        time.sleep(1.5)  # more of the inventory's ticks: nothing else comes of it
        listed = json.loads(engine.cli("devices", "--json").stdout)
        alerts = json.loads(engine.cli("alerts", "--json").stdout)
    finally:
        assert engine.stop() == 0
    assert all(d["mac"] for d in listed) and len({d["mac"] for d in listed}) == len(listed)
    (sender,) = [d for d in listed if own in d["addresses"]]
    assert sender["mac"] == pair.mac_a and sender["ip"] == SENDER
    assert set(sender["addresses"]) == {SENDER, own, own_global}
    assert {"arp", "ndp", "ip"} <= set(sender["seen_by"])
    new = [
        a for a in alerts if a["rule"] == "new-device" and a["evidence"]["device"] == sender["id"]
    ]
    assert len(new) == 1 and pair.mac_a in new[0]["title"]
    # Every device but this box's own interface (the engine's namespace's end) is new.
    others = [d for d in listed if not d["this_box"]]
    assert len(others) == len(listed) - 1
    assert len([a for a in alerts if a["rule"] == "new-device"]) == len(others)
