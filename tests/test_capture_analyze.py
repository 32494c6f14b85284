"""``iotsec analyze``: the JSON contract, counts equal to tshark's, slices saved as pcap files
that tshark reads back, damaged and truncated input, and real-time replay."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.capture.analyze import analyze
from engine.capture.decode import LINK_ETHERNET, LINK_RAW
from engine.capture.flows import Flow
from engine.capture.pcapfile import read_frames
from engine.capture.pcapwrite import PcapngWriter, PcapWriter
from tests.conftest import ROOT, require_tool
from tests.test_capture_decode import COUNTS, pcap
from tests.test_capture_flows import endpoint, tshark_conversations


def iotsec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)  # fmt: skip


def analyze_json(*args: str) -> dict:
    done = iotsec("analyze", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def tshark_fields(path: Path, *fields: str, display: str = "") -> list[list[str]]:
    tshark = require_tool("tshark")
    command = [tshark, "-n", "-r", str(path), "-T", "fields"]
    for name in fields:
        command += ["-e", name]
    if display:
        command += ["-Y", display]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_packets_bytes_and_flows_equal_tsharks(name: str) -> None:
    path = pcap(name)
    summary = analyze_json("--flows", str(path))
    lengths = [int(row[0]) for row in tshark_fields(path, "frame.len")]
    assert summary["packets"] == len(lengths) == COUNTS[name]
    assert summary["bytes"] == sum(lengths)
    assert summary["malformed"] == 0
    assert sum(summary["protocols"].values()) == summary["packets"]
    transport = {
        (frozenset({endpoint(f["src"], f["sport"]), endpoint(f["dst"], f["dport"])}), f["packets"])
        for f in summary["flow_list"]
        if f["proto"] in ("tcp", "udp")
    }
    assert transport == tshark_conversations(path)
    assert summary["flows"] == len(summary["flow_list"])


def test_the_json_contract() -> None:
    summary = analyze_json(str(pcap("sv_modbus.pcap")))
    for key, kind in [("packets", int), ("bytes", int), ("flows", int), ("malformed", int),
                      ("protocols", dict), ("duration", float), ("top_talkers", list)]:  # fmt: skip
        assert isinstance(summary[key], kind), key
    assert summary["protocols"] == {"modbus": 99}
    assert summary["top_talkers"][0]["host"] == "10.0.0.57"


def test_several_files_and_the_human_summary() -> None:
    done = iotsec("analyze", str(pcap("zeek_http_basic_auth.pcap")),
                  str(pcap("sv_mqtt311_pub_userpass.pcap")))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "24 packets" in done.stdout
    assert "protocols: mqtt 12, http 12" in done.stdout or "http 12, mqtt 12" in done.stdout
    assert "cleartext: http basic auth (user test)" in done.stdout
    assert "cleartext: mqtt password (user user)" in done.stdout


@pytest.mark.parametrize("suffix", [".pcap", ".pcapng"])
def test_write_pcap_saves_the_filtered_slice_for_wireshark(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"slice{suffix}"
    sources = [str(pcap("zeek_mqtt.pcap")), str(pcap("sv_modbus.pcap"))]
    summary = analyze_json("--write-pcap", str(out), "--filter", "mqtt and port 49330", *sources)
    rows = tshark_fields(out, "tcp.srcport", "tcp.dstport", "frame.len")
    assert summary["written"] == len(rows) > 0
    assert all("49330" in row[:2] for row in rows)
    ours = [f for f in read_frames(out)]
    originals = {f.data for f in read_frames(Path(sources[0]))}
    assert all(f.data in originals for f in ours)  # byte for byte


def test_a_bad_filter_names_the_problem() -> None:
    done = iotsec("analyze", "--filter", "mqtt and hots 1.2.3.4", str(pcap("zeek_mqtt.pcap")))
    assert done.returncode == 2
    assert "unknown word 'hots' at column 10" in done.stderr


def test_damaged_file_is_reported_and_the_rest_still_read(tmp_path: Path) -> None:
    good = pcap("sv_telnet_ppa.pcap")
    damaged = tmp_path / "cut.pcap"
    damaged.write_bytes(good.read_bytes()[:3000])
    summary = analyze_json(str(damaged), str(pcap("zeek_mqtt.pcap")))
    (error,) = summary["errors"]
    assert str(damaged) in error and "cut short at byte" in error
    assert summary["protocols"]["mqtt"] == 19 and 0 < summary["protocols"]["telnet"] < 92
    missing = iotsec("analyze", str(tmp_path / "nope.pcap"))
    assert missing.returncode == 1 and "cannot open" in missing.stdout


def test_truncated_frames_are_counted_as_malformed(tmp_path: Path) -> None:
    source = pcap("sv_modbus.pcap")
    out = tmp_path / "truncated.pcap"
    with out.open("wb") as fh:
        writer = PcapWriter(fh, 1)
        for n, frame in enumerate(read_frames(source)):
            cut = frame.data[:30] if n % 3 == 0 else frame.data  # inside the IPv4 header
            writer.write(frame.ts, cut, frame.wire_length, frame.linktype)
    summary = analyze_json(str(out))
    assert summary["packets"] == 99
    assert summary["malformed"] == 33
    assert summary["protocols"] == {"modbus": 66}


def test_realtime_replays_at_the_captured_pace(tmp_path: Path) -> None:
    frames = list(read_frames(pcap("sv_ssdp.pcap")))
    out = tmp_path / "paced.pcap"
    with out.open("wb") as fh:
        writer = PcapWriter(fh, frames[0].linktype)
        for n in range(4):
            writer.write(1000.0 + n * 0.3, frames[0].data, frames[0].wire_length, 1)
    started = time.monotonic()
    summary = analyze_json("--realtime", str(out))
    assert time.monotonic() - started >= 0.9
    assert summary["packets"] == 4 and summary["duration"] == pytest.approx(0.9)


def in_capture_order() -> list[Path]:
    """The recorded captures ordered by their first frame: a split is exact only while time
    never runs backwards."""
    return sorted((pcap(name) for name in COUNTS), key=lambda p: next(read_frames(p)).ts)


def split_in_two(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make analyze split any input over two processes; the list records each split."""
    from engine.capture import analyze as module
    from engine.capture import shard

    monkeypatch.setattr(module, "SHARD_MIN_BYTES", 0)
    monkeypatch.setattr(module, "processes", lambda: 2)
    splits: list[int] = []

    def counted(count: int, work):
        results = shard.run_sharded(count, work)
        splits.append(len(results))
        return results

    monkeypatch.setattr(module, "run_sharded", counted)
    return splits


def test_a_split_analysis_equals_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    files = in_capture_order()
    one = analyze(files)
    splits = split_in_two(monkeypatch)
    split = analyze(files)
    assert splits == [2]  # it did run in two processes
    assert split == one
    assert split["packets"] == sum(COUNTS.values())


# Header bytes of an Ethernet frame (IPv4 or IPv6) and values that make them say something
# else: another ethertype, IP version or header length, length, fragment, protocol or next
# header, ICMP type, TCP header length or flags.
GARBLE = {
    12: (0x08, 0x86, 0x81), 13: (0x00, 0xDD), 14: (0x45, 0x46, 0x44, 0x65), 16: (0, 1),
    17: (0, 19, 20, 28), 18: (0, 0x20), 19: (0, 8), 20: (0, 6, 17, 43, 44, 58, 60, 0x20),
    21: (1,), 23: (1, 2, 6, 17, 58), 34: (0, 3, 8, 128, 129), 46: (0x40, 0x50, 0xF0),
    47: (0x02, 0x12, 0x10, 0x11, 0x04), 54: (128, 129, 135),
}  # fmt: skip


def _reframed(data: bytes, linktype: int, rng: random.Random) -> list[tuple[bytes, int]]:
    """A frame as captures also hold it: cut short, padded, with header bytes garbled, as raw
    IP, the other way, as ICMP echoes, with a VLAN tag, with IPv4 options; each as (bytes, link
    type)."""
    variants = [(data, linktype), (data[: rng.randrange(len(data) + 1)], linktype)]
    variants.append((data + bytes(rng.randrange(1, 30)), linktype))
    garbled = bytearray(data)
    for at in [*rng.sample(sorted(GARBLE), 2), rng.randrange(len(data))]:
        if at < len(garbled):
            garbled[at] = rng.choice(GARBLE.get(at, (rng.randrange(256),)))
    variants.append((bytes(garbled), linktype))
    if linktype == LINK_ETHERNET and len(data) > 54:
        variants.append((data[14:], LINK_RAW))
        # From the destination to the source, the ports as they were: a flow of its own.
        a, b, c = (26, 30, 34) if data[12:14] == b"\x08\x00" else (22, 38, 54)
        back = data[:a] + data[b:c] + data[a:b] + data[c:]
        variants.append((back, linktype))
        if data[12:15] == b"\x08\x00\x45":  # as an ICMP echo request, and its reply
            for way, kind in ((data, 8), (back, 0)):
                variants.append((way[:23] + b"\x01" + way[24:34] + bytes((kind,)) + way[35:], 1))
        variants.append((data[:12] + b"\x81\x00\x00\x07" + data[12:], linktype))
        if data[12:15] == b"\x08\x00\x45":
            total = int.from_bytes(data[16:18], "big") + 4
            options = b"\x01\x01\x01\x00"  # no-operations, then the end of the options
            head = b"\x46" + data[15:16] + total.to_bytes(2, "big")
            variants.append((data[:14] + head + data[18:34] + options + data[34:], linktype))
    return variants


def _write_reframed(path: Path, steps: tuple[float, ...], rng: random.Random) -> None:
    """The real captures' frames, each followed by its reframed copies, as pcapng, each frame
    ``rng.choice(steps)`` seconds after the one before; it ends in a frame cut inside its
    headers (nothing may be read past the end of a file)."""
    with path.open("wb") as fh:
        writer, ts = PcapngWriter(fh), 1000.0
        for frame in (f for name in sorted(COUNTS) for f in read_frames(pcap(name))):
            for data, linktype in _reframed(frame.data, frame.linktype, rng):
                ts += rng.choice(steps)
                writer.write(ts, data, rng.choice((frame.wire_length, len(data))), linktype)
                last = data
        writer.write(ts, last[:37], 60, LINK_ETHERNET)


LIMITS = {"idle_timeout": 2.0, "active_timeout": 9.0, "max_flows": 8}


@pytest.mark.parametrize("limits", [{}, LIMITS])
def test_the_fast_path_equals_frame_by_frame_analysis(tmp_path: Path, limits: dict) -> None:
    """At full speed, the common frames are accounted without a Packet (engine.capture.fastpath);
    analysed frame by frame through the pipeline (as when saving the frames), the same files
    give the same summary and the same flows, field by field: real captures, and their frames
    cut short, padded, garbled, as raw IP, the other way, as ICMP echoes, VLAN-tagged and with
    IPv4 options, in pcap and pcapng files. Short timeouts and a small flow table also end
    flows in between."""
    from engine.capture import analyze as module

    rng = random.Random(5)
    frames = [f for name in sorted(COUNTS) for f in read_frames(pcap(name))]
    common = tmp_path / "common.pcap"
    with common.open("wb") as fh:
        writer, ts = PcapWriter(fh, LINK_ETHERNET), 1000.0
        # The frames as they are, shuffled: more of them than are read between two sweeps,
        # more flows at once than the small table holds, nearly all of the common kind (so
        # that nothing but the fast path ends a flow between two of them).
        for frame in rng.sample(frames * 16, len(frames) * 16):
            if frame.linktype == LINK_ETHERNET:
                ts += rng.choice((0.0, 0.001, 0.01, 0.01, 3.0))
                writer.write(ts, frame.data, frame.wire_length, LINK_ETHERNET)
    # Reframed, three times over, with capture time that sometimes runs backwards.
    reframed = [tmp_path / f"reframed{n}.pcapng" for n in range(3)]
    for path in reframed:
        _write_reframed(path, (0.0, 0.001, 0.5, 1.0, -1.0), rng)
    files = [common, *reframed, *(pcap(name) for name in sorted(COUNTS))]

    def analysed(**how: object) -> tuple[dict, list]:
        flows: list = []

        def on_flow(flow: Flow) -> None:
            flows.append((module.flow_record(flow), flow.key, flow.inspected, flow.tagged))

        summary = module.analyze(files, **limits, **how, on_flow=on_flow)
        summary.pop("written", None)
        return summary, flows

    fast = analysed()
    assert fast == analysed(write_to=tmp_path / "every.pcapng")  # saved: frame by frame
    assert fast[0]["malformed"] > 100 and fast[0]["flows"] > 50


def test_a_split_analysis_of_reframed_frames_equals_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard owns a common frame by its raw headers and any other by its decoded packet: the
    frames of one flow, some of either kind, land in one shard all the same."""
    from engine.capture import analyze as module
    from engine.capture import shard

    path = tmp_path / "reframed.pcapng"
    _write_reframed(path, (0.0, 0.001, 0.5), random.Random(6))  # time never runs backwards
    one = module.analyze([path])
    monkeypatch.setattr(module, "SHARD_MIN_BYTES", 0)
    monkeypatch.setattr(module, "processes", lambda: 2)
    shards: list[int] = []

    def counted(count: int, work: Callable[[int], object]) -> list:
        results = shard.run_sharded(count, work)
        shards.append(len(results))
        return results

    monkeypatch.setattr(module, "run_sharded", counted)
    assert module.analyze([path]) == one
    assert shards == [2]
