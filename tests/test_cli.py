"""The ``iotsec`` command as users type it, against a real engine process."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EngineProcess, start_engine, write_config


def test_inject_ack_resolve_round_trip(engine: EngineProcess) -> None:
    out = engine.cli("alerts", "inject", "--severity", "high", "--title", "Telnet root login",
                     "--src", "10.3.0.7", "--dst", "10.3.0.1", "--rule", "2023019")  # fmt: skip
    alert_id = int(out.stdout.strip())
    listed = json.loads(engine.cli("alerts", "--state", "open", "--json").stdout)
    assert [a["id"] for a in listed] == [alert_id]
    a = listed[0]
    assert (a["severity"], a["src"], a["dst"], a["rule"], a["count"], a["state"]) == (
        "high", "10.3.0.7", "10.3.0.1", "2023019", 1, "open",
    )  # fmt: skip
    for key in ("id", "source", "title", "device", "first_seen", "last_seen", "ack_by", "ack_note",
                "evidence"):  # fmt: skip
        assert key in a
    assert "acknowledged" in engine.cli("alerts", "ack", str(alert_id), "--note", "on it").stdout
    shown = engine.cli("alerts", "show", str(alert_id)).stdout
    assert "on it" in shown and "ack" in shown
    engine.cli("alerts", "resolve", str(alert_id))
    assert json.loads(engine.cli("alerts", "--state", "open", "--json").stdout) == []
    table = engine.cli("alerts").stdout
    assert "resolved" in table and "Telnet root login" in table


def test_silence_and_unsilence(engine: EngineProcess) -> None:
    engine.cli(
        "alerts", "inject", "--title", "anon mqtt", "--rule", "mqtt-anon", "--src", "10.3.0.9"
    )
    data = json.loads(engine.cli("alerts", "silence", "--rule", "mqtt-anon", "--for", "2h",
                                 "--json").stdout)  # fmt: skip
    assert data["silenced"] == 1
    assert 7100 < data["expires"] - data["created"] <= 7200
    listing = engine.cli("alerts", "silences").stdout.splitlines()
    assert listing[0].split() == ["ID", "ENDS", "LEFT", "HIDDEN", "BY", "MATCHES", "/", "COMMENT"]
    left, hidden = listing[1].split()[3:5]
    assert (left == "2h" or left.startswith("1h59m")) and hidden == "1"
    assert "rule=mqtt-anon" in listing[1]
    silenced = json.loads(engine.cli("alerts", "--state", "silenced", "--json").stdout)
    assert len(silenced) == 1
    (listed,) = json.loads(engine.cli("alerts", "silences", "--json").stdout)
    assert listed["hidden"] == 1 and listed["id"] == data["id"]
    longer = json.loads(engine.cli("alerts", "extend-silence", str(data["id"]), "--for", "1d",
                                   "--json").stdout)  # fmt: skip
    assert longer["expires"] == data["expires"] + 86400
    said = engine.cli("alerts", "extend-silence", str(data["id"]), "--for", "30m").stdout
    assert said.startswith(f"silence {data['id']} now ends ")
    audit = json.loads(engine.cli("audit", "--json").stdout)
    assert [e["command"] for e in audit].count("silences.extend") == 2
    engine.cli("alerts", "unsilence", str(data["id"]))
    assert json.loads(engine.cli("alerts", "--state", "silenced", "--json").stdout) == []
    gone = engine.cli("alerts", "extend-silence", str(data["id"]), check=False)
    assert gone.returncode == 1 and f"no silence in force with id {data['id']}" in gone.stderr


def test_status(engine: EngineProcess) -> None:
    data = json.loads(engine.cli("status", "--json").stdout)
    assert data["pid"] == engine.proc.pid
    assert data["store"]["path"] == str(engine.db)
    assert data["control"]["socket"] == str(engine.socket)
    assert data["parts"]["capture"] == "stopped"  # no interface configured
    assert data["parts"]["detect"] == "running"  # the shipped rule pack
    assert data["rules"]["running"] == data["rules"]["accepted"] > 0
    assert data["capture"]["packets"] == 0
    assert set(data["queues"]) == {"writer", "subscribers"}
    assert set(data["dropped"]) == {"alerts", "events"}
    text = engine.cli("status").stdout
    assert "uptime" in text and str(engine.db) in text
    assert "capture" in text and "stopped" in text
    assert f"{data['rules']['running']} running" in text
    assert data["parts"]["scan"] == "no scope" and data["parts"]["devices"] == "running"
    assert "0 present, 0 gone, 0 open findings; scans: no scope, 0 running" in text


def test_socket_option_wins_over_config(engine: EngineProcess, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = write_config(tmp_path / "other")
    out = engine.cli("--config", str(other), "status", "--socket", str(engine.socket), "--json")
    assert json.loads(out.stdout)["pid"] == engine.proc.pid


def test_errors_are_clear(tmp_path: Path, engine: EngineProcess) -> None:
    missing = engine.cli("status", "--socket", str(tmp_path / "none.sock"), check=False)
    assert missing.returncode == 1
    assert "no engine at" in missing.stderr and "iotsec engine" in missing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[alerts]\nfold_windw = '5m'\n")
    out = engine.cli("--config", str(bad), "status", check=False)
    assert out.returncode == 1 and f"{bad}: unknown key 'alerts.fold_windw'" in out.stderr
    refused = engine.cli("alerts", "ack", "424242", check=False)
    assert refused.returncode == 1 and "no alert with id 424242" in refused.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_engine_stops_cleanly(tmp_path: Path, sig: int) -> None:
    engine = start_engine(tmp_path)
    with engine.client() as c:
        c.request("alerts.inject", {"title": "before stop"})
    assert engine.stop(sig) == 0
    assert not engine.socket.exists()
    assert "engine stopped" in engine.log.read_text()


def test_second_engine_on_same_socket_refuses(engine: EngineProcess) -> None:
    out = engine.cli("engine", check=False)
    assert out.returncode == 1 and "another engine is already listening" in out.stderr


def test_a_file_at_the_socket_path_is_left_alone(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    victim = tmp_path / "run" / "control.sock"
    victim.parent.mkdir(mode=0o700)
    victim.write_text("precious")
    out = subprocess.run([sys.executable, "-m", "engine", "--config", str(config)],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 1 and "is not a socket; refusing to replace it" in out.stderr
    assert victim.read_text() == "precious"


def test_a_second_engine_on_the_same_database_is_refused(engine: EngineProcess) -> None:
    other_socket = engine.config.parent / "other.sock"
    out = engine.cli("engine", "--socket", str(other_socket), check=False)
    assert out.returncode == 1
    assert f"another engine (pid {engine.proc.pid}) is using this database" in out.stderr


def test_silence_that_ran_out_while_the_engine_was_down_ends(tmp_path: Path) -> None:
    engine = start_engine(tmp_path)
    engine.cli("alerts", "silence", "--rule", "zz", "--for", "2s")
    engine.cli("alerts", "inject", "--title", "hidden", "--rule", "zz")
    assert json.loads(engine.cli("alerts", "--state", "silenced", "--json").stdout)
    engine.stop()
    time.sleep(2.5)
    engine = start_engine(tmp_path)
    deadline = time.monotonic() + 5
    while json.loads(engine.cli("alerts", "--state", "silenced", "--json").stdout):
        assert time.monotonic() < deadline, "the silence did not end after the restart"
        time.sleep(0.2)
    assert len(json.loads(engine.cli("alerts", "--state", "open", "--json").stdout)) == 1
    engine.stop()


def test_terminal_control_characters_are_shown_not_obeyed(engine: EngineProcess) -> None:
    engine.cli("alerts", "inject", "--title", "t\x1b]0;pwned\x07", "--rule", "r\x1b[2J")
    engine.cli("alerts", "silence", "--rule", "r\x1b[2J", "--comment", "c\x9b31m")
    for args in (["alerts"], ["alerts", "silences"], ["alerts", "show", "1"], ["audit"]):
        screen = on_a_terminal(engine, *args)
        assert "\x1b" not in screen and "\x07" not in screen and "\x9b" not in screen, args
        # shown as text: \x1b in tables, \u001b inside the audit log's JSON arguments
        assert "\\x1b" in screen or "\\u001b" in screen, args


def on_a_terminal(engine: EngineProcess, *args: str) -> str:
    """What ``iotsec ARGS`` prints to a real terminal (click strips less there than in a pipe)."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "--config", str(engine.config), *args],
        stdout=secondary, stderr=secondary, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(main)
    return b"".join(chunks).decode(errors="replace")


def follow_on_a_terminal(log: Path, env: dict[str, str]) -> str:
    """What ``iotsec logs follow LOG`` shows a real terminal in its first second."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "logs", "follow", str(log), "--filter", "sshd"],
        stdout=secondary, stderr=secondary, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 30
    while b"Failed password" not in b"".join(chunks) and time.monotonic() < deadline:
        try:
            chunks.append(os.read(main, 65536))
        except OSError:
            break
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    os.close(main)
    return b"".join(chunks).decode(errors="replace")


def test_no_color_turns_the_cli_colours_off(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(
        "Nov 24 03:11:01 gw sshd[41]: Failed password for root from 203.0.113.5 port 4 ssh2\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = follow_on_a_terminal(log, env)
    assert "\x1b[31m\x1b[1m[sshd 203.0.113.5]" in coloured
    for value in ("1", ""):  # set, even empty, means no colour
        plain = follow_on_a_terminal(log, {**env, "NO_COLOR": value})
        assert "[sshd 203.0.113.5] Nov 24 03:11:01" in plain and "\x1b[" not in plain


def test_the_alert_table_names_attacker_and_target(engine: EngineProcess) -> None:
    engine.cli("alerts", "inject", "--title", "login prompt", "--src", "10.3.0.1",
               "--dst", "203.0.113.9", "--rule", "x")  # fmt: skip
    alert = json.loads(engine.cli("alerts", "--json").stdout)[0]
    header, row = engine.cli("alerts").stdout.splitlines()[:2]
    assert header.split()[6:9] == ["ATTACKER", "TARGET", "TITLE"]
    assert row.split()[6:8] == [alert["attacker"] or "-", alert["target"] or "-"]
    assert alert["attacker"] == "10.3.0.1"


def test_unreasonable_durations_are_refused(engine: EngineProcess) -> None:
    out = engine.cli(
        "alerts", "silence", "--rule", "x", "--for", "99999999999999999999w", check=False
    )
    assert out.returncode == 1 and "at most 100 years" in out.stderr
    assert "no silences" in engine.cli("alerts", "silences").stdout
