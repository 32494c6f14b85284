"""Flows from the real captures agree with tshark's conversations; timeouts and eviction."""

from __future__ import annotations

import math
import re
import subprocess

import pytest

from engine.capture.decode import TCP, UDP, Decoder, Packet
from engine.capture.flows import FlowTable
from engine.capture.pcapfile import read_frames
from tests.conftest import require_tool
from tests.test_capture_decode import COUNTS, pcap

CONVERSATION = re.compile(r"^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+\S+\s+\S+\s+(\d+)\s+\S+\s+\S+\s+(\d+)\s")


def tshark_conversations(path) -> set[tuple[frozenset[str], int]]:
    tshark = require_tool("tshark")
    # Wireshark's SNMP dissector files each response under a conversation of its own; for
    # transport conversations (request and response together, as Zeek counts) it is turned off.
    out = subprocess.run(
        [tshark, "-n", "-q", "--disable-protocol", "snmp", "-z", "conv,tcp", "-z", "conv,udp",
         "-r", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    found = set()
    for line in out.splitlines():
        if match := CONVERSATION.match(line):
            found.add((frozenset({match[1], match[2]}), int(match[5])))
    return found


def endpoint(address: str, port: int) -> str:
    return f"{address}:{port}"


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_flows_match_tshark_conversations(name: str) -> None:
    path = pcap(name)
    table = FlowTable(idle_timeout=math.inf, active_timeout=math.inf)
    decoder = Decoder()
    for frame in read_frames(path):
        packet = decoder.decode(frame.data, frame.linktype, frame.ts, frame.wire_length)
        if packet is not None and packet.proto in (TCP, UDP):
            table.add(packet)
    ours = {
        (frozenset({endpoint(f.src, f.sport), endpoint(f.dst, f.dport)}), f.packets)
        for f in table.drain()
    }
    assert ours == tshark_conversations(path)


def test_the_initiator_and_tcp_state() -> None:
    table = FlowTable()
    decoder = Decoder()
    for frame in read_frames(pcap("sv_telnet_ppa.pcap")):
        packet = decoder.decode(frame.data, frame.linktype, frame.ts, frame.wire_length)
        if packet is not None:
            table.add(packet)
    (flow,) = table.drain()
    assert flow.dport == 23 and flow.packets == 92
    assert flow.packets_out > 0 and flow.packets_in > 0
    assert flow.state in ("SF", "FIN")


def synthetic(ts: float, sport: int) -> Packet:
    packet = Packet(ts, 100)
    packet.ip_version, packet.proto = 4, UDP
    packet.src, packet.dst, packet.sport, packet.dport = "10.0.0.1", "10.0.0.2", sport, 53
    return packet


def test_idle_and_active_timeouts_and_eviction() -> None:
    table = FlowTable(max_flows=2, idle_timeout=10, active_timeout=100)
    first, _ = table.add(synthetic(0, 1000))
    again, ended = table.add(synthetic(5, 1000))
    assert again is first and not ended
    later, ended = table.add(synthetic(20, 1000))  # idle for 15 s: a new flow
    assert later is not first and ended == [first]
    for t in range(21, 140, 9):  # never idle, but open for more than 100 s: sliced
        _, ended = table.add(synthetic(t, 1000))
        if ended:
            break
    assert ended and ended[0].start == 20
    table.add(synthetic(141, 2000))
    table.add(synthetic(142, 3000))  # a third flow in a table of two: the oldest goes
    assert table.evicted == 1 and len(table) == 2
    assert [f.sport for f in table.expire(200)] == [2000, 3000]
