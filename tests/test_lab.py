"""The lab's network: namespaces joined through a gateway, reachable inside, invisible outside."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from engine.config import LabConfig
from engine.lab import topology
from engine.lab.topology import LabError, Plan
from tests.conftest import IN_CI, require_tool

# Not the default prefix and ranges, so the tests never touch a lab a user brought up.
TEST_LAB = LabConfig(prefix="iotst", lan="10.253.17.0/24", outside="10.253.18.0/24")


def require_root() -> None:
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the lab needs root to create network namespaces")
        pytest.skip("the lab needs root to create network namespaces")


@pytest.fixture(scope="session")
def lab() -> Iterator[Plan]:
    """The lab's network for the whole session, removed at the end even after failures."""
    require_root()
    require_tool("ip")
    try:
        yield topology.up(TEST_LAB)
    finally:
        topology.down(TEST_LAB)


def ping(netns: str, address: str) -> bool:
    require_tool("ping")
    return topology.in_netns(netns, "ping", "-n", "-c", "1", "-W", "2", address).returncode == 0


def routes(netns: str | None) -> list[dict]:
    return json.loads(topology.ip("-j", "route", "show", netns=netns) or "[]")


def test_the_gateway_reaches_every_device_and_the_outside(lab: Plan) -> None:
    for host in [*lab.devices, lab.attacker]:
        assert ping(lab.gateway.netns, host.address), f"{host.role} at {host.address}"


def test_the_outside_reaches_devices_only_through_the_gateway(lab: Plan) -> None:
    camera = lab.devices[0]
    assert ping(lab.attacker.netns, camera.address)
    trace = topology.in_netns(lab.attacker.netns, "ip", "route", "get", camera.address).stdout
    assert f"via {lab.outside_address(topology.GATEWAY_HOST)}" in trace


def test_nothing_of_the_lab_is_in_the_host_namespace(lab: Plan) -> None:
    lab_nets = (lab.lan, lab.outside)
    for link in json.loads(topology.ip("-j", "addr", "show") or "[]"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet":
                assert not any(ipaddress.ip_address(addr["local"]) in n for n in lab_nets), link
    for route in routes(None):
        if route["dst"] != "default":
            net = ipaddress.ip_network(route["dst"], strict=False)
            assert not any(net.overlaps(n) for n in lab_nets), route
    names = {link["ifname"] for link in json.loads(topology.ip("-j", "link", "show") or "[]")}
    assert not {"br0", "ext0", "lan0"} & names and not any(n.startswith("p-") for n in names)


def test_no_lab_namespace_routes_beyond_the_lab(lab: Plan) -> None:
    for netns in lab.namespaces:
        for route in routes(netns):
            assert route["dst"] != "default", f"{netns} has a default route"
            net = ipaddress.ip_network(route["dst"], strict=False)
            assert net.subnet_of(lab.lan) or net.subnet_of(lab.outside), (netns, route)


def test_up_again_is_harmless_and_repairs_a_half_made_lab(lab: Plan) -> None:
    before = topology.status(TEST_LAB)
    started = time.monotonic()
    topology.up(TEST_LAB)
    assert time.monotonic() - started < 2
    assert topology.status(TEST_LAB) == before
    topology.ip("netns", "del", lab.devices[-1].netns)  # as if an earlier `up` had crashed
    assert not topology.status(TEST_LAB)["up"]
    topology.up(TEST_LAB)
    assert topology.status(TEST_LAB)["up"]
    assert ping(lab.gateway.netns, lab.devices[-1].address)


def test_down_leaves_no_namespace_link_or_process() -> None:
    require_root()
    config = LabConfig(prefix="iotdn", lan="10.253.27.0/24", outside="10.253.28.0/24")
    plan = topology.up(config)
    try:
        sleeper = subprocess.Popen(["ip", "netns", "exec", plan.devices[0].netns, "sleep", "600"])
        time.sleep(0.2)
        started = time.monotonic()
        removed = topology.down(config)
        assert time.monotonic() - started <= 5
        assert sorted(removed) == sorted(plan.namespaces)
        assert sleeper.wait(timeout=5) != 0
        assert topology.existing_namespaces("iotdn") == []
        assert topology.down(config) == []  # and again: nothing left to do
    finally:
        topology.down(config)


def test_bad_lab_config_is_refused() -> None:
    for bad, message in [
        (LabConfig(lan="8.8.8.0/24"), "expected a private range"),
        (LabConfig(lan="10.253.7.0/24", outside="10.253.0.0/16"), "overlap"),
        (LabConfig(prefix="bad prefix"), "up to 8 letters"),
    ]:
        with pytest.raises(LabError, match=message):
            Plan.from_config(bad)


def test_refuses_without_root() -> None:
    require_root()  # to become someone else
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setuid(65534)
            topology.up(TEST_LAB)
        except LabError as exc:
            code = 0 if "needs root" in str(exc) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
