"""``iotsec analyze``: the JSON contract, counts equal to tshark's, slices saved as pcap files
that tshark reads back, damaged and truncated input, and real-time replay."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.capture.pcapfile import read_frames
from engine.capture.pcapwrite import PcapWriter
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


def test_a_split_analysis_equals_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.capture import analyze as module
    from engine.capture import shard

    # In capture-time order: a split is exact only while time never runs backwards.
    files = sorted((pcap(name) for name in COUNTS), key=lambda p: next(read_frames(p)).ts)
    one = module.analyze(files)
    monkeypatch.setattr(module, "SHARD_MIN_BYTES", 0)
    monkeypatch.setattr(module, "processes", lambda: 2)
    shards: list[int] = []

    def counted(count: int, work):
        results = shard.run_sharded(count, work)
        shards.append(len(results))
        return results

    monkeypatch.setattr(module, "run_sharded", counted)
    split = module.analyze(files)
    assert shards == [2]  # it did run in two processes
    assert split == one
    assert split["packets"] == sum(COUNTS.values())
