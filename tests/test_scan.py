"""Scanning the lab's devices (real daemons in namespaces the lab made) from its gateway: the
open ports equal what ``nmap -n -sT`` reports on the same namespace, and each device's
expected findings appear with their evidence. Targets outside the scope are refused before
anything is sent. Scope parsing and port lists as plain functions."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.lab.topology import Plan
from engine.scan.ports import TOP_IOT_PORTS, PortsError, parse_ports
from engine.scan.scope import ScopeError, expand, parse_scope
from tests.conftest import ROOT, require_root, require_tool, write_config


def test_targets_are_expanded_only_inside_the_scope() -> None:
    scope = parse_scope(["192.0.2.0/24", "2001:db8::/120"])
    assert [str(a) for a in expand(["192.0.2.5-7", "192.0.2.6"], scope)] == [
        "192.0.2.5", "192.0.2.6", "192.0.2.7"]  # fmt: skip
    assert len(expand(["192.0.2.0/24"], scope)) == 254  # hosts, not network and broadcast
    assert [str(a) for a in expand(["2001:db8::1"], scope)] == ["2001:db8::1"]
    with pytest.raises(ScopeError, match=r"198\.51\.100\.1 is outside the scan scope"):
        expand(["192.0.2.1", "198.51.100.1"], scope)
    with pytest.raises(ScopeError, match="outside the scan scope"):
        expand(["192.0.2.0/23"], scope)  # half inside is outside
    with pytest.raises(ScopeError, match="names are not resolved"):
        expand(["camera.local"], scope)
    with pytest.raises(ScopeError, match=r"\[scan\] scope"):
        expand(["192.0.2.1"], [])


def test_port_lists() -> None:
    assert parse_ports("22,80,8000-8002, 80") == [22, 80, 8000, 8001, 8002]
    assert len(parse_ports("-")) == 65535
    with pytest.raises(PortsError, match="outside 1-65535"):
        parse_ports("0-10")
    with pytest.raises(PortsError, match="not a port"):
        parse_ports("ssh")


def scan_from_gateway(lab: Plan, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp_path, f'[scan]\nscope = ["{lab.lan}"]\n')
    return subprocess.run(
        ["ip", "netns", "exec", lab.gateway.netns, sys.executable, "-m", "console.cli",
         "--config", str(config), "scan", *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


def nmap_open(lab: Plan, address: str, ports: str) -> list[int]:
    done = subprocess.run(
        ["ip", "netns", "exec", lab.gateway.netns, "nmap", "-n", "-Pn", "-sT", "-T4", "-p", ports,
         "-oX", "-", address],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    tree = ET.fromstring(done.stdout)
    return sorted(int(p.get("portid")) for p in tree.iter("port")
                  if p.find("state").get("state") == "open")  # fmt: skip


def test_scan_of_the_lab_finds_what_nmap_finds_and_the_devices_weaknesses(
    lab: Plan, tmp_path: Path
) -> None:
    require_root("the lab's namespaces")
    require_tool("nmap")
    devices = {d.role: d.address for d in lab.devices}
    targets = [devices[r] for r in ("camera", "broker", "sensor", "controller", "tls", "ssh")]
    done = scan_from_gateway(lab, tmp_path, *targets, "--json")
    assert done.returncode == 0, done.stderr
    hosts = {h["address"]: h for h in json.loads(done.stdout)["hosts"]}
    assert set(hosts) == set(targets)
    ports = ",".join(map(str, TOP_IOT_PORTS))
    for address in targets:
        tcp = sorted(p["port"] for p in hosts[address]["ports"] if p["proto"] == "tcp")
        assert tcp == nmap_open(lab, address, ports), address

    def kinds(role: str) -> dict[str, dict]:
        return {f["kind"]: f for f in hosts[devices[role]]["findings"]}

    def service(role: str, port: int, proto: str = "tcp") -> dict:
        (found,) = [p for p in hosts[devices[role]]["ports"]
                    if p["port"] == port and p["proto"] == proto]  # fmt: skip
        return found

    camera = kinds("camera")
    assert "login" in camera["telnet-cleartext"]["evidence"]
    assert "Basic" in camera["http-basic-cleartext"]["evidence"]
    assert service("camera", 23)["service"] == "telnet"
    assert kinds("broker")["mqtt-anonymous"]["severity"] == "high"
    assert service("tls", 443)["service"] == "https"
    tls = kinds("tls")
    assert {"tls-expired", "tls-self-signed", "tls-weak-key"} <= set(tls)
    assert "1024" in tls["tls-weak-key"]["evidence"]
    certificate = hosts[devices["tls"]]["tls"]["443"]["certificate"]
    assert certificate["cn"] == "ipcam.local" and certificate["key_bits"] == 1024
    ssh = service("ssh", 22)
    assert ssh["service"] == "ssh" and ssh["product"] == "dropbear"
    assert "curve25519-sha256" in ssh["details"]["algorithms"]["kex"]
    assert "Modbus" in kinds("controller")["modbus-reachable"]["title"]
    sensor = kinds("sensor")
    assert "Linux sensor" in sensor["snmp-default-community"]["evidence"]
    assert "coap-exposed" in sensor
    assert service("sensor", 5683, "udp")["service"] == "coap"


def test_a_target_outside_the_scope_is_refused_before_anything_is_sent(
    lab: Plan, tmp_path: Path
) -> None:
    outside = str(ipaddress.ip_network(lab.outside).network_address + 2)
    done = scan_from_gateway(lab, tmp_path, lab.devices[0].address, outside)
    assert done.returncode == 1
    assert f"{outside} is outside the scan scope ({lab.lan})" in done.stderr


def test_default_credentials_only_when_asked(lab: Plan, tmp_path: Path) -> None:
    require_root("the lab's namespaces")
    devices = {d.role: d.address for d in lab.devices}
    camera, ssh = devices["camera"], devices["ssh"]
    quiet = scan_from_gateway(lab, tmp_path, camera, "--ports", "23,80", "--json")
    (host,) = json.loads(quiet.stdout)["hosts"]
    assert not host["default_creds_checked"]
    assert "default-credentials" not in {f["kind"] for f in host["findings"]}

    done = scan_from_gateway(lab, tmp_path, camera, ssh, "--ports", "22,23,80",
                             "--check-default-creds", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    hosts = {h["address"]: h for h in json.loads(done.stdout)["hosts"]}
    found = {f["port"]: f for f in hosts[camera]["findings"] if f["kind"] == "default-credentials"}
    # The camera's Telnet takes Mirai's first pair; its web page admin/admin.
    assert found[23]["severity"] == "critical"
    assert "root / xc3511" in found[23]["evidence"] and "Mirai" in found[23]["evidence"]
    assert "admin / admin" in found[80]["evidence"]
    # The SSH host's accounts are the machine's own: no default pair works there.
    assert hosts[ssh]["default_creds_checked"]
    assert not [f for f in hosts[ssh]["findings"] if f["kind"] == "default-credentials"]
