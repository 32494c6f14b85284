"""Our rule pack and the ET rules on the real captures: which rules fire where, hit counts
equal to tshark's for the same condition, and the alerts' evidence."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from engine.capture.analyze import analyze
from engine.detect.loader import load_detector
from tests.conftest import SHARED_DATA, require_tool
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
    assert alert["severity"] == "high"  # policy-violation is Suricata's priority 1


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
    et = sorted((SHARED_DATA / "rules").glob("*.rules"))
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
