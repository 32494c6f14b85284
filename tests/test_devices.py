"""The device inventory on its own: devices built from the facts of real captures (mDNS, SSDP,
DHCP, every MAC/IP pair, neighbour discovery), from scan results, and what changes raise: new,
gone and back, new ports, findings that appear and are resolved; one device per MAC whatever
addresses it shows; all written to and read back from SQLite."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether

from engine.alerts.manager import AlertManager
from engine.capture.pipeline import Pipeline
from engine.config import DevicesConfig
from engine.devices.classify import guess
from engine.devices.inventory import Coverage, Inventory
from engine.events import EventBus, Subscriber
from engine.scan.diff import diff_scans
from engine.store.db import connect
from engine.store.writer import Writer
from tests.test_capture_protocols import flows_of

CAMERA_MAC = "c0:56:e3:12:34:56"  # Hikvision's block
ALL_TCP = Coverage(frozenset(range(1, 1025)), udp=True, creds=False)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    inventory: Inventory
    events: Subscriber
    clock: Clock
    path: Path
    writer: Writer

    def changes(self) -> list[dict[str, Any]]:
        found = []
        while not self.events.queue.empty():
            message = self.events.get_nowait()
            if message["event"] == "devices":
                found.append(message["data"])
        return found

    def alerts(self) -> list[tuple[str, str, str]]:
        self.writer.flush()
        with sqlite3.connect(self.path) as db:
            return db.execute("SELECT source, rule, title FROM alerts ORDER BY id").fetchall()

    def reloaded(self) -> Inventory:
        self.inventory.flush()
        self.writer.flush()
        again = Inventory(
            DevicesConfig(), [], self.writer, EventBus(), self.inventory.alerts, clock=self.clock
        )
        conn = connect(self.path, readonly=True)
        try:
            again.load(conn)
        finally:
            conn.close()
        return again


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    path = tmp_path / "iotsec.db"
    writer = Writer(path, interval=0.01)
    bus = EventBus()
    events = bus.subscribe("test", ["devices"])
    clock = Clock()
    alerts = AlertManager(writer, bus, clock=clock)
    inventory = Inventory(
        DevicesConfig(gone_after=600, learning=0), [], writer, bus, alerts, clock=clock
    )
    conn = connect(path, readonly=True)
    inventory.load(conn)
    conn.close()
    yield World(inventory, events, clock, path, writer)
    writer.close()


def feed(inventory: Inventory, pipeline: Pipeline) -> None:
    inventory.observe(pipeline.facts, pipeline.take_seen())


def captured(inventory: Inventory, frames: list[Any]) -> None:
    """``frames`` (scapy packets) through a real pipeline, into the inventory as one tick."""
    pipeline = Pipeline(facts=True)
    for n, frame in enumerate(frames):
        data = bytes(frame)
        pipeline.feed(1.0 + n, 1, data, len(data), "eth0")
    pipeline.finish()
    feed(inventory, pipeline)


def dhcp_frames() -> list[bytes]:
    """A camera's DHCP DISCOVER (its name and udhcp's vendor class) and the server's ACK."""
    chaddr = bytes.fromhex(CAMERA_MAC.replace(":", ""))
    discover = (
        Ether(src=CAMERA_MAC, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=chaddr, xid=7)
        / DHCP(
            options=[
                ("message-type", "discover"),
                ("hostname", b"ipcam-7"),
                ("vendor_class_id", b"udhcp 1.24.1"),
                "end",
            ]
        )
    )
    ack = (
        Ether(src="02:00:00:00:00:01", dst=CAMERA_MAC)
        / IP(src="192.168.7.1", dst="192.168.7.50")
        / UDP(sport=67, dport=68)
        / BOOTP(op=2, chaddr=chaddr, xid=7, yiaddr="192.168.7.50")
        / DHCP(options=[("message-type", "ack"), ("server_id", "192.168.7.1"), "end"])
    )
    return [bytes(discover), bytes(ack)]


def test_mdns_announcements_name_the_host(world: World) -> None:
    feed(world.inventory, flows_of("zeek_mdns.pcap"))
    (device,) = world.inventory.devices.values()
    assert device.mac == "8a:3c:d6:e1:4d:c4"
    assert device.hostname == "johanna-QEMU-Virtual-Machine"
    assert device.ip == "10.0.2.7"  # IPv4 is the address people know it by
    assert set(device.addresses) == {
        "10.0.2.7",
        "fd52:429e:c03c:8235:883c:d6ff:fee1:4dc4",
        "fe80::883c:d6ff:fee1:4dc4",
    }
    assert device.seen_by == {"ip", "mdns"}
    assert device.vendor == ""  # a locally administered (randomised) MAC has no vendor
    assert [c["change"] for c in world.changes()] == ["new"]


def test_an_ssdp_notify_makes_a_router_with_the_reason(world: World) -> None:
    feed(world.inventory, flows_of("sv_ssdp.pcap"))
    device = world.inventory.find("192.168.1.1")
    assert device is not None and device.mac == "e0:91:f5:73:8c:c2"
    assert device.details["ssdp"]["location"] == "http://192.168.1.1:7406/rootDesc.xml"
    assert device.kind == "router"
    assert "MiniUPnPd" in device.kind_reason


def test_one_mac_with_two_addresses_is_one_device(world: World) -> None:
    feed(world.inventory, flows_of("sv_modbus.pcap"))
    assert len(world.inventory.devices) == 3
    device = world.inventory.find("00:50:04:93:70:67")
    assert device is not None and sorted(device.addresses) == ["10.0.0.8", "10.0.0.9"]
    assert world.inventory.find("10.0.0.9") is device


def test_a_public_address_behind_the_router_is_not_a_device(world: World) -> None:
    feed(world.inventory, flows_of("zeek_mqtt.pcap"))
    assert [d.ip for d in world.inventory.devices.values()] == ["10.0.1.4"]
    assert world.inventory.find("198.41.30.241") is None


def test_dhcp_names_the_client_and_its_address(world: World) -> None:
    pipeline = Pipeline(facts=True)
    for n, frame in enumerate(dhcp_frames()):
        pipeline.feed(1.0 + n, 1, frame, len(frame), "file")
    feed(world.inventory, pipeline)
    device = world.inventory.find(CAMERA_MAC)
    assert device is not None
    assert device.hostname == "ipcam-7" and device.ip == "192.168.7.50"
    assert device.details["dhcp"]["vendor_class"] == "udhcp 1.24.1"
    assert device.vendor.lower().startswith("hangzhou hikvision")
    assert device.kind == "camera"  # the strongest clue: its vendor
    assert device.kind_reason.startswith("MAC vendor")
    # The DHCP server answered from its own address: it is a device too.
    assert world.inventory.find("192.168.7.1") is not None


def test_malformed_facts_are_counted_and_the_rest_still_count(world: World) -> None:
    good = {"kind": "host", "mac": "02:11:22:33:44:55", "ip": "10.1.1.1", "via": "arp"}
    world.inventory.observe([{"kind": "host"}, {"kind": "dhcp", "mac": 5}, good], set())
    assert world.inventory.bad_facts == 2
    assert world.inventory.find("10.1.1.1") is not None


def test_gone_after_the_configured_time_then_back(world: World) -> None:
    seen = {("02:11:22:33:44:55", "10.1.1.1")}
    world.inventory.observe([], seen)
    world.clock.now += 599
    world.inventory.tick()
    assert world.inventory.find("10.1.1.1").state == "present"
    world.clock.now += 2
    world.inventory.tick()
    assert world.inventory.find("10.1.1.1").state == "gone"
    world.inventory.observe([], seen)
    assert world.inventory.find("10.1.1.1").state == "present"
    assert [c["change"] for c in world.changes()] == ["new", "gone", "back"]
    assert [rule for _, rule, _ in world.alerts()] == ["new-device", "device-gone"]
    assert world.reloaded().find("10.1.1.1").state == "present"


def host(
    address: str, ports: list[int], findings: list[tuple[str, int, str]], mac: str = ""
) -> dict[str, Any]:
    return {
        "address": address,
        "mac": mac,
        "vendor": "",
        "found_by": "arp" if mac else "given",
        "ports": [
            {
                "port": p,
                "proto": "tcp",
                "service": {23: "telnet", 80: "http", 554: "rtsp"}.get(p, ""),
            }
            for p in ports
        ],
        "findings": [
            {
                "kind": kind,
                "severity": severity,
                "title": kind,
                "evidence": "seen",
                "fix": "fix it",
                "port": port,
                "proto": "tcp",
                "confidence": "high",
            }
            for kind, port, severity in findings
        ],
        "tls": {},
        "closed": 0,
        "filtered": 0,
    }


def test_scans_make_ports_and_findings_and_their_changes(world: World) -> None:
    inventory = world.inventory
    first = inventory.apply_scan(
        1, [host("10.9.0.5", [23, 80], [("telnet-cleartext", 23, "high")], mac=CAMERA_MAC)], ALL_TCP
    )
    assert [d["address"] for d in first["new_devices"]] == ["10.9.0.5"]
    assert first["new_ports"] == []  # nothing was known before its first scan
    assert [f["kind"] for f in first["new_findings"]] == ["telnet-cleartext"]
    device = inventory.find("10.9.0.5")
    assert device.risk == 78 and device.last_scan == 1  # usable now: 70 and a high's share
    second = inventory.apply_scan(
        2, [host("10.9.0.5", [80, 554], [("rtsp-no-auth", 554, "high")])], ALL_TCP
    )
    assert [(p["port"], p["proto"]) for p in second["new_ports"]] == [(554, "tcp")]
    assert [p["port"] for p in second["closed_ports"]] == [23]
    assert [f["kind"] for f in second["new_findings"]] == ["rtsp-no-auth"]
    assert [f["kind"] for f in second["resolved_findings"]] == ["telnet-cleartext"]
    assert device.kind == "camera" and device.kind_reason == "rtsp on 554/tcp"
    rules = [rule for _, rule, _ in world.alerts()]
    assert rules == [
        "new-device",
        "telnet-cleartext 23/tcp",
        "new-open-port 554/tcp",
        "rtsp-no-auth 554/tcp",
        "finding-resolved telnet-cleartext 23/tcp",
    ]
    again = world.reloaded().find(CAMERA_MAC)
    assert [s["port"] for s in again.services] == [80, 554]
    assert list(again.findings) == [("rtsp-no-auth", 554, "tcp")]
    with sqlite3.connect(world.path) as db:
        states = db.execute("SELECT kind, state FROM findings ORDER BY id").fetchall()
    assert states == [("telnet-cleartext", "resolved"), ("rtsp-no-auth", "open")]


def test_an_operators_scan_reports_a_baseline_and_alerts_on_what_changes(world: World) -> None:
    """A scan someone started reports its first findings of a device to them (returned, in
    the inventory) without alerts; its later findings and a schedule's alert."""
    inventory = world.inventory
    first = inventory.apply_scan(
        1, [host("10.9.0.5", [23], [("telnet-cleartext", 23, "high")], mac=CAMERA_MAC)],
        ALL_TCP, requested=True,
    )  # fmt: skip
    assert [f["kind"] for f in first["new_findings"]] == ["telnet-cleartext"]
    assert list(inventory.find("10.9.0.5").findings) == [("telnet-cleartext", 23, "tcp")]
    assert [rule for _, rule, _ in world.alerts()] == ["new-device"]
    inventory.apply_scan(
        2, [host("10.9.0.5", [23, 554], [("telnet-cleartext", 23, "high"),
                                         ("rtsp-no-auth", 554, "high")])],
        ALL_TCP, requested=True,
    )  # fmt: skip
    assert [rule for _, rule, _ in world.alerts()] == [
        "new-device", "new-open-port 554/tcp", "rtsp-no-auth 554/tcp"
    ]  # fmt: skip
    # A schedule's first scan of another device alerts on its findings: nobody asked to see it.
    inventory.apply_scan(3, [host("10.9.0.6", [23], [("telnet-cleartext", 23, "high")])],
                         ALL_TCP)  # fmt: skip
    assert [rule for _, rule, _ in world.alerts()][-1] == "telnet-cleartext 23/tcp"


def test_only_what_a_scan_looked_at_can_be_found_gone(world: World) -> None:
    inventory = world.inventory
    inventory.apply_scan(
        1,
        [
            host(
                "10.9.0.6",
                [23, 8080],
                [("default-credentials", 23, "critical"), ("telnet-cleartext", 23, "high")],
            )
        ],
        ALL_TCP,
    )
    # A scan of port 80 only, without default-credential checks: 23 and 8080 are not looked at.
    inventory.apply_scan(2, [host("10.9.0.6", [], [])], Coverage(frozenset({80}), False, False))
    device = inventory.find("10.9.0.6")
    assert [s["port"] for s in device.services] == [23, 8080]
    assert len(device.findings) == 2
    # Port 23 scanned again but no credentials tried: the credential finding stays.
    inventory.apply_scan(3, [host("10.9.0.6", [23], [])], ALL_TCP)
    assert [k for k, _, _ in device.findings] == ["default-credentials"]


def test_an_address_only_device_merges_into_its_mac_when_arp_shows_it(world: World) -> None:
    inventory = world.inventory
    inventory.observe([{"kind": "host", "mac": CAMERA_MAC, "ip": "10.9.0.7", "via": "arp"}], set())
    inventory.apply_scan(
        1, [host("10.9.0.8", [80], [("http-login-cleartext", 80, "medium")])], ALL_TCP
    )
    assert len(inventory.devices) == 2
    inventory.observe([{"kind": "host", "mac": CAMERA_MAC, "ip": "10.9.0.8", "via": "arp"}], set())
    (device,) = inventory.devices.values()
    assert sorted(device.addresses) == ["10.9.0.7", "10.9.0.8"]
    assert list(device.findings) == [("http-login-cleartext", 80, "tcp")]
    assert len(world.reloaded().devices) == 1


def test_an_address_moves_to_the_device_that_has_it_now(world: World) -> None:
    inventory = world.inventory
    inventory.observe([{"kind": "host", "mac": "02:00:00:00:00:0a", "ip": "10.1.1.9"}], set())
    inventory.observe([{"kind": "host", "mac": "02:00:00:00:00:0b", "ip": "10.1.1.9"}], set())
    old, new = inventory.find("02:00:00:00:00:0a"), inventory.find("02:00:00:00:00:0b")
    assert old.addresses == [] and old.ip == "" and new.ip == "10.1.1.9"
    assert inventory.find("10.1.1.9") is new


@pytest.mark.parametrize(
    ("services", "details", "vendor", "hostname", "kind", "reason"),
    [
        (
            [{"port": 502, "proto": "tcp", "service": "modbus"}],
            {},
            "",
            "",
            "industrial controller",
            "modbus on 502/tcp",
        ),
        (
            [],
            {"mdns": {"services": ["Office._ipp._tcp.local"]}},
            "",
            "",
            "printer",
            "mDNS announces _ipp",
        ),
        (
            [],
            {"dhcp": {"vendor_class": "android-dhcp-13"}},
            "",
            "",
            "phone or tablet",
            "DHCP vendor class 'android-dhcp-13'",
        ),
        ([], {}, "Espressif Inc.", "", "IoT module", "MAC vendor Espressif Inc."),
        ([], {}, "", "raspberrypi", "single-board computer", "host name 'raspberrypi'"),
        ([], {}, "", "", "", ""),
    ],
)
def test_the_strongest_clue_names_the_kind(
    services, details, vendor, hostname, kind, reason
) -> None:
    assert guess(services, details, vendor, hostname) == (kind, reason)


def test_diff_of_two_scans() -> None:
    before = [
        host("10.9.0.5", [23, 80], [("telnet-cleartext", 23, "high")]),
        host("10.9.0.6", [22], []),
    ]
    after = [
        host("10.9.0.5", [80, 554], [("rtsp-no-auth", 554, "high")]),
        host("10.9.0.7", [80], []),
    ]
    diff = diff_scans(before, after)
    assert diff["hosts_up"] == ["10.9.0.7"] and diff["hosts_down"] == ["10.9.0.6"]
    assert [(d["address"], d["port"]) for d in diff["opened"]] == [("10.9.0.5", 554)]
    assert [(d["address"], d["port"]) for d in diff["closed"]] == [("10.9.0.5", 23)]
    assert [d["kind"] for d in diff["new_findings"]] == ["rtsp-no-auth"]
    assert [d["kind"] for d in diff["resolved_findings"]] == ["telnet-cleartext"]
    assert diff["changed"] and not diff_scans(after, after)["changed"]


async def test_the_loop_is_not_needed_for_alerts(world: World) -> None:
    """Inventory changes raise alerts from the engine's loop without awaiting the writer."""
    world.inventory.observe([{"kind": "host", "mac": CAMERA_MAC, "ip": "10.2.2.2"}], set())
    await asyncio.sleep(0)
    assert world.alerts()[0][:2] == ("devices", "new-device")


async def test_an_empty_inventory_learns_quietly_at_first(tmp_path: Path) -> None:
    """The devices found in the first ``learning`` are the network as it was: events, but no
    new-device alerts; later ones are news. The learning time holds across restarts."""
    writer = Writer(tmp_path / "iotsec.db", interval=0.01)
    clock = Clock()
    alerts = AlertManager(writer, EventBus(), clock=clock)
    config = DevicesConfig(learning=600)
    inventory = Inventory(config, [], writer, EventBus(), alerts, clock=clock)
    inventory.observe([{"kind": "host", "mac": "02:00:00:00:00:01", "ip": "10.1.1.1"}], set())
    clock.now += 599
    inventory.observe([{"kind": "host", "mac": "02:00:00:00:00:02", "ip": "10.1.1.2"}], set())
    inventory.flush()
    writer.flush()
    again = Inventory(config, [], writer, EventBus(), alerts, clock=clock)
    conn = connect(tmp_path / "iotsec.db", readonly=True)
    again.load(conn)
    conn.close()
    clock.now += 2
    again.observe([{"kind": "host", "mac": "02:00:00:00:00:03", "ip": "10.1.1.3"}], set())
    writer.flush()
    with sqlite3.connect(tmp_path / "iotsec.db") as db:
        titles = [t for (t,) in db.execute("SELECT title FROM alerts")]
    writer.close()
    assert len(again.devices) == 3
    assert titles == ["New device 10.1.1.3 (02:00:00:00:00:03)"]


# The camera on an IPv6 segment: its IPv4 address, its link-local address (made from its MAC),
# and a global address that is not (a DHCPv6 or privacy address).
CAMERA_IP, CAMERA_LL, CAMERA_GLOBAL = "192.168.7.50", "fe80::c256:e3ff:fe12:3456", "2001:db8:7::50"
GATEWAY_MAC, GATEWAY_IP, GATEWAY_LL = "02:00:00:00:00:01", "192.168.7.1", "fe80::1"


def camera_frames() -> dict[str, list[Any]]:
    """What the camera shows, by kind: ARP; neighbour discovery (it resolves the gateway, and
    advertises its global address); link-local traffic (an echo to the gateway)."""
    to_gateway = Ether(src=CAMERA_MAC, dst=GATEWAY_MAC)
    return {
        "arp": [
            Ether(src=CAMERA_MAC, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=CAMERA_MAC, psrc=CAMERA_IP, pdst=GATEWAY_IP)
        ],
        "ndp": [
            Ether(src=CAMERA_MAC, dst="33:33:ff:00:00:01")
            / IPv6(src=CAMERA_LL, dst="ff02::1:ff00:1", hlim=255)
            / ICMPv6ND_NS(tgt=GATEWAY_LL)
            / ICMPv6NDOptSrcLLAddr(lladdr=CAMERA_MAC),
            to_gateway
            / IPv6(src=CAMERA_LL, dst=GATEWAY_LL, hlim=255)
            / ICMPv6ND_NA(tgt=CAMERA_GLOBAL, R=0, S=1, O=1)
            / ICMPv6NDOptDstLLAddr(lladdr=CAMERA_MAC),
        ],
        "link-local": [to_gateway / IPv6(src=CAMERA_LL, dst=GATEWAY_LL) / ICMPv6EchoRequest()],
    }


def gateway_frames() -> list[Any]:
    """The gateway: its ARP answer and its own neighbour advertisement; then what it forwards
    from beyond it (a public IPv6 source), a proxy advertisement for a host behind it (override
    flag clear) and another host's advertisement it forwards: none of those is its own."""
    from_gateway = Ether(src=GATEWAY_MAC, dst=CAMERA_MAC)
    return [
        from_gateway / ARP(op=2, hwsrc=GATEWAY_MAC, psrc=GATEWAY_IP, pdst=CAMERA_IP),
        from_gateway
        / IPv6(src=GATEWAY_LL, dst=CAMERA_LL, hlim=255)
        / ICMPv6ND_NA(tgt=GATEWAY_LL, R=1, S=1, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr=GATEWAY_MAC),
        from_gateway / IPv6(src="2606:4700::1111", dst=CAMERA_GLOBAL) / UDP(sport=53, dport=5353),
        from_gateway
        / IPv6(src=GATEWAY_LL, dst=CAMERA_LL, hlim=255)
        / ICMPv6ND_NA(tgt="2001:db8:9::9", R=1, S=1, O=0)
        / ICMPv6NDOptDstLLAddr(lladdr=GATEWAY_MAC),
        from_gateway
        / IPv6(src="2001:db8:9::8", dst=CAMERA_GLOBAL, hlim=254)
        / ICMPv6ND_NA(tgt="2001:db8:9::8", S=1, O=1)
        / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:99"),
    ]


@pytest.mark.parametrize(
    "order",
    [("arp", "ndp", "link-local"), ("ndp", "link-local", "arp"), ("link-local", "ndp", "arp")],
)
def test_arp_ndp_and_link_local_traffic_are_one_device(
    world: World, order: tuple[str, ...]
) -> None:
    frames = camera_frames()
    for kind in order:  # each in a tick of its own: IPv6 before IPv4, NDP before ARP
        captured(world.inventory, frames[kind])
        world.clock.now += 1
    captured(world.inventory, gateway_frames())
    camera = world.inventory.find(CAMERA_MAC)
    assert len(world.inventory.devices) == 2
    assert set(camera.addresses) == {CAMERA_IP, CAMERA_LL, CAMERA_GLOBAL}
    assert camera.ip == CAMERA_IP
    assert {"arp", "ndp", "ip"} <= camera.seen_by
    for address in (CAMERA_IP, CAMERA_LL, CAMERA_GLOBAL):
        assert world.inventory.find(address) is camera
    gateway = world.inventory.find(GATEWAY_MAC)
    assert set(gateway.addresses) == {GATEWAY_IP, GATEWAY_LL}
    for beyond in ("2606:4700::1111", "2001:db8:9::9", "2001:db8:9::8"):
        assert world.inventory.find(beyond) is None
    assert [c["change"] for c in world.changes()].count("new") == 2
    new = [title for _, rule, title in world.alerts() if rule == "new-device"]
    assert len(new) == 2 and sum(CAMERA_MAC in title for title in new) == 1
    again = world.reloaded()
    assert len(again.devices) == 2
    assert set(again.find(CAMERA_LL).addresses) == {CAMERA_IP, CAMERA_LL, CAMERA_GLOBAL}


def test_an_address_scanned_alone_joins_its_mac_with_its_history(world: World) -> None:
    """A scan of the camera's global IPv6 address knows no MAC: a device of its own, with
    findings and alerts, until neighbour discovery shows the address is the camera's."""
    inventory = world.inventory
    first_seen = world.clock.now
    findings = [("telnet-cleartext", 23, "high"), ("rtsp-no-auth", 554, "high")]
    inventory.apply_scan(1, [host(CAMERA_GLOBAL, [23, 554], findings)], ALL_TCP)
    inventory.apply_scan(2, [host(CAMERA_GLOBAL, [554], findings[1:])], ALL_TCP)
    world.clock.now += 10
    captured(inventory, camera_frames()["arp"])
    assert len(inventory.devices) == 2
    world.clock.now += 10
    captured(inventory, camera_frames()["ndp"])
    (device,) = inventory.devices.values()
    assert device.mac == CAMERA_MAC and device.first_seen == first_seen
    assert set(device.addresses) == {CAMERA_IP, CAMERA_LL, CAMERA_GLOBAL}
    assert [s["port"] for s in device.services] == [554] and device.last_scan == 2
    assert list(device.findings) == [("rtsp-no-auth", 554, "tcp")] and device.risk == 78
    world.reloaded()
    with sqlite3.connect(world.path) as db:
        assert db.execute("SELECT id, mac FROM devices").fetchall() == [(device.id, CAMERA_MAC)]
        stored = db.execute("SELECT device_id, kind, state FROM findings ORDER BY id").fetchall()
        alerts = db.execute("SELECT rule, device, evidence FROM alerts ORDER BY id").fetchall()
    # The resolved finding is history the camera keeps.
    assert stored == [
        (device.id, "telnet-cleartext", "resolved"),
        (device.id, "rtsp-no-auth", "open"),
    ]
    # Its alerts too: each names the camera now (the scan's new device among them).
    assert [rule for rule, _, _ in alerts] == [
        "new-device",
        "telnet-cleartext 23/tcp",
        "rtsp-no-auth 554/tcp",
        "finding-resolved telnet-cleartext 23/tcp",
        "new-device",
    ]
    assert {(mac, json.loads(evidence)["device"]) for _, mac, evidence in alerts} == {
        (CAMERA_MAC, device.id)
    }


def test_a_scanned_address_made_from_a_known_mac_is_that_device(world: World) -> None:
    captured(world.inventory, camera_frames()["arp"])
    slaac = "2001:db8:7:0:c256:e3ff:fe12:3456"  # the camera's MAC, as EUI-64
    changes = world.inventory.apply_scan(1, [host(slaac, [554], [])], ALL_TCP)
    assert changes["new_devices"] == []
    (device,) = world.inventory.devices.values()
    assert set(device.addresses) == {CAMERA_IP, slaac}


def test_one_link_local_address_on_two_macs_does_not_move(world: World) -> None:
    """Routers often answer as fe80::1 on every link (or share it, VRRP): both keep it."""
    other = "02:00:00:00:00:02"
    for mac in (GATEWAY_MAC, other, GATEWAY_MAC):
        world.inventory.observe([], {(mac, GATEWAY_LL)})
    assert world.inventory.find(GATEWAY_MAC).addresses == [GATEWAY_LL]
    assert world.inventory.find(other).addresses == [GATEWAY_LL]


def test_what_an_attacker_can_use_now_outranks_certificate_hygiene(world: World) -> None:
    inventory = world.inventory
    camera = [("telnet-cleartext", 23, "high"), ("default-credentials", 23, "critical")]
    tls = ["tls-expired", "tls-self-signed", "tls-weak-key", "tls-weak-signature"]
    box = [(kind, 443, "high" if kind != "tls-self-signed" else "medium") for kind in tls]
    inventory.apply_scan(1, [host("10.9.0.5", [23], camera), host("10.9.0.7", [443], box)], ALL_TCP)
    ranked = inventory.listing()
    assert [d["ip"] for d in ranked] == ["10.9.0.5", "10.9.0.7"]
    assert ranked[0]["risk"] >= 70 > 35 > ranked[1]["risk"] > 0
    assert ranked[0]["risk_reason"] == (
        "usable by an attacker now: default-credentials; telnet-cleartext"
    )
    assert ranked[1]["risk_reason"].startswith("hygiene: tls-expired; ")
    assert inventory.find("10.9.0.5").to_json()["risk_reason"] == ranked[0]["risk_reason"]


def test_an_inferred_finding_counts_a_tier_lower_and_info_not_at_all(world: World) -> None:
    inventory = world.inventory
    inferred = host("10.9.0.5", [23], [("default-credentials", 23, "critical")])
    inferred["findings"][0]["confidence"] = "low"
    inventory.apply_scan(1, [inferred, host("10.9.0.6", [80], [("banner", 80, "info")])], ALL_TCP)
    assert 35 <= inventory.find("10.9.0.5").risk < 70
    assert inventory.find("10.9.0.5").summary()["risk_reason"].startswith("exposed: ")
    assert (
        inventory.find("10.9.0.6").risk,
        inventory.find("10.9.0.6").summary()["risk_reason"],
    ) == (0, "")
