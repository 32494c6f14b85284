"""Log watching in a real engine process: a jail on a file turns failures into an alert and a
(dry-run) ban; lines written through rename rotation, copytruncate, deletion and a restart in
the middle of the file are each processed once; syslog from devices over loopback UDP and TCP
reaches its jail; ``iotsec logs`` and ``iotsec logs follow`` show it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import EngineProcess, start_engine, wait_for

ATTACKER = "203.0.113.50"  # documentation range: a dry-run ban never leaves the machine


def request(engine: EngineProcess, cmd: str, args: dict[str, Any] | None = None) -> Any:
    with engine.client() as client:
        return client.request(cmd, args)


def log_alerts(engine: EngineProcess) -> list[dict[str, Any]]:
    return request(engine, "alerts.list", {"source": "logwatch"})


def failed(n: int, host: str = ATTACKER, user: str = "root") -> str:
    return (
        f"Nov 24 03:1{n % 10}:0{n % 6} gw sshd[41{n}]: Failed password for {user} from "
        f"{host} port {40000 + n} ssh2\n"
    )


def jail_config(log: Path, extra: str = "", **keys: str) -> str:
    settings = {
        "name": '"sshd"',
        "filters": '["sshd"]',
        "files": f'["{log}"]',
        "maxretry": "3",
        "findtime": '"10m"',
        **keys,
    }
    body = "\n".join(f"{k} = {v}" for k, v in settings.items())
    return f"{extra}\n[[logwatch.jail]]\n{body}\n"


def test_a_jail_on_a_file_alerts_and_bans(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("Nov 24 03:00:00 gw sshd[1]: Server listening on 0.0.0.0 port 22.\n")
    engine = start_engine(tmp_path / "engine", jail_config(log))
    try:
        with log.open("a") as handle:
            handle.write(
                "Nov 24 03:10:00 gw sshd[2]: Accepted publickey for ops from 192.0.2.4"
                " port 5000 ssh2\n"
            )
            handle.writelines(failed(n) for n in range(3))
        alerts = wait_for(lambda: log_alerts(engine), "the jail's alert")
        alert = alerts[0]
        assert alert["rule"] == "sshd" and alert["src"] == ATTACKER
        lines = alert["evidence"]["lines"]
        assert len(lines) == 3 and all("Failed password for root" in line for line in lines)
        assert alert["evidence"]["jail_state"]["alerts"] == 1
        bans = wait_for(lambda: request(engine, "bans.list")["bans"], "the ban")
        assert bans[0]["address"] == ATTACKER and bans[0]["source"] == "logwatch:sshd"
        assert f"alert #{alert['id']}" in bans[0]["reason"]

        status = json.loads(engine.cli("logs", "--json").stdout)
        jail = status["jails"][0]
        assert jail["name"] == "sshd" and jail["total_failed"] == 3 and jail["alerts"] == 1
        assert status["files"][0]["lines"] == 4 and status["files"][0]["matched"] == 3
        text = engine.cli("logs").stdout
        assert "sshd" in text and str(log) in text and "3/10m" in text
    finally:
        engine.stop()


def test_a_broken_jail_is_reported_and_the_others_run(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    config = jail_config(log) + jail_config(log, name='"nothing"', filters='["no-such"]')
    engine = start_engine(tmp_path / "engine", config)
    try:
        status = request(engine, "logs.status")
        states = {j["name"]: j["state"] for j in status["jails"]}
        assert states["sshd"] == "running"
        assert states["nothing"].startswith("error:") and "no-such" in states["nothing"]
        with log.open("a") as handle:
            handle.writelines(failed(n) for n in range(3))
        wait_for(lambda: request(engine, "logs.status")["jails"][0]["alerts"] == 1, "the alert")
    finally:
        engine.stop()


def test_a_jails_mode_chooses_what_its_filter_counts(tmp_path: Path) -> None:
    """A normal sshd jail notes a failed public key; an aggressive one counts it; a mode the
    filter lacks stops that jail only, saying so."""
    log = tmp_path / "auth.log"
    log.write_text("")
    config = (
        jail_config(log, name='"normal"', maxretry="2")
        + jail_config(log, name='"aggressive"', maxretry="2", mode='"aggressive"')
        + jail_config(log, name='"typo"', mode='"agressive"')
    )
    engine = start_engine(tmp_path / "engine", config)
    try:
        with log.open("a") as handle:
            for n in range(3):
                handle.write(f"Nov 24 03:10:0{n} gw sshd[7{n}]: Failed publickey for git from "
                             f"{ATTACKER} port 4{n} ssh2: RSA SHA256:k{n}\n")  # fmt: skip
        wait_for(lambda: log_alerts(engine), "the aggressive jail's alert")
        time.sleep(1.0)
        jails = {j["name"]: j for j in request(engine, "logs.status")["jails"]}
        assert [a["rule"] for a in log_alerts(engine)] == ["aggressive"]
        assert jails["normal"]["alerts"] == 0 and jails["aggressive"]["alerts"] == 1
        assert jails["typo"]["state"].startswith("error:")
        assert "no mode 'agressive'" in jails["typo"]["state"]
    finally:
        engine.stop()


# Every line is a failure of its own host, so that each line processed is one alert.
ONE_PER_LINE = """
name = "each"
failregex = ["^seq \\\\d+ from <HOST>$"]
"""


class Writer(threading.Thread):
    """Appends numbered lines, reopening the file for each block as a daemon that is told to
    reopen after a rotation would; ``lock`` keeps a rotation between two blocks."""

    def __init__(self, log: Path) -> None:
        super().__init__(daemon=True)
        self.log = log
        self.lock = threading.Lock()
        self.written = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            with self.lock, self.log.open("a") as handle:
                for _ in range(20):
                    n = self.written
                    handle.write(f"seq {n} from 10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}\n")
                    self.written += 1
            time.sleep(0.002)


def test_every_line_once_through_rotation_truncation_deletion_and_restart(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "app.log"
    log.parent.mkdir()
    log.write_text("")
    (tmp_path / "each.toml").write_text(ONE_PER_LINE)
    config = jail_config(
        log, name='"each"', filters=f'["{tmp_path / "each.toml"}"]', maxretry="1", ban="false"
    )
    directory = tmp_path / "engine"
    engine = start_engine(directory, config)
    writer = Writer(log)
    copies = 0

    def rotate(how: str) -> None:
        nonlocal copies
        with writer.lock:
            for n in range(copies, 0, -1):  # logrotate's numbering: .1 is the newest copy
                os.rename(f"{log}.{n}", f"{log}.{n + 1}")
            copies += 1
            if how == "rename":
                log.rename(f"{log}.1")
            elif how == "copytruncate":
                shutil.copyfile(log, f"{log}.1")
                os.truncate(log, 0)
            else:  # deleted: the copy is only there to keep the numbering
                shutil.copyfile(log, f"{log}.1")
                log.unlink()

    try:
        writer.start()
        for how in ("rename", "copytruncate", "delete", "copytruncate"):
            time.sleep(0.4)
            rotate(how)
        time.sleep(0.3)
        assert engine.stop() == 0  # in the middle of the file, the writer still writing
        time.sleep(0.2)
        rotate("rename")  # and a rotation while the engine is not running
        time.sleep(0.2)
        engine = start_engine(directory, config)
        time.sleep(0.4)
        rotate("copytruncate")
        time.sleep(0.3)
        writer.done.set()
        writer.join()

        def counted() -> tuple[int, int]:
            with sqlite3.connect(f"file:{engine.db}?mode=ro", uri=True) as conn:
                rows, total = conn.execute("SELECT count(*), total(count) FROM alerts").fetchone()
            return rows, int(total)

        wait_for(lambda: counted()[1] >= writer.written, "every line's alert", timeout=30)
        time.sleep(1.0)  # anything read twice would arrive by now
        assert writer.written > 2000
        assert counted() == (writer.written, writer.written)
        followed = request(engine, "logs.status")["files"][0]
        assert followed["truncations"] == 1 and followed["state"] == "following"
    finally:
        writer.done.set()
        engine.stop()


def send_udp(port: int, message: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(message, ("127.0.0.1", port))


def test_syslog_from_devices_over_udp_and_tcp_reaches_its_jail(tmp_path: Path) -> None:
    extra = '[logwatch.syslog]\nenabled = true\naddress = "127.0.0.1"\nport = 0\n'
    config = jail_config(
        Path("/nonexistent"),
        extra,
        name='"dropbear"',
        filters='["dropbear", "mosquitto"]',
        files="[]",
        syslog="true",
    )
    engine = start_engine(tmp_path / "engine", config)
    try:
        syslog = request(engine, "logs.status")["syslog"]
        assert syslog["enabled"] and syslog["udp_port"] and syslog["tcp_port"]
        send_udp(
            syslog["udp_port"],
            b"<86>Nov 24 03:01:02 cam1 dropbear[77]: Bad password "
            b"attempt for 'root' from 198.51.100.20:40000",
        )
        send_udp(syslog["udp_port"], b"not syslog at all")
        frame = (
            b"<86>1 2026-11-24T03:01:03Z cam1 dropbear 77 - - Bad password attempt for "
            b"'admin' from 198.51.100.20:40001"
        )
        with socket.create_connection(("127.0.0.1", syslog["tcp_port"])) as sock:
            sock.sendall(str(len(frame)).encode() + b" " + frame)
            sock.sendall(
                b"<86>Nov 24 03:01:04 cam1 dropbear[77]: Bad password attempt for "
                b"'user' from 198.51.100.20:40002\n"
            )
        alert = wait_for(lambda: log_alerts(engine), "the jail's alert")[0]
        assert alert["rule"] == "dropbear" and alert["src"] == "198.51.100.20"
        assert len(alert["evidence"]["lines"]) == 3
        status = request(engine, "logs.status")["syslog"]
        assert status["received"] == 4 and status["malformed"] == 1  # received: all that came
        tail = request(engine, "logs.tail", {"source": "syslog"})["lines"]
        assert [row.get("host") for row in tail] == ["198.51.100.20"] * 3
    finally:
        engine.stop()


def test_logs_follow_highlights_failures(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("Nov 24 03:00:00 gw sshd[1]: Server listening on 0.0.0.0 port 22.\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "logs", "follow", str(log), "--filter", "sshd"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)
        with log.open("a") as handle:
            handle.write(failed(1, "2001:db8::7"))
            handle.write("Nov 24 03:10:00 gw sshd[2]: Connection closed by 192.0.2.4\x1b[31m\n")
        time.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    lines = out.splitlines()
    assert lines[0].endswith("Server listening on 0.0.0.0 port 22.")
    assert lines[1].startswith("[sshd 2001:db8::7] Nov 24 03:11:01")
    assert lines[2].endswith("Connection closed by 192.0.2.4\\x1b[31m")
    assert proc.returncode == 0, err
