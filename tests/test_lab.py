"""The lab's network: namespaces joined through a gateway, reachable inside, invisible outside."""

from __future__ import annotations

import ipaddress
import json
import os
import select
import subprocess
import time
import tty
from pathlib import Path

import pytest

from engine.config import LabConfig
from engine.lab import devices, lifecycle, packages, processes, topology
from engine.lab.topology import LabError, Plan
from tests.conftest import TEST_LAB, probe, require_root, require_tool


def ping(netns: str, address: str) -> bool:
    require_tool("ping")
    return topology.in_netns(netns, "ping", "-n", "-c", "1", "-W", "2", address).returncode == 0


def routes(netns: str | None) -> list[dict]:
    return json.loads(topology.ip("-j", "route", "show", netns=netns) or "[]")


def test_the_gateway_reaches_every_device_and_the_outside(lab_network: Plan) -> None:
    lab = lab_network
    for host in [*lab.devices, lab.attacker]:
        assert ping(lab.gateway.netns, host.address), f"{host.role} at {host.address}"


def test_the_outside_reaches_devices_only_through_the_gateway(lab_network: Plan) -> None:
    lab = lab_network
    camera = lab.devices[0]
    assert ping(lab.attacker.netns, camera.address)
    trace = topology.in_netns(lab.attacker.netns, "ip", "route", "get", camera.address).stdout
    assert f"via {lab.outside_address(topology.GATEWAY_HOST)}" in trace


def test_nothing_of_the_lab_is_in_the_host_namespace(lab_network: Plan) -> None:
    lab = lab_network
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


def test_no_lab_namespace_routes_beyond_the_lab(lab_network: Plan) -> None:
    lab = lab_network
    for netns in lab.namespaces:
        for route in routes(netns):
            assert route["dst"] != "default", f"{netns} has a default route"
            net = ipaddress.ip_network(route["dst"], strict=False)
            assert net.subnet_of(lab.lan) or net.subnet_of(lab.outside), (netns, route)


def test_up_again_is_harmless_and_repairs_a_half_made_lab(lab: Plan) -> None:
    camera = lab.devices[0]
    pids = topology.ip("netns", "pids", camera.netns).split()
    started = time.monotonic()
    lifecycle.up(TEST_LAB)
    assert time.monotonic() - started < 2
    assert topology.ip("netns", "pids", camera.netns).split() == pids, "restarted for nothing"
    topology.ip("netns", "del", lab.devices[-1].netns)  # as if an earlier `up` had crashed
    assert not lifecycle.status(TEST_LAB)["up"]
    lifecycle.up(TEST_LAB)
    assert lifecycle.status(TEST_LAB)["up"]
    assert ping(lab.gateway.netns, lab.devices[-1].address)
    assert all(devices.listening(d) for d in lab.devices)


def test_down_leaves_no_namespace_link_or_process() -> None:
    require_root("the lab creates network namespaces")
    config = LabConfig(prefix="iotdn", lan="10.253.27.0/24", outside="10.253.28.0/24")
    plan = lifecycle.up(config)
    try:
        sleeper = subprocess.Popen(["ip", "netns", "exec", plan.devices[0].netns, "sleep", "600"])
        time.sleep(0.2)
        started = time.monotonic()
        removed = lifecycle.down(config)
        assert time.monotonic() - started <= 5
        assert sorted(removed) == sorted(plan.namespaces)
        assert not processes.alive(sleeper.pid)
        assert topology.existing_namespaces("iotdn") == []
        assert not devices.state_dir(plan).exists()
        assert "/iotdn/" not in Path("/proc/self/mounts").read_text()
        assert lifecycle.down(config) == []  # and again: nothing left to do
    finally:
        lifecycle.down(config)


def test_bad_lab_config_is_refused() -> None:
    for bad, message in [
        (LabConfig(lan="8.8.8.0/24"), "expected a private range"),
        (LabConfig(lan="10.253.7.0/24", outside="10.253.0.0/16"), "overlap"),
        (LabConfig(prefix="bad prefix"), "up to 8 letters"),
    ]:
        with pytest.raises(LabError, match=message):
            Plan.from_config(bad)


def test_refuses_without_root() -> None:
    require_root("to become someone else")
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


def test_the_camera_takes_the_default_root_password_on_telnet(lab: Plan) -> None:
    camera = lab.devices[0]
    # BusyBox login waits a few seconds before it says no.
    wrong = probe(lab, "telnet", camera.address, "--password", "admin", "--wait", "5")
    assert "login:" in wrong["banner"] and "Password:" in wrong["prompt"]
    assert "Login incorrect" in wrong["after_login"]
    right = probe(lab, "telnet", camera.address, "--password", devices.CAMERA_ROOT_PASSWORD)
    assert "BusyBox" in right["after_login"]
    assert "uid=0(root)" in right["output"]


def test_the_camera_web_page_wants_admin_admin(lab: Plan) -> None:
    camera = lab.devices[0]
    refused = probe(lab, "http", camera.address)
    assert refused["status"] == 401 and refused["realm"].startswith("Basic")
    assert probe(lab, "http", camera.address, "--user", "admin", "--password", "x")["status"] == 401
    page = probe(lab, "http", camera.address, "--user", "admin", "--password", "admin")
    assert page["status"] == 200 and "NETSurveillance" in page["body"]


def host(lab: Plan, role: str):
    return next(d for d in lab.devices if d.role == role)


def test_the_broker_accepts_anonymous_clients(lab: Plan) -> None:
    connack = probe(lab, "mqtt", host(lab, "broker").address)
    assert connack == {"packet_type": 2, "return_code": 0}


def test_telemetry_flows_every_second(lab: Plan) -> None:
    log = devices.state_dir(lab) / "telemetry.log"
    before = log.read_text().count("telemetry/sensor-01/temperature")
    time.sleep(2.5)
    after = log.read_text().count("telemetry/sensor-01/temperature")
    assert after - before >= 2


def test_the_tls_device_shows_an_expired_self_signed_certificate(lab: Plan) -> None:
    cert = probe(lab, "tls", host(lab, "tls").address)
    assert cert["subject"] == cert["issuer"]
    assert cert["not_after"] < time.time()
    assert cert["key_bits"] == 1024


def test_the_ssh_device_is_dropbear(lab: Plan) -> None:
    assert probe(lab, "banner", host(lab, "ssh").address)["banner"].startswith("SSH-2.0-dropbear")


def test_the_sensor_answers_coap_discovery(lab: Plan) -> None:
    reply = probe(lab, "coap", host(lab, "sensor").address)
    assert reply["code"].startswith("2.05")
    assert "</sensors/temperature>" in reply["payload"]


def test_the_sensor_answers_snmp_with_community_public_only(lab: Plan) -> None:
    sensor = host(lab, "sensor").address
    reply = probe(lab, "snmp", sensor)
    assert reply["returncode"] == 0 and "IoT sensor firmware" in reply["sysdescr"]
    assert probe(lab, "snmp", sensor, "--community", "private")["returncode"] != 0


def test_the_controller_serves_modbus_and_is_polled(lab: Plan) -> None:
    assert probe(lab, "modbus", host(lab, "controller").address)["registers"][:2] == [215, 220]
    log = devices.state_dir(lab) / "hmi.log"
    deadline = time.monotonic() + 6
    while "read [215, 220" not in log.read_text():
        assert time.monotonic() < deadline, "the HMI never read the controller"
        time.sleep(0.2)


class SerialConsole:
    """The technician's end of the lab's serial line."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def read_until(self, text: str, timeout: float = 5.0) -> str:
        seen = ""
        deadline = time.monotonic() + timeout
        while text not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never came; got {seen[-300:]!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                seen += os.read(self.fd, 4096).decode(errors="replace")
        return seen

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def close(self) -> None:
        os.close(self.fd)


def test_the_serial_device_boots_into_a_root_shell(lab: Plan) -> None:
    devices.unplug_serial(lab)
    console = SerialConsole(devices.plug_serial(lab))
    try:
        boot = console.read_until("/ # ")
        assert "U-Boot 2014.04" in boot and "Hit any key to stop autoboot" in boot
        assert "BusyBox v1.20.2" in boot and "login:" not in boot
        console.send("id")
        assert "uid=0(root)" in console.read_until("/ # ")
    finally:
        console.close()


def test_a_key_during_the_countdown_stops_in_u_boot(lab: Plan) -> None:
    devices.unplug_serial(lab)
    console = SerialConsole(devices.plug_serial(lab))
    try:
        console.read_until("autoboot: ")
        console.send("")
        console.read_until("XM530 # ")
        console.send("printenv")
        env = console.read_until("XM530 # ")
        assert "bootargs=" in env and "mtdparts=" in env
        console.send("boot")
        console.read_until("Starting kernel")
    finally:
        console.close()


def test_unplug_and_replug(lab: Plan) -> None:
    path = devices.serial_path(lab)
    devices.unplug_serial(lab)
    assert not path.exists()
    assert lifecycle.status(TEST_LAB)["serial"] is None
    devices.plug_serial(lab)
    console = SerialConsole(path)
    try:
        assert "U-Boot" in console.read_until("/ # ")
    finally:
        console.close()


def test_missing_packages_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine with none of the lab's programs
    needed = packages.missing()
    assert {"mosquitto", "snmpd", "dropbear-bin", "socat", "nmap", "busybox-static"} <= set(needed)
