"""Each lab scenario sends the traffic it promises (counted with tcpdump -n in the gateway's
namespace, where the engine captures) and ends within its time bound."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.lab import devices, scenarios
from engine.lab.topology import Plan
from tests.conftest import require_tool


@contextmanager
def capture(lab: Plan, bpf: str, directory: Path) -> Iterator[list[int]]:
    """Count the packets matching ``bpf`` on the gateway's LAN side while the block runs."""
    tcpdump = require_tool("tcpdump")
    pcap = directory / "capture.pcap"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.gateway.netns, tcpdump, "-n", "--immediate-mode",
         "-i", "lan0", "-U", "-w", str(pcap), bpf],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening on" in line, line
    counted: list[int] = []
    try:
        yield counted
    finally:
        time.sleep(0.5)  # let tcpdump read what is still on its way before it stops
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)
    read = subprocess.run([tcpdump, "-n", "-r", str(pcap)], capture_output=True, text=True)
    counted.append(len(read.stdout.splitlines()))


def syns_from_outside(lab: Plan, ports: str) -> str:
    return f"src host {lab.attacker.address} and tcp[tcpflags] == tcp-syn and ({ports})"


def test_normal_sends_dns_mdns_and_ssdp(lab: Plan, tmp_path: Path) -> None:
    with capture(lab, "udp port 53 or udp port 5353 or udp port 1900", tmp_path) as counted:
        result = scenarios.run(lab, "normal")
    assert counted[0] >= 27 and result["packets"] >= 27
    assert result["elapsed"] <= 15


def test_bruteforce_guesses_telnet_and_ssh_from_outside(lab: Plan, tmp_path: Path) -> None:
    bpf = syns_from_outside(lab, "dst port 23 or dst port 22")
    with capture(lab, bpf, tmp_path) as counted:
        result = scenarios.run(lab, "bruteforce")
    attempts = result["telnet_attempts"] + result["ssh_attempts"]
    assert attempts == len(scenarios.BRUTEFORCE_PASSWORDS) + 4
    assert counted[0] >= attempts
    assert result["elapsed"] <= scenarios.SCENARIO_SECONDS
    # lines the log-watch part can read, on both devices
    ssh_log = (devices.state_dir(lab) / "ssh.log").read_text()
    assert f"from <{lab.attacker.address}:" in ssh_log
    camera_log = devices.state_dir(lab) / "camera" / "var" / "log" / "messages"
    assert camera_log.read_text().count("invalid password for 'root'") >= 3


def test_scan_probes_many_ports_of_many_hosts(lab: Plan, tmp_path: Path) -> None:
    with capture(lab, f"src host {lab.attacker.address}", tmp_path) as counted:
        result = scenarios.run(lab, "scan")
    assert counted[0] >= 6 * 10, "a scan touches every device on many ports"
    assert result["open_ports"] >= 6
    assert result["elapsed"] <= scenarios.SCENARIO_SECONDS


def test_mirai_probes_23_and_2323_everywhere(lab: Plan, tmp_path: Path) -> None:
    with capture(lab, syns_from_outside(lab, "dst port 23 or dst port 2323"), tmp_path) as counted:
        result = scenarios.run(lab, "mirai")
    assert counted[0] >= len(lab.devices) * 2
    assert result["elapsed"] <= scenarios.SCENARIO_SECONDS


def test_modbus_write_comes_from_an_unexpected_host(lab: Plan, tmp_path: Path) -> None:
    # Modbus function code 6 (write single register) right after the 7-byte MBAP header.
    bpf = (f"src host {lab.attacker.address} and tcp dst port 502"
           " and tcp[((tcp[12] & 0xf0) >> 2) + 7] == 6")  # fmt: skip
    with capture(lab, bpf, tmp_path) as counted:
        result = scenarios.run(lab, "modbus-write")
    assert counted[0] == 1 and result["error"] is False
