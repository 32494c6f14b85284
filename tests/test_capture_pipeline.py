"""The capture pipeline end to end on hostile input, the packet ring's bounds, and the display
filter's language."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from engine.capture.filter import FilterError, parse_filter
from engine.capture.pcapfile import read_frames
from engine.capture.pipeline import Pipeline
from engine.capture.ring import OVERHEAD, PacketRing
from tests.test_capture_decode import COUNTS, pcap


def test_truncated_real_frames_and_random_frames_never_escape() -> None:
    pipeline = Pipeline(max_flows=1000)
    frames = [f for name in sorted(COUNTS) for f in read_frames(pcap(name))]
    for frame in frames:
        for cut in range(len(frame.data)):
            pipeline.feed(frame.ts, frame.linktype, frame.data[:cut], frame.wire_length, "fuzz")
    truncated_malformed = pipeline.malformed
    assert truncated_malformed > len(frames)  # most cuts break a header
    rng = random.Random(11)
    templates = [f.data for f in frames]
    for n in range(20_000):
        if n % 2:
            data = rng.randbytes(rng.randrange(0, 200))
        else:  # a real frame with random bytes overwritten: reaches the protocol parsers
            data = bytearray(rng.choice(templates))
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        pipeline.feed(float(n), rng.choice((1, 101, 113, 276, 0)), data, len(data), "fuzz")
    assert pipeline.malformed > truncated_malformed
    pipeline.finish()
    assert pipeline.frames == sum(len(f.data) for f in frames) + 20_000


def test_the_ring_is_bounded_by_bytes_and_ids_stay_valid() -> None:
    ring = PacketRing(capacity=10 * (100 + OVERHEAD))
    ids = [ring.add(float(i), 1, bytes(100), 100, "eth0", (6, "a", 1, "b", 2)) for i in range(25)]
    assert len(ring) == 10 and ring.size <= ring.capacity
    assert ring.get(ids[0]) is None and ring.get(ids[-1]).ts == 24.0
    assert [p.id for p in ring.select(lambda p: p.ts % 2 == 0, limit=3)] == ids[20:25:2]


ITEM = SimpleNamespace(src="10.0.0.5", sport=51000, dst="10.0.0.11", dport=1883, proto=6,
                       app="mqtt")  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True), ("mqtt", True), ("tcp", True), ("udp", False), ("host 10.0.0.11", True),
        ("src host 10.0.0.11", False), ("dst host 10.0.0.11", True), ("port 1883", True),
        ("src port 1883", False), ("net 10.0.0.0/24", True), ("not mqtt", False),
        ("mqtt and (port 23 or port 1883)", True), ("http || ! tcp", False),
        ("ip", True), ("ip6", False), ("HOST 10.0.0.5 AND MQTT", True),
    ],
)  # fmt: skip
def test_filter_terms(text: str, expected: bool) -> None:
    assert parse_filter(text).matches(ITEM) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqt", "unknown word 'mqt' at column 1"),
        ("host 10.0.0.300", "'10.0.0.300' at column 6 is not an IP address"),
        ("port 70000", "'70000' at column 6 is not a port number"),
        ("net 10.0.0.0/33", "is not a network"),
        ("(mqtt", "expected ')'"),
        ("mqtt tcp", "unexpected 'tcp' at column 6"),
        ("src mqtt", "expected 'host', 'port' or 'net' after 'src' at column 5"),
        ("mqtt and", "filter ends early"),
    ],
)  # fmt: skip
def test_filter_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_filter(text)
