"""Live capture on a veth pair between two network namespaces the test makes (and removes):
what the engine and ``iotsec capture`` count equals what was sent, and without CAP_NET_RAW
capture says so while the rest of the engine keeps working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.control.protocol import ControlError
from tests.conftest import ROOT, require_root, require_tool, start_engine
from tests.test_capture_decode import pcap

SENDER, RECEIVER = "10.253.97.1", "10.253.97.2"
# The datagrams, and pings (not the port-unreachable errors the datagrams provoke).
ECHO_OR_UDP = "udp port 9999 or icmp[icmptype] == icmp-echo or icmp[icmptype] == icmp-echoreply"
DATAGRAMS, SIZE = 300, 100
# Ethernet + IPv4 + UDP headers around each datagram's payload.
FRAME = 14 + 20 + 8 + SIZE


@dataclass
class Pair:
    a: str  # sender namespace
    b: str  # receiver namespace
    veth_a: str
    veth_b: str
    mac_a: str

    def run(self, netns: str, *command: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", netns, *command], capture_output=True,
                              text=True, timeout=60, **kwargs)  # fmt: skip

    def send_udp(self, count: int = DATAGRAMS, port: int = 9999) -> None:
        code = (
            "import socket,time\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"for i in range({count}):\n"
            f"    s.sendto(bytes({SIZE}),('{RECEIVER}',{port}))\n"
            "    time.sleep(0.001) if i % 50 == 0 else None\n"
        )
        done = self.run(self.a, sys.executable, "-c", code)
        assert done.returncode == 0, done.stderr

    def ping(self, count: int = 4) -> None:
        done = self.run(self.a, "ping", "-n", "-c", str(count), "-i", "0.05", "-q", RECEIVER)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def pair() -> Iterator[Pair]:
    require_root("network namespaces and packet sockets")
    require_tool("ip")
    tag = f"{os.getpid() % 100000}"
    p = Pair(f"iotcapA{tag}", f"iotcapB{tag}", f"icA{tag}", f"icB{tag}", "")
    steps = [
        ["ip", "netns", "add", p.a], ["ip", "netns", "add", p.b],
        ["ip", "link", "add", p.veth_a, "netns", p.a, "type", "veth", "peer", "name", p.veth_b,
         "netns", p.b],
        ["ip", "-n", p.a, "addr", "add", f"{SENDER}/30", "dev", p.veth_a],
        ["ip", "-n", p.b, "addr", "add", f"{RECEIVER}/30", "dev", p.veth_b],
        ["ip", "-n", p.a, "link", "set", p.veth_a, "up"],
        ["ip", "-n", p.b, "link", "set", p.veth_b, "up"],
        ["ip", "-n", p.a, "link", "set", "lo", "up"], ["ip", "-n", p.b, "link", "set", "lo", "up"],
    ]  # fmt: skip
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=30)
        link = subprocess.run(["ip", "-n", p.a, "-j", "link", "show", p.veth_a], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
        p.mac_a = json.loads(link)[0]["address"]
        p.ping(1)  # neighbours resolved before anything is counted
        yield p
    finally:
        for netns in (p.a, p.b):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)


def test_iotsec_capture_counts_what_was_sent(pair: Pair) -> None:
    capture = subprocess.Popen(
        ["ip", "netns", "exec", pair.b, sys.executable, "-m", "console.cli", "capture",
         "--iface", pair.veth_b, "--bpf", ECHO_OR_UDP, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # python start-up and the ring being set up
        pair.send_udp()
        pair.ping(4)
        time.sleep(0.3)
    finally:
        capture.send_signal(2)
        out, err = capture.communicate(timeout=30)
    lines = [json.loads(line) for line in out.splitlines()]
    stats = lines[-1]["stats"]
    flows = lines[:-1]
    assert capture.returncode == 0, err
    (udp,) = [f for f in flows if f["proto"] == "udp"]
    assert (udp["src"], udp["dst"], udp["dport"]) == (SENDER, RECEIVER, 9999)
    assert (udp["packets_out"], udp["bytes_out"], udp["packets_in"]) == (
        DATAGRAMS,
        DATAGRAMS * FRAME,
        0,
    )
    (icmp,) = [f for f in flows if f["proto"] == "icmp"]  # an echo and its reply: one flow
    assert (icmp["packets_out"], icmp["packets_in"]) == (4, 4)
    assert stats["packets"] == DATAGRAMS + 8
    assert stats["kernel_drops"] == 0 and stats["malformed"] == 0


def test_the_engine_captures_stores_flows_and_publishes_facts(pair: Pair, tmp_path: Path) -> None:
    engine = start_engine(tmp_path, prefix=("ip", "netns", "exec", pair.b))
    try:
        with engine.client() as client, engine.client("events") as events:
            events.request("subscribe", {"topics": ["facts"]})
            status = client.request("capture.start", {"interfaces": [pair.veth_b],
                                                      "bpf": "udp port 9999 or arp"})  # fmt: skip
            assert status["state"] == "running" and status["interfaces"] == [pair.veth_b]
            pair.send_udp()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                rows = client.request("traffic.flows", {"filter": "udp and port 9999"})["rows"]
                if rows and rows[0]["packets"] == DATAGRAMS:
                    break
                time.sleep(0.2)
            (row,) = rows
            assert (row["src"], row["dst"], row["bytes"], row["app"]) == (
                SENDER, RECEIVER, DATAGRAMS * FRAME, "udp",
            )  # fmt: skip
            packets = client.request("traffic.packets", {"flow": row["key"], "limit": 10})
            assert len(packets) == 10 and packets[-1]["length"] == FRAME
            detail = client.request("traffic.packet", {"id": packets[-1]["id"]})
            assert [layer["name"] for layer in detail["layers"]][:3] == ["Ethernet", "IP", "UDP"]
            facts = _facts_until(events, lambda f: f["kind"] == "host" and f["ip"] == SENDER)
            assert facts["mac"] == pair.mac_a and facts["iface"] == pair.veth_b
            stopped = client.request("capture.stop")
            assert stopped["state"] == "stopped" and stopped["packets"] >= DATAGRAMS
            assert stopped["kernel_drops"] == 0
    finally:
        assert engine.stop() == 0
    import sqlite3

    with sqlite3.connect(engine.db) as db:
        stored = db.execute("SELECT src, dst, dport, packets, bytes FROM flows WHERE proto = 'udp'"
                            ).fetchall()  # fmt: skip
    assert stored == [(SENDER, RECEIVER, 9999, DATAGRAMS, DATAGRAMS * FRAME)]


def _facts_until(client, match) -> dict:
    while True:  # the client's timeout ends the wait
        message = client.next_event()
        for fact in message["data"]:
            if match(fact):
                return fact


def test_without_cap_net_raw_capture_says_so_and_the_engine_goes_on(tmp_path: Path) -> None:
    require_root("to drop the capability")
    drop = ("setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw")
    engine = start_engine(tmp_path, '[capture]\ninterfaces = ["lo"]\n', prefix=drop)
    try:
        with engine.client() as client:
            status = client.request("capture.status")
            assert status["state"] == "unavailable" and "CAP_NET_RAW" in status["reason"]
            with pytest.raises(ControlError, match="CAP_NET_RAW") as refused:
                client.request("capture.start", {"interfaces": ["lo"]})
            assert refused.value.code == "capture_unavailable"
            assert client.request("status")["parts"]["capture"] == "unavailable"
            replayed = client.request("capture.replay", {"path": str(pcap("zeek_mqtt.pcap"))})
            assert replayed["protocols"] == {"mqtt": 19}
    finally:
        assert engine.stop() == 0
    cli = subprocess.run([*drop, sys.executable, "-m", "console.cli", "capture", "--iface", "lo"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert cli.returncode == 1
    assert "needs CAP_NET_RAW" in cli.stderr and "setcap" in cli.stderr
