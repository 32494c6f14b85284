"""Which device an address belongs to when the capture runs on a router's two interfaces: an
address is learnt from ARP, neighbour discovery, DHCP or a frame on the segment of its own
network; a router's MAC never takes the addresses it forwards; this box is never a device; and
our own scans' traffic raises no alert, only a count on the scan."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from engine.capture.pipeline import Pipeline
from engine.model import AlertEvent, Severity
from engine.scan.own import OwnScans, source_addresses
from engine.thisbox import Interface, networks_by_interface
from tests.test_devices import World, feed, world  # noqa: F401 - the fixture

GW_LAN, GW_EXT = "02:00:00:00:07:01", "02:00:00:00:08:01"
CAMERA_MAC, SENSOR_MAC, OUTSIDE_MAC = "c0:56:e3:00:07:0a", "02:00:00:00:07:0f", "02:00:00:00:08:02"
CAMERA, SENSOR, OUTSIDE = "10.253.7.10", "10.253.7.15", "10.253.8.2"
THIS_BOX = [
    Interface(
        "lan0",
        GW_LAN,
        (ipaddress.ip_interface("10.253.7.1/24"), ipaddress.ip_interface("fe80::7:1/64")),
    ),
    Interface(
        "ext0",
        GW_EXT,
        (ipaddress.ip_interface("10.253.8.1/24"), ipaddress.ip_interface("fe80::8:1/64")),
    ),
]


def routed_traffic() -> list[tuple[str, Any]]:
    """(interface, frame): the outside host attacks the camera through the gateway, the camera
    and the sensor answer and talk out; the gateway's own ARP and router advertisements."""
    telnet = TCP(sport=40000, dport=23, flags="S")
    answer = TCP(sport=23, dport=40000, flags="SA")
    return [
        ("ext0", Ether(src=OUTSIDE_MAC, dst=GW_EXT) / IP(src=OUTSIDE, dst=CAMERA) / telnet),
        ("lan0", Ether(src=GW_LAN, dst=CAMERA_MAC) / IP(src=OUTSIDE, dst=CAMERA) / telnet),
        ("lan0", Ether(src=CAMERA_MAC, dst=GW_LAN) / IP(src=CAMERA, dst=OUTSIDE) / answer),
        ("ext0", Ether(src=GW_EXT, dst=OUTSIDE_MAC) / IP(src=CAMERA, dst=OUTSIDE) / answer),
        (
            "lan0",
            Ether(src=SENSOR_MAC, dst=GW_LAN)
            / IP(src=SENSOR, dst=OUTSIDE)
            / UDP(sport=5000, dport=1883),
        ),
        (
            "ext0",
            Ether(src=GW_EXT, dst=OUTSIDE_MAC)
            / IP(src=SENSOR, dst=OUTSIDE)
            / UDP(sport=5000, dport=1883),
        ),
        (
            "lan0",
            Ether(src=GW_LAN, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=GW_LAN, psrc="10.253.7.1", pdst=CAMERA),
        ),
        (
            "ext0",
            Ether(src=GW_EXT, dst="33:33:00:00:00:01")
            / IPv6(src="fe80::8:1", dst="ff02::1", hlim=255)
            / ICMPv6ND_RA()
            / ICMPv6NDOptSrcLLAddr(lladdr=GW_EXT),
        ),
    ]


def captured_on_two(world: World) -> None:  # noqa: F811
    pipeline = Pipeline(facts=True)
    pipeline.set_links(networks_by_interface(THIS_BOX))
    for n, (iface, frame) in enumerate(routed_traffic()):
        data = bytes(frame)
        pipeline.feed(1.0 + n, 1, data, len(data), iface)
    feed(world.inventory, pipeline)


def test_a_router_mac_never_takes_the_addresses_it_forwards(world: World) -> None:  # noqa: F811
    """The engine on the router: each host is the device of its own MAC, found by its
    address; the router's interfaces are this box, with their own addresses only."""
    world.inventory.know_this_box(THIS_BOX)
    captured_on_two(world)
    inventory = world.inventory
    by_mac = {d.mac: d for d in inventory.devices.values()}
    assert set(by_mac) == {CAMERA_MAC, SENSOR_MAC, OUTSIDE_MAC, GW_LAN, GW_EXT}
    assert by_mac[CAMERA_MAC].addresses == [CAMERA]
    assert by_mac[SENSOR_MAC].addresses == [SENSOR]
    assert by_mac[OUTSIDE_MAC].addresses == [OUTSIDE]
    assert by_mac[GW_LAN].addresses == ["10.253.7.1"]
    assert by_mac[GW_EXT].addresses == ["fe80::8:1"]
    assert inventory.find(CAMERA) is by_mac[CAMERA_MAC]
    listed = {d["mac"]: d["this_box"] for d in inventory.listing()}
    assert listed == {CAMERA_MAC: False, SENSOR_MAC: False, OUTSIDE_MAC: False,
                      GW_LAN: True, GW_EXT: True}  # fmt: skip
    titles = [title for _, rule, title in world.alerts() if rule == "new-device"]
    assert len(titles) == 3
    for ip, mac in ((CAMERA, CAMERA_MAC), (SENSOR, SENSOR_MAC), (OUTSIDE, OUTSIDE_MAC)):
        assert sum(t.startswith(f"New device {ip} ({mac}") for t in titles) == 1


def test_another_router_keeps_only_its_own_addresses(world: World) -> None:  # noqa: F811
    """The same traffic seen by a box that is not the router: its MACs are devices, each with
    the addresses it has on its segment, none of those it forwards."""
    captured_on_two(world)
    inventory = world.inventory
    by_mac = {d.mac: d for d in inventory.devices.values()}
    assert set(by_mac) == {CAMERA_MAC, SENSOR_MAC, OUTSIDE_MAC, GW_LAN, GW_EXT}
    assert by_mac[GW_LAN].addresses == ["10.253.7.1"]
    assert by_mac[GW_EXT].addresses == ["fe80::8:1"]
    assert by_mac[CAMERA_MAC].addresses == [CAMERA]
    assert inventory.find(SENSOR) is by_mac[SENSOR_MAC]


def test_our_scans_traffic_is_counted_not_alerted() -> None:
    own = OwnScans(grace=5.0)
    now = time.time()
    own.begin(1, ["10.253.7.1"], [ipaddress.ip_address(CAMERA)], now)

    def event(src: str, dst: str, ts: float) -> AlertEvent:
        return AlertEvent(Severity.HIGH, "rules", "2001", "telnet login", src=src, dst=dst, ts=ts)

    assert own.suppress(event("10.253.7.1", CAMERA, now + 1))  # our probe
    assert own.suppress(event(CAMERA, "10.253.7.1", now + 2))  # its answer
    assert not own.suppress(event(OUTSIDE, CAMERA, now + 1))  # someone else's
    assert not own.suppress(event("10.253.7.1", SENSOR, now + 1))  # not a target
    assert own.quiet(CAMERA) and not own.quiet(SENSOR)
    own.end(1, now + 3)
    assert own.suppress(event(CAMERA, "10.253.7.1", now + 7))  # a late answer, in the grace
    assert not own.suppress(event(CAMERA, "10.253.7.1", now + 9))  # past it
    assert own.expire(now + 4) == []
    [over] = own.expire(now + 9)
    assert over.scan_id == 1 and over.suppressed == 3
    assert not own.quiet(CAMERA)


def test_a_scan_leaves_from_the_address_its_route_chooses() -> None:
    assert source_addresses([ipaddress.ip_address("127.0.0.7")]) == {"127.0.0.1"}
