"""Alerts name their attacker and target (issue 19): a rule on a server's answer (a login
prompt) names the client as the attacker, the response policy bans the attacker, and a device
of the inventory is banned only when someone says so. A real engine (dry-run backend) replays
the recorded telnet capture, which also puts both of its ends in the inventory."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.control.protocol import ControlError
from engine.store import schema
from tests.conftest import ROOT, EngineProcess, start_engine, wait_for
from tests.test_capture_decode import pcap

CLIENT, DEVICE = "192.168.0.2", "192.168.0.1"  # sv_telnet_ppa.pcap: the client, the server
LOGIN_PROMPT, PASSWORD_PROMPT = 9100001, 9100002
SHIPPED = ROOT / "rules" / "packet" / "iot.rules"
# The test's own rules: one on the client's bytes without target (the side that opened the
# flow is the attacker), one on the server's answer dropping (the policy bans its attacker).
OWN_RULES = (
    'alert tcp any any -> any 23 (msg:"TEST telnet to a device"; flow:to_server;'
    ' content:"fake"; classtype:policy-violation; sid:1000001;)\n'
    'drop tcp any 23 -> any any (msg:"TEST password prompt"; flow:from_server;'
    ' content:"Password"; target:src_ip; classtype:policy-violation; sid:1000002;)\n'
)


def replay_telnet(engine: EngineProcess) -> None:
    with engine.client() as client:
        client.request("capture.replay", {"path": str(pcap("sv_telnet_ppa.pcap"))})


def request(engine: EngineProcess, command: str, args: dict | None = None):
    with engine.client() as client:
        return client.request(command, args or {})


def own_engine(tmp_path: Path, respond: str = "") -> EngineProcess:
    rules = tmp_path / "own.rules"
    rules.write_text(OWN_RULES)
    return start_engine(tmp_path / "engine", f'[respond]\n{respond}\n[detect]\n'
                        f'rule_files = ["{SHIPPED}", "{rules}"]\n')  # fmt: skip


@pytest.fixture
def replayed(tmp_path: Path):
    engine = own_engine(tmp_path)
    try:
        replay_telnet(engine)
        wait_for(lambda: len(request(engine, "alerts.list")) >= 4, "the alerts")
        wait_for(lambda: request(engine, "devices.list"), "the inventory")
        yield engine
    finally:
        engine.stop()


def by_rule(engine: EngineProcess) -> dict[str, dict]:
    return {a["rule"]: a for a in request(engine, "alerts.list")}


def test_the_servers_answers_name_the_client_as_attacker(replayed: EngineProcess) -> None:
    alerts = by_rule(replayed)
    for sid in (LOGIN_PROMPT, PASSWORD_PROMPT, 1000002):
        alert = alerts[str(sid)]
        # src and dst stay the packet's (a contract); attacker and target say who did what.
        assert (alert["src"], alert["dst"]) == (DEVICE, CLIENT)
        assert (alert["attacker"], alert["target"]) == (CLIENT, DEVICE), sid
    own = alerts["1000001"]
    assert (own["src"], own["attacker"], own["target"]) == (CLIENT, CLIENT, DEVICE)
    one = request(replayed, "alerts.get", {"id": alerts[str(PASSWORD_PROMPT)]["id"]})
    assert (one["attacker"], one["target"]) == (CLIENT, DEVICE)
    listed = json.loads(replayed.cli("alerts", "--json").stdout)
    assert {(a["rule"], a["attacker"]) for a in listed} >= {(str(LOGIN_PROMPT), CLIENT)}
    # What is stored is read back the same after a restart.
    with sqlite3.connect(replayed.db) as conn:
        stored = conn.execute("SELECT attacker, target FROM alerts WHERE rule = ?",
                              (str(LOGIN_PROMPT),)).fetchone()  # fmt: skip
    assert stored == (CLIENT, DEVICE)


def test_analyze_json_names_the_attacker() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "analyze", "--json", "--rules", str(SHIPPED),
         str(pcap("sv_telnet_ppa.pcap"))],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    alerts = json.loads(done.stdout)["alerts"]
    assert alerts and {(a["sid"], a["attacker"], a["target"]) for a in alerts} == {
        (LOGIN_PROMPT, CLIENT, DEVICE),
        (PASSWORD_PROMPT, CLIENT, DEVICE),
    }


def test_banning_a_device_of_the_inventory_needs_local_ok(replayed: EngineProcess) -> None:
    with pytest.raises(ControlError) as refused:
        request(replayed, "bans.ban", {"address": DEVICE})
    assert refused.value.code == "refused"
    message = str(refused.value)
    assert DEVICE in message and "a device of the inventory" in message
    assert "00:00:c0:9f:a0:97" in message, "the device is named by its MAC"
    assert request(replayed, "bans.list")["bans"] == []
    made = request(replayed, "bans.ban", {"address": DEVICE, "local_ok": True, "for": "1h"})
    assert made["address"] == DEVICE
    # An address that is no device of the inventory needs nothing more.
    assert request(replayed, "bans.ban", {"address": "203.0.113.7"})["address"] == "203.0.113.7"
    with pytest.raises(ControlError) as wrong:
        request(replayed, "bans.ban", {"address": CLIENT, "local_ok": "yes"})
    assert wrong.value.code == "bad_request"


def test_the_cli_bans_a_device_only_with_local_ok(replayed: EngineProcess) -> None:
    refused = replayed.cli("ban", CLIENT, check=False)
    assert refused.returncode != 0
    assert CLIENT in refused.stderr and "a device of the inventory" in refused.stderr
    assert "--local-ok" in refused.stderr
    assert request(replayed, "bans.list")["bans"] == []
    made = json.loads(replayed.cli("ban", CLIENT, "--local-ok", "--json").stdout)
    assert made["address"] == CLIENT
    assert [b["address"] for b in request(replayed, "bans.list")["bans"]] == [CLIENT]


def test_the_policy_bans_the_attacker_not_the_device_that_answered(tmp_path: Path) -> None:
    engine = own_engine(tmp_path, "ban_devices = true")
    try:
        replay_telnet(engine)
        wait_for(lambda: request(engine, "bans.list")["bans"], "the policy's ban")
        (made,) = request(engine, "bans.list")["bans"]
        assert (made["address"], made["source"], made["created_by"]) == (
            CLIENT,
            "rule:1000002",
            "policy",
        )
    finally:
        engine.stop()


def test_the_policy_leaves_devices_of_the_inventory_alone_by_default(tmp_path: Path) -> None:
    engine = own_engine(tmp_path)
    try:
        with engine.client() as watcher:
            watcher.request("subscribe", {"topics": ["bans"]})
            replay_telnet(engine)
            event = watcher.next_event()["data"]
        assert event["event"] == "refused" and event["address"] == CLIENT
        assert "ban_devices is off" in event["reason"] and "00:a0:cc:3b:bf:fa" in event["reason"]
        assert request(engine, "bans.list")["bans"] == []
        assert request(engine, "bans.list")["refused"] == 1
    finally:
        engine.stop()


def test_migration_9_derives_attacker_and_target_of_existing_alerts() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    schema.migrate(conn, 8)
    rows = [
        # A rule alert on the server's answer: the flow's initiator is the destination.
        ("rules", "9100002", DEVICE, CLIENT, {"flow": {"src": CLIENT, "dst": DEVICE}}),
        ("rules", "1000001", CLIENT, DEVICE, {"flow": {"src": CLIENT, "dst": DEVICE}}),
        ("logwatch", "sshd", "203.0.113.9", "", {}),
        ("devices", "new device", "192.168.0.9", "", {}),
        ("inject", "inject", "", "", {}),
    ]
    for source, rule, src, dst, evidence in rows:
        conn.execute(
            "INSERT INTO alerts (severity, source, rule, title, src, dst, first_seen, last_seen,"
            " evidence) VALUES (2, ?, ?, 't', ?, ?, 0, 0, ?)",
            (source, rule, src, dst, json.dumps(evidence)),
        )
    assert schema.migrate(conn) == ["alerts name their attacker and target"]
    found = conn.execute("SELECT rule, attacker, target FROM alerts ORDER BY id").fetchall()
    assert found == [
        ("9100002", CLIENT, DEVICE),
        ("1000001", CLIENT, DEVICE),
        ("sshd", "203.0.113.9", "sshd"),
        ("new device", "", "192.168.0.9"),
        ("inject", "", ""),
    ]
