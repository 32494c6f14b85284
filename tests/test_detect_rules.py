"""Our rule pack and the ET rules on the real captures: which rules fire where, hit counts
equal to tshark's for the same condition, and the alerts' evidence."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.capture.analyze import analyze
from engine.detect.loader import load_detector
from tests.conftest import DATA, require_tool
from tests.test_capture_analyze import in_capture_order, split_in_two
from tests.test_capture_decode import COUNTS, pcap

PACK = Path(__file__).resolve().parent.parent / "rules" / "packet" / "iot.rules"

# The sids of our pack that fire on each capture (with the default variables).
EXPECTED = {
    "sv_mqtt311_pub_userpass.pcap": {9100010},
    "zeek_mqtt.pcap": set(),
    "sv_telnet_ppa.pcap": {9100001, 9100002},
    "sv_ssdp.pcap": set(),
    "sv_modbus.pcap": set(),  # every writer is inside $MODBUS_CLIENTS ($HOME_NET)
    "sv_dns_a_aaaa_mx.pcap": set(),
    "zeek_mdns.pcap": set(),
    "sv_snmpv2c_get.pcap": {9100040},
    "zeek_http_basic_auth.pcap": {9100050},
    "zeek_tls_expired_cert.pcap": {9100060},
}


def detector_of(rules: Path):
    """A detector running exactly the rules in ``rules`` (default variables)."""
    return load_detector([str(rules)], {})[0]


def alerts_of(name: str, rules: list[Path] = (PACK,), variables: dict | None = None) -> list:
    detector, rejected = load_detector([str(p) for p in rules], variables or {})
    assert rejected == []
    return analyze([pcap(name)], detector=detector)["alerts"]


@pytest.mark.parametrize(("name", "sids"), sorted(EXPECTED.items()))
def test_our_pack_fires_where_it_should(name: str, sids: set[int]) -> None:
    assert {a["sid"] for a in alerts_of(name)} == sids


def test_the_alert_carries_the_rule_the_flow_and_the_evidence() -> None:
    (alert,) = alerts_of("sv_mqtt311_pub_userpass.pcap")
    assert (alert["sid"], alert["rev"], alert["classtype"]) == (9100010, 1, "policy-violation")
    assert alert["msg"] == "IOTSEC MQTT CONNECT with a cleartext password"
    assert (alert["src"], alert["dst"], alert["dport"]) == ("::1", "::1", 1883)
    assert alert["flow"]["sport"] == 38458
    # policy-violation is Suricata's priority 1; the pack lowers it: credentials inside the
    # network, in cleartext, are not yet someone's attack.
    assert alert["severity"] == "medium"


def test_modbus_writes_from_outside_modbus_clients() -> None:
    alerts = alerts_of("sv_modbus.pcap", variables={"MODBUS_CLIENTS": "10.0.0.57"})
    assert {a["sid"] for a in alerts} == {9100030}
    assert {a["src"] for a in alerts} == {"10.0.0.9"}
    tshark = require_tool("tshark")
    writes = subprocess.run(
        [tshark, "-n", "-r", str(pcap("sv_modbus.pcap")), "-Y",
         "ip.src == 10.0.0.9 && tcp.dstport == 502 && (modbus.func_code == 5 || "
         "modbus.func_code == 6 || modbus.func_code == 15 || modbus.func_code == 16 || "
         "modbus.func_code == 22 || modbus.func_code == 23)"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert len(alerts) == len(writes)


@pytest.mark.parametrize(
    ("name", "sid", "display_filter"),
    [
        ("sv_mqtt311_pub_userpass.pcap", 9100010, "mqtt.conflag.passwd == 1"),
        ("zeek_http_basic_auth.pcap", 9100050, "http.authorization"),
        ("zeek_tls_expired_cert.pcap", 9100060,
         "tls.handshake.type == 2 && tls.handshake.version == 0x0301"),
        ("sv_telnet_ppa.pcap", 9100002, 'telnet.data contains "Password:"'),
    ],
)  # fmt: skip
def test_hit_counts_agree_with_tshark(name: str, sid: int, display_filter: str) -> None:
    tshark = require_tool("tshark")
    command = [tshark, "-n", "-r", str(pcap(name)), "-Y", display_filter]
    rows = subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()
    assert len([a for a in alerts_of(name) if a["sid"] == sid]) == len(rows) > 0


def test_the_et_rules_load_and_run_on_every_capture() -> None:
    et = sorted((DATA / "rules").glob("*.rules"))
    detector, rejected = load_detector([str(p) for p in et] + [str(PACK)], {})
    assert len(rejected) <= 5
    summary = analyze([pcap(n) for n in sorted(COUNTS)], detector=detector)
    assert summary["packets"] == sum(COUNTS.values())
    assert {a["sid"] for a in summary["alerts"]} >= {9100010, 9100050}


def test_analyze_prints_alerts_and_lists_them_in_json() -> None:
    import json
    import sys

    from tests.conftest import ROOT

    def iotsec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "console.cli", "analyze", *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)  # fmt: skip

    path = str(pcap("zeek_http_basic_auth.pcap"))
    text = iotsec(path, "--rules", str(PACK))
    assert "sid 9100050" in text.stdout and "HTTP basic auth in cleartext" in text.stdout
    data = json.loads(iotsec(path, "--json").stdout)  # the shipped pack by default
    (alert,) = data["alerts"]
    assert {k: alert[k] for k in ("sid", "msg", "src", "dst")} == {
        "sid": 9100050, "msg": "IOTSEC HTTP basic auth in cleartext to a device",
        "src": "172.24.133.205", "dst": "172.24.133.205",
    }  # fmt: skip
    assert "alerts" not in json.loads(iotsec(path, "--json", "--no-rules").stdout)


def test_a_split_analysis_raises_the_alerts_one_process_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    files = in_capture_order()
    rules = [str(p) for p in sorted((DATA / "rules").glob("*.rules"))] + [str(PACK)]
    one = analyze(files, detector=load_detector(rules, {})[0])
    splits = split_in_two(monkeypatch)
    split = analyze(files, detector=load_detector(rules, {})[0])
    assert splits == [2]
    assert split == one and len(one["alerts"]) >= 4


def test_the_fast_path_hands_the_rules_what_frame_by_frame_feeding_does(tmp_path: Path) -> None:
    """analyze reads at full speed by accounting common frames from the file's buffer and
    decoding only those rules can act on; frame by frame through Pipeline.feed (as when it
    writes a pcap) every frame is decoded and inspected. Same alerts, same hits per rule."""

    files = in_capture_order()
    rules = [str(p) for p in sorted((DATA / "rules").glob("*.rules"))] + [str(PACK)]
    fast_detector, general_detector = load_detector(rules, {})[0], load_detector(rules, {})[0]
    fast = analyze(files, detector=fast_detector)
    general = analyze(files, detector=general_detector, write_to=tmp_path / "all.pcapng")
    assert general.pop("written") == fast["packets"]
    assert general == fast and len(fast["alerts"]) >= 4
    assert fast_detector.hits == general_detector.hits


def test_the_fast_path_starts_the_stream_at_the_handshake(tmp_path: Path) -> None:
    """The first data segment of a stream arrives after the second: the stream still begins
    where the SYN says, so a pattern split over the two matches, on both paths. (Only the
    handshake tells where the stream begins; the fast path must hand the rules its SYNs.)"""
    from scapy.all import IP, TCP, wrpcap

    client, server = {"src": "10.0.0.1", "dst": "10.0.0.2"}, {"src": "10.0.0.2", "dst": "10.0.0.1"}
    packets = [
        IP(**client) / TCP(sport=40000, dport=2323, flags="S", seq=100),
        IP(**server) / TCP(sport=2323, dport=40000, flags="SA", seq=500, ack=101),
        IP(**client) / TCP(sport=40000, dport=2323, flags="A", seq=101, ack=501),
        IP(**client) / TCP(sport=40000, dport=2323, flags="PA", seq=105, ack=501) / b"word",
        IP(**client) / TCP(sport=40000, dport=2323, flags="PA", seq=101, ack=501) / b"pass",
    ]
    for n, packet in enumerate(packets):
        packet.time = 1000 + n * 0.01
    capture = tmp_path / "reordered.pcap"
    wrpcap(str(capture), packets)
    rules = tmp_path / "split.rules"
    rules.write_text(
        'alert tcp any any -> any 2323 (msg:"split word"; flow:to_server; content:"password";'
        " sid:1;)\n"
    )
    fast = analyze([capture], detector=detector_of(rules))
    general = analyze([capture], detector=detector_of(rules), write_to=tmp_path / "out.pcap")
    assert [a["sid"] for a in fast["alerts"]] == [a["sid"] for a in general["alerts"]] == [1]


def test_thresholds_count_across_the_shards_of_a_split_analysis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from scapy.all import IP, UDP, wrpcap

    # One source knocking from 40 ports (40 flows, spread over both shards), 0.1 s apart: a
    # limit of 2 alerts per 60 s by source, and one alert for every 10th match.
    packets = []
    for n in range(40):
        packet = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000 + n, dport=7777) / b"knock"
        packet.time = 1000 + n * 0.1
        packets.append(packet)
    capture = tmp_path / "knocks.pcap"
    wrpcap(str(capture), packets)
    rules = tmp_path / "limits.rules"
    rules.write_text(
        'alert udp any any -> any 7777 (msg:"limit"; content:"knock";'
        " threshold:type limit, track by_src, count 2, seconds 60; sid:1;)\n"
        'alert udp any any -> any 7777 (msg:"every 10th"; content:"knock";'
        " threshold:type threshold, track by_src, count 10, seconds 60; sid:2;)\n"
    )
    one = analyze([capture], detector=detector_of(rules))
    splits = split_in_two(monkeypatch)
    split = analyze([capture], detector=detector_of(rules))
    assert splits == [2]
    assert [a["sid"] for a in split["alerts"]] == [a["sid"] for a in one["alerts"]]
    assert [a["sport"] for a in split["alerts"]] == [40000, 40001, 40009, 40019, 40029, 40039]


def test_a_stream_is_scanned_again_when_its_flow_changes_tag(tmp_path: Path) -> None:
    """Rules for an application protocol are left out of the scans of flows tagged otherwise.
    When a flow's tag changes (the payload shows another protocol than the port suggested),
    its stream is scanned again whole, so a fast pattern in bytes that were scanned under the
    old tag still counts."""
    from scapy.all import IP, TCP, raw

    from engine.capture.decode import LINK_RAW, Decoder
    from engine.capture.flows import FlowTable

    rules = tmp_path / "app.rules"
    rules.write_text(
        'alert http any any -> any any (msg:"split"; flow:to_server; content:"topsecret";'
        ' content:"done"; distance:0; sid:7;)\n'
    )
    detector = detector_of(rules)
    decoder, flows = Decoder(), FlowTable()
    segments = [(100, "S", b""), (101, "PA", b"topsecret "), (111, "PA", b"and done")]
    fired = []
    for n, (seq, flags, data) in enumerate(segments):
        frame = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=4000, dport=9999, seq=seq,
                                                         flags=flags) / data  # fmt: skip
        packet = decoder.decode(raw(frame), LINK_RAW, 1000.0 + n)
        flow, _ = flows.add(packet)
        flow.app = "unknown" if n < 2 else "http"  # tagged http by the last segment
        fired += [m.rule.sid for m in detector.inspect(packet, flow)]
    assert fired == [7]


def test_anchored_fast_patterns_are_scanned_only_as_far_as_they_may_end() -> None:
    """Fast patterns with a window (offset/depth/startswith) are kept in bands by how far
    they may end; each band's scan stops there, and still finds what ends in the window, in a
    buffer scanned whole or from a stream's new bytes on."""
    from engine.detect.patterns import Patterns

    table = {
        b"\x00\x00": {(1, 4, 4)},  # ends at 4 exactly: offset 2, depth 2
        b"far": {(2, 3, 500)},  # anywhere in the first 500 bytes
        b"beyond": {(3, 6, 5000)},  # past the last band
        b"free": {4},
    }
    patterns = Patterns(table)
    assert sorted(limit for limit, _ in patterns.anchored) == [4, 500, 5000]

    def scan(data: bytes, start: int = 0) -> set[int]:
        found: set[int] = set()
        patterns.scan(data, start, found)
        return found

    assert scan(b"\x00\x01" + b"\x00" * 200) == {1}
    assert scan(b"\x00\x01\x01\x00" + b"\x00" * 200) == set(), "zeros, but not at 2..3"
    assert scan(b"x" * 490 + b"far" + b"free") == {2, 4}
    assert scan(b"x" * 498 + b"far") == set(), "ends at 501"
    assert scan(b"x" * 4000 + b"BEYOND") == {3}
    assert scan(b"x" * 4000 + b"beyond", start=3990) == {3}
    assert scan(b"\x00\x01\x00\x00", start=4) == set(), "the window is behind the new bytes"
