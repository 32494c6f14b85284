"""Rules in the running engine: live traffic between two namespaces the test makes raises rule
alerts, replays raise them too, ``rules reload`` and SIGHUP swap the rules (a reload with new
problems keeps the running ones), and a sid an operator disables stays off across a restart."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from engine.control.protocol import ControlError
from tests.conftest import EngineProcess, start_engine, wait_for
from tests.test_capture_decode import pcap
from tests.test_capture_live import RECEIVER, SENDER, Pair, pair  # noqa: F401 (fixture)

MQTT_PASSWORD = 9100010
SNMP_PUBLIC = 9100041
# An SNMPv2c get-request of sysDescr.0 with the community "public".
SNMP_GET = bytes.fromhex(
    "302602010104067075626c6963a019020401020304020100020100300b300906052b06010201050000"
)
OWN_RULE = (
    'alert udp any any -> any 7777 (msg:"TEST knock"; content:"knock"; sid:1000001; rev:1;)\n'
)
SECOND_RULE = (
    'alert udp any any -> any 7777 (msg:"TEST second"; content:"second"; sid:1000002; rev:1;)\n'
)


def rule_alerts(engine: EngineProcess, sid: int) -> list[dict]:
    with engine.client() as client:
        return [a for a in client.request("alerts.list", {}) if a["rule"] == str(sid)]


def replay(engine: EngineProcess, path: Path) -> None:
    with engine.client() as client:
        client.request("capture.replay", {"path": str(path)})


def udp_capture(tmp_path: Path, payloads: list[bytes], port: int = 7777) -> Path:
    """A raw-IP pcap of UDP datagrams from 10.0.0.1 to 10.0.0.2 (written with scapy)."""
    from scapy.all import IP, UDP, wrpcap

    path = tmp_path / f"udp-{len(list(tmp_path.glob('udp-*')))}.pcap"
    wrpcap(str(path), [IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=40000, dport=port) / p
                       for p in payloads])  # fmt: skip
    return path


def test_live_traffic_raises_rule_alerts_with_the_flow(pair: Pair, tmp_path: Path) -> None:  # noqa: F811
    engine = start_engine(
        tmp_path, f'[capture]\ninterfaces = ["{pair.veth_b}"]\n',
        prefix=("ip", "netns", "exec", pair.b),
    )  # fmt: skip
    try:
        with engine.client() as client:
            # The control socket answers just before the configured capture starts.
            wait_for(lambda: client.request("capture.status")["state"] == "running", "capture")
            status = client.request("status")
            assert status["parts"]["detect"] == "running" and status["rules"]["accepted"] >= 20
        code = (
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.sendto(bytes.fromhex('{SNMP_GET.hex()}'), ('{RECEIVER}', 161))\n"
        )
        done = pair.run(pair.a, sys.executable, "-c", code)
        assert done.returncode == 0, done.stderr
        (alert,) = wait_for(lambda: rule_alerts(engine, SNMP_PUBLIC), "the SNMP alert")
        assert (alert["source"], alert["src"], alert["dst"]) == ("rules", SENDER, RECEIVER)
        with engine.client() as client:
            evidence = client.request("alerts.get", {"id": alert["id"]})["evidence"]
            assert evidence["sid"] == SNMP_PUBLIC and evidence["dport"] == 161
            assert evidence["match"]["matched"] == "\\x04\\x06public"
            # The flow named in the evidence is the one the Traffic pane lists.
            rows = client.request("traffic.flows", {"filter": "udp and port 161"})["rows"]
            assert evidence["flow"]["key"] in {r["key"] for r in rows}
            packets = client.request("traffic.packets", {"flow": evidence["flow"]["key"]})
            assert len(packets) == 1
            listed = client.request("rules.list", {"filter": str(SNMP_PUBLIC)})["rules"]
            assert [(r["sid"], r["hits"], r["enabled"]) for r in listed] == [(SNMP_PUBLIC, 1, True)]
    finally:
        engine.stop()


def test_replayed_captures_raise_the_shipped_rules_alerts(engine: EngineProcess) -> None:
    replay(engine, pcap("sv_mqtt311_pub_userpass.pcap"))
    (alert,) = wait_for(lambda: rule_alerts(engine, MQTT_PASSWORD), "the MQTT alert")
    assert alert["title"] == "IOTSEC MQTT CONNECT with a cleartext password"
    assert alert["severity"] == "medium"
    replay(engine, pcap("sv_dns_a_aaaa_mx.pcap"))
    with engine.client() as client:
        status = client.request("rules.status")
        assert status["alerts"] == 1 and status["reload_error"] == ""
        assert [f["path"].rsplit("/", 1)[-1] for f in status["files"]] == ["iot.rules"]


def test_reload_swaps_rules_and_keeps_them_when_the_new_ones_are_worse(tmp_path: Path) -> None:
    rules = tmp_path / "local.rules"
    rules.write_text(OWN_RULE)
    engine = start_engine(tmp_path / "e", f'[detect]\nrule_files = ["{rules}"]\n')
    try:
        replay(engine, udp_capture(tmp_path, [b"knock knock", b"second"]))
        wait_for(lambda: rule_alerts(engine, 1000001), "the first rule's alert")
        assert rule_alerts(engine, 1000002) == []

        rules.write_text(OWN_RULE + SECOND_RULE)
        done = engine.cli("rules", "reload", "--json")
        result = json.loads(done.stdout)
        assert result["reloaded"] and result["accepted"] == 2
        replay(engine, udp_capture(tmp_path, [b"second"]))
        wait_for(lambda: rule_alerts(engine, 1000002), "the new rule's alert")

        # A broken rule: the reload fails, says why, and both rules still run.
        rules.write_text(OWN_RULE + SECOND_RULE + "alert udp any any -> any 7777 (msg:x; sid:9;\n")
        with engine.client() as client:
            with pytest.raises(ControlError, match=r"local\.rules:3") as failed:
                client.request("rules.reload")
            assert failed.value.code == "rules_error"
            status = client.request("rules.status")
            assert status["running"] == 2 and "local.rules:3" in status["reload_error"]
        done = engine.cli("rules", "reload", check=False)
        assert done.returncode != 0 and "the running rules stay" in done.stderr

        # SIGHUP reloads too (the file fixed, a rule gone), and the audit chain says who.
        rules.write_text(OWN_RULE)
        engine.proc.send_signal(signal.SIGHUP)
        with engine.client() as client:
            wait_for(lambda: client.request("rules.status")["running"] == 1, "the SIGHUP reload")

            def audited() -> bool:
                entries = client.request("audit.list", {"limit": 5})
                return any(e["command"] == "rules.reload" and e["operator"] == "SIGHUP"
                           and e["result"] == "ok" for e in entries)  # fmt: skip

            wait_for(audited, "the SIGHUP reload in the audit chain")
    finally:
        engine.stop()


def test_a_disabled_sid_stays_off_across_a_restart(tmp_path: Path) -> None:
    rules = tmp_path / "local.rules"
    rules.write_text(OWN_RULE + SECOND_RULE)
    config = f'[detect]\nrule_files = ["{rules}"]\n'
    engine = start_engine(tmp_path / "e", config)
    try:
        done = engine.cli("rules", "disable", "1000001", "--json")
        assert json.loads(done.stdout)["enabled"] is False
        with engine.client() as client, pytest.raises(ControlError, match="no loaded rule"):
            client.request("rules.disable", {"sid": 4242})
    finally:
        engine.stop()
    engine = start_engine(tmp_path / "e", config)
    try:
        with engine.client() as client:
            status = client.request("rules.status")
            assert status["disabled"] == [1000001] and status["running"] == 1
        replay(engine, udp_capture(tmp_path, [b"knock", b"second"]))
        wait_for(lambda: rule_alerts(engine, 1000002), "the enabled rule's alert")
        assert rule_alerts(engine, 1000001) == []
        engine.cli("rules", "enable", "1000001")
        replay(engine, udp_capture(tmp_path, [b"knock"]))
        wait_for(lambda: rule_alerts(engine, 1000001), "the re-enabled rule's alert")
        listing = engine.cli("rules", "list")
        assert "1000001" in listing.stdout and "TEST knock" in listing.stdout
    finally:
        engine.stop()
