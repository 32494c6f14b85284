"""Serial sessions in a real engine, on a real pty pair (socat) with the camera emulator on the
far end replaying tests/data/boot's U-Boot session, then a BusyBox root shell."""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import serial

from engine.config import SerialConfig
from engine.control.client import Client
from engine.control.protocol import ControlError
from engine.lab.serial_device import NOISE
from engine.serial.ports import open_problem
from engine.serial.transcript import read_transcript
from tests.conftest import (
    BOOT_LOG,
    LOOPBACK_SCOPE,
    EchoListener,
    EngineProcess,
    SerialDevice,
    require_root,
    run_as,
    start_serial_engine,
    wait_for,
)


class Events:
    """Everything published on the serial topic, collected by a thread of its own."""

    def __init__(self, engine: EngineProcess) -> None:
        self.client = engine.client("events")
        self.client.request("subscribe", {"topics": ["serial", "alerts"]})
        self.seen: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        try:
            while True:
                self.seen.append(self.client.next_event())
        except (ControlError, OSError, ValueError):
            return

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [
            e["data"]
            for e in list(self.seen)
            if e["event"] == "serial" and e["data"]["kind"] == kind
        ]

    def received(self, sid: int) -> bytes:
        return b"".join(base64.b64decode(d["data"]) for d in self.of("rx") if d["session"] == sid)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def serial_engine(tmp_path: Path) -> Any:
    engine = start_serial_engine(tmp_path, '[serial.macros]\nversion = "version\\n"\n')
    yield engine
    engine.stop()


def received(client: Client, sid: int) -> bytes:
    """What the session received so far, from the engine's scrollback."""
    return base64.b64decode(client.request("serial.read", {"id": sid, "offset": 0})["data"])


def text_of(client: Client, sid: int) -> str:
    return received(client, sid).decode(errors="replace")


def findings_of(client: Client, sid: int) -> dict[str, dict[str, Any]]:
    report = client.request("serial.get", {"id": sid, "tail": 0})["report"]
    return {f["kind"]: f for f in report["findings"]}


def test_a_session_sees_the_boot_and_the_shell_answers(
    serial_engine: EngineProcess, serial_device: SerialDevice
) -> None:
    events = Events(serial_engine)
    client = serial_engine.client()
    info = client.request("serial.open", {"port": str(serial_device.path)})
    sid = info["id"]
    assert info["state"] == "connected" and info["describe"] == "115200 8N1"
    wait_for(lambda: "/ # " in text_of(client, sid), "the root shell prompt")
    found = wait_for(
        lambda: (f := findings_of(client, sid)).get("root-shell-no-login") and f,
        "the root-shell finding",
    )
    assert found["bootloader"]["title"] == "Bootloader: U-Boot 2014.04"
    assert "init=/bin/ash" in found["init-shell"]["title"]
    assert found["root-shell-no-login"]["severity"] == "critical"
    report = client.request("serial.get", {"id": sid})["report"]
    assert report["bootloader"] == {"name": "U-Boot", "version": "2014.04"}
    assert report["kernel"]["version"] == "3.10.103+"
    assert "init=/bin/ash" in report["kernel"]["cmdline"]
    assert report["busybox"]["version"] == "1.20.2"
    assert [p["name"] for p in report["mtd"]][:3] == ["boot", "kernel", "romfs"]

    client.request("serial.write", {"id": sid, "text": "id\n"})
    wait_for(lambda: "uid=0(root)" in text_of(client, sid), "the shell's answer to id")
    client.request("serial.write", {"id": sid, "data": base64.b64encode(b"whoami\r").decode()})
    wait_for(lambda: "whoami\r\nroot" in text_of(client, sid), "the answer to whoami")
    assert client.request("serial.list")[0]["tx"] == len("id\r") + len("whoami\r")
    # Bytes from a wrong baud rate or a binary file: kept exactly as they came.
    client.request("serial.write", {"id": sid, "text": "noise\n"})
    wait_for(lambda: NOISE in received(client, sid), "the noise")

    # The serious findings are alerts, from the serial part.
    alerts = wait_for(
        lambda: [a for a in client.request("alerts.list") if a["source"] == "serial"],
        "serial alerts",
    )
    titles = {a["title"] for a in alerts}
    assert any(t.startswith("Root shell on the serial console without a login") for t in titles)
    assert all(a["severity"] in ("high", "critical") for a in alerts)

    closed = client.request("serial.close", {"id": sid})
    assert closed["state"] == "closed"
    # Every received byte is in the transcript exactly as the events carried it.
    transcript = read_transcript(Path(closed["transcript"]))
    wait_for(
        lambda: events.received(sid) == transcript.received, "events matching the transcript", 5
    )
    assert b"U-Boot 2014.04" in transcript.received
    assert NOISE in transcript.received
    sent = [c for _ts, tag, c in transcript.records if tag == ">"]
    assert sent == [b"id\r", b"whoami\r", b"noise\r"]
    assert Path(closed["transcript"]).name.startswith("ttyCAM-")
    events.close()
    # The store has the session's summary with its report.
    row = (
        sqlite3.connect(serial_engine.db)
        .execute(
            "SELECT device, ended, bytes_rx, bytes_tx, summary FROM serial_sessions WHERE id = ?",
            (sid,),
        )
        .fetchone()
    )
    assert row[0] == "ttyCAM" and row[1] is not None
    assert row[2] == len(transcript.received) and row[3] == 16
    assert json.loads(row[4])["report"]["bootloader"]["version"] == "2014.04"


def test_unplug_refuses_input_and_replug_reconnects(
    serial_engine: EngineProcess, serial_device: SerialDevice
) -> None:
    client = serial_engine.client()
    sid = client.request("serial.open", {"port": str(serial_device.path)})["id"]
    wait_for(lambda: "/ # " in text_of(client, sid), "the shell")
    serial_device.unplug()
    state = wait_for(
        lambda: (s := client.request("serial.list")[0])["state"] == "reconnecting" and s,
        "the session to notice the unplug",
    )
    assert "gone" in state["reason"]
    with pytest.raises(ControlError, match="reconnecting: 3 bytes not sent"):
        client.request("serial.write", {"id": sid, "text": "id\n"})
    serial_device.plug()
    plugged = time.monotonic()
    wait_for(lambda: client.request("serial.list")[0]["state"] == "connected", "the reconnect", 5)
    assert time.monotonic() - plugged < 1.5
    wait_for(
        lambda: text_of(client, sid).count("U-Boot 2014.04 (Nov 18 2019") >= 4,
        f"the second boot {text_of(client, sid)[-3000:]!r}",
    )
    assert client.request("serial.list")[0]["reconnects"] == 1


def test_settings_macros_lines_and_a_second_session(
    serial_engine: EngineProcess, serial_device: SerialDevice, tmp_path: Path
) -> None:
    client = serial_engine.client()
    sid = client.request(
        "serial.open",
        {"port": str(serial_device.path), "settings": {"baud": 57600, "parity": "even"}},
    )["id"]
    info = client.request(
        "serial.set", {"id": sid, "settings": {"baud": 921600, "map_out": "crlf"}}
    )
    assert info["describe"] == "921600 8E1" and info["settings"]["map_out"] == "crlf"
    with pytest.raises(ControlError, match="parity: expected one of"):
        client.request("serial.set", {"id": sid, "settings": {"parity": "sideways"}})
    with pytest.raises(ControlError, match="unknown setting 'speed'"):
        client.request("serial.set", {"id": sid, "settings": {"speed": 9600}})
    # A pty has no modem lines: the wanted state is kept (and applied on a real port).
    info = client.request("serial.line", {"id": sid, "line": "dtr", "action": "toggle"})
    assert info["lines"]["dtr"] is False and info["lines"]["cts"] is None
    client.request("serial.break", {"id": sid, "ms": 50})
    wait_for(lambda: "/ # " in text_of(client, sid), "the shell")
    assert client.request("serial.macros") == {"version": "version\n"}
    assert client.request("serial.macro", {"id": sid, "name": "version"})["sent"] == 9  # CR LF
    wait_for(lambda: "-sh: version: not found" in text_of(client, sid), "the macro's answer")
    with pytest.raises(ControlError, match="no macro 'nope'"):
        client.request("serial.macro", {"id": sid, "name": "nope"})
    with pytest.raises(ControlError, match="open already as session"):
        client.request("serial.open", {"port": str(serial_device.path)})

    second = SerialDevice(tmp_path / "ttyROUTER", [], tmp_path / "router.log")
    second.plug()
    try:
        other = client.request("serial.open", {"port": str(second.path)})["id"]
        wait_for(lambda: "/ # " in text_of(client, other), "the second device's shell", 20)
        assert "XM530 # " not in text_of(client, other)
        assert sorted(s["name"] for s in client.request("serial.list")) == ["ttyCAM", "ttyROUTER"]
        client.request("serial.close", {"id": other})
    finally:
        second.unplug()
    # The transcript notes what changed.
    notes = [c for _t, tag, c in read_transcript(Path(info["transcript"])).records if tag == "#"]
    assert any(n.startswith(b"settings 921600 8E1") for n in notes)
    assert b"dtr toggle" in notes and b"macro version" in notes


def test_opening_refusals_say_what_to_do(tmp_path: Path, echo_listener: EchoListener) -> None:
    engine = start_serial_engine(tmp_path, LOOPBACK_SCOPE)
    url = f"socket://127.0.0.1:{echo_listener.port}"
    try:
        client = engine.client()
        with pytest.raises(ControlError, match="no such device; is the adapter plugged in"):
            client.request("serial.open", {"port": str(tmp_path / "ttyUSB9")})
        with pytest.raises(ControlError, match="baud: a positive whole number"):
            client.request("serial.open", {"port": url, "settings": {"baud": -5}})
        with pytest.raises(ControlError, match=r"loop://: refused \(url-scheme\)"):
            client.request("serial.open", {"port": "loop://"})
        echo = client.request("serial.open", {"port": url})
        client.request("serial.write", {"id": echo["id"], "text": "echo\n"})
        wait_for(lambda: received(client, echo["id"]) == b"echo\r", "the echo")
        sessions = client.request("serial.sessions")
        assert sessions[0]["name"] == f"socket-127.0.0.1-{echo_listener.port}"
        # The open that failed is recorded with its reason; the refused ones never started.
        assert "is the adapter plugged in?" in sessions[1]["summary"]["error"]
        assert len(sessions) == 2
    finally:
        engine.stop()


def test_without_permission_the_error_names_the_group() -> None:
    require_root("opening a device as another user")
    directory = Path(tempfile.mkdtemp(prefix="iotsec-perm-"))
    try:
        directory.chmod(0o755)  # others may look inside, as in /dev
        device = directory / "ttyS9"
        # A device node like a USB adapter's: root's, group dialout, 0660.
        os.mknod(device, 0o660 | stat.S_IFCHR, os.makedev(4, 73))
        os.chown(device, 0, grp.getgrnam("dialout").gr_gid)
        os.chmod(device, 0o660)
        message = _as_nobody(lambda: _open_problem(str(device)))
    finally:
        shutil.rmtree(directory)
    assert message.startswith(f"{device}: permission denied (crw-rw----, group dialout).")
    assert "`sudo usermod -aG dialout nobody`, then log out and back in" in message


def _open_problem(path: str) -> str:
    try:
        serial.Serial(path)
    except serial.SerialException as exc:
        return open_problem(path, exc)
    return "opened"


def _as_nobody(fn: Callable[[], str]) -> str:
    """``fn()`` in a child that has become the user nobody (no groups), its answer."""
    nobody = pwd.getpwnam("nobody")

    def as_nobody() -> str:
        os.environ["USER"] = "nobody"  # what the permission message names
        return fn()

    return run_as(nobody.pw_uid, nobody.pw_gid, [], as_nobody)


def test_findings_go_on_the_attached_device_and_scans_do_not_resolve_them(
    tmp_path: Path, serial_device: SerialDevice
) -> None:
    engine = start_serial_engine(tmp_path, LOOPBACK_SCOPE)
    try:
        client = engine.client()

        def scan() -> None:
            run = client.request(
                "scan.start", {"targets": ["127.0.0.1"], "ports": "1", "udp": False}
            )
            wait_for(
                lambda: client.request("scan.get", {"id": run["id"]})["state"] == "done",
                "the scan",
            )

        scan()
        device = client.request("devices.list")[0]
        sid = client.request(
            "serial.open", {"port": str(serial_device.path), "device": "127.0.0.1"}
        )["id"]
        assert client.request("serial.list")[0]["device"] == str(device["id"])
        wait_for(lambda: "root-shell-no-login" in findings_of(client, sid), "the boot analysis")

        def serial_findings() -> dict[str, Any]:
            found = client.request("findings.list", {"device": str(device["id"])})
            return {f["kind"]: f for f in found if f["source"] == "serial"}

        found = wait_for(
            lambda: "root-shell-no-login" in (f := serial_findings()) and f,
            "the findings on the device",
        )
        assert found["init-shell"]["state"] == "open"
        scan()  # a network scan cannot see a serial console: its findings stay open
        assert serial_findings().keys() == found.keys()
        assert all(f["state"] == "open" for f in serial_findings().values())
        risk = client.request("devices.get", {"device": str(device["id"])})["risk"]
        assert risk >= 50
        with pytest.raises(ControlError, match="no device 'nope'"):
            client.request("serial.attach", {"id": sid, "device": "nope"})
    finally:
        engine.stop()


def test_the_default_login_check_through_the_session(
    serial_engine: EngineProcess, tmp_path: Path
) -> None:
    device = SerialDevice(
        tmp_path / "ttyLOGIN", ["--user", "admin", "--password", "admin"], tmp_path / "l.log"
    )
    device.plug()
    try:
        client = serial_engine.client()
        sid = client.request("serial.open", {"port": str(device.path)})["id"]
        wait_for(lambda: "login-prompt" in findings_of(client, sid), "the login prompt")
        assert "root-shell-no-login" not in findings_of(client, sid)
        done = serial_engine.cli("serial", "login", str(sid), "--json")
        result = json.loads(done.stdout)
        # Mirai's table, in order: root/xc3511, root/vizxv, root/admin, then admin/admin.
        assert result["works"] == {"user": "admin", "password": "admin", "source": "Mirai"}
        assert result["tried"] == 4
        found = findings_of(client, sid)["default-credential"]
        assert found["severity"] == "critical" and "admin with 'admin'" in found["evidence"]
        # The shell it reached was logged out of: the getty asks again.
        wait_for(lambda: text_of(client, sid).rstrip().endswith("login:"), "the logout")
        alerts = client.request("alerts.list")
        assert any(
            a["title"].startswith("Default login works on the serial console (admin)")
            for a in alerts
        )
        sent = [
            c
            for _t, tag, c in read_transcript(
                Path(client.request("serial.list")[0]["transcript"])
            ).records
            if tag == ">"
        ]
        assert b"admin\r" in sent and b"exit\r" in sent
    finally:
        device.unplug()


def test_the_cli_lists_ports_sessions_and_analyses_a_transcript(
    serial_engine: EngineProcess, serial_device: SerialDevice
) -> None:
    client = serial_engine.client()
    sid = client.request("serial.open", {"port": str(serial_device.path)})["id"]
    wait_for(lambda: "/ # " in text_of(client, sid), "the shell")
    listed = json.loads(serial_engine.cli("serial", "list", "--json").stdout)
    assert listed["sessions"][0]["path"] == str(serial_device.path)
    assert isinstance(listed["ports"], list)  # ptys are not listed; real adapters would be
    status = serial_engine.cli("status").stdout
    assert "serial" in status and "1 sessions (1 connected)" in status
    transcript = client.request("serial.close", {"id": sid})["transcript"]
    text = serial_engine.cli("serial", "sessions").stdout
    assert "ttyCAM" in text and "U-Boot 2014.04" in text and transcript in text
    report = json.loads(serial_engine.cli("serial", "analyze", transcript, "--json").stdout)
    assert report["bootloader"] == {"name": "U-Boot", "version": "2014.04"}
    assert report["kernel"]["version"] == "3.10.103+"
    assert report["busybox"] == {"version": "1.20.2"}
    assert [set(p) >= {"name", "start", "end"} for p in report["mtd"]] == [True] * 6
    kinds = {f["kind"] for f in report["findings"]}
    assert {"root-shell-no-login", "init-shell", "bootloader"} <= kinds
    # The recorded session, as a technician pasted it into Markdown.
    pasted = serial_engine.cli("serial", "analyze", str(BOOT_LOG)).stdout
    assert "U-Boot 2014.04" in pasted and "init=/bin/ash" in pasted
    missing = serial_engine.cli("serial", "analyze", "/nonexistent/boot.log", check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_a_port_from_the_config_waits_for_its_device(tmp_path: Path) -> None:
    path = tmp_path / "ttyLATER"
    engine = start_serial_engine(tmp_path, f'open = ["{path}"]\n')
    device = SerialDevice(path, [], tmp_path / "later.log")
    try:
        client = engine.client()
        waiting = client.request("serial.list")[0]
        assert waiting["state"] == "reconnecting" and "no such device" in waiting["reason"]
        device.plug()
        wait_for(lambda: client.request("serial.list")[0]["state"] == "connected", "the device", 5)
        wait_for(lambda: "U-Boot 2014.04" in text_of(client, waiting["id"]), "its boot")
    finally:
        device.unplug()
        engine.stop()


def test_transcripts_go_next_to_the_database_unless_configured() -> None:
    database = Path("/srv/lab/engine/iotsec.db")
    assert SerialConfig().transcripts(database) == Path("/srv/lab/engine/serial")
    mine = SerialConfig(transcript_dir="/data/transcripts")
    assert mine.transcripts(database) == Path("/data/transcripts")
