"""The serial console's plain parts, without Textual: a session's byte stream kept in step with
the engine's events (a gap the console missed filled from the scrollback, the bytes after it
held back meanwhile), its state markers, and the prefix commands. Fed the real XM530 boot log."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

from console.serial.prefix import COMMANDS, PrefixCommands
from console.serial.stream import Session
from tests.conftest import DATA

BOOT = (DATA / "boot" / "debauer_XM530_ipcam_u-boot_output.md").read_bytes()
T0 = 1_700_000_000.0
SETTINGS = {"map_in": "lf", "map_out": "cr", "echo": False}


def answer(offset: int, data: bytes, stamps: list[list[float]] | None = None) -> dict[str, Any]:
    """What ``serial.read`` (or the data part of ``serial.get``) says of ``data`` at
    ``offset``."""
    return {
        "offset": offset,
        "data": base64.b64encode(data).decode(),
        "stamps": stamps if stamps is not None else [[offset, T0]],
    }


def attached(offset: int = 0, data: bytes = b"", **info: Any) -> Session:
    got = {
        "id": 3,
        "name": "ttyCAM",
        "state": "connected",
        "settings": dict(SETTINGS),
        "tx": 0,
        **answer(offset, data),
        **info,
    }
    return Session.attached(got)


def text(session: Session) -> bytes:
    buffer = session.buffer
    return b"\n".join(buffer.line(i).data for i in range(buffer.line_count))


def batches(data: bytes, size: int, start: int = 0) -> list[tuple[int, bytes]]:
    return [(start + n, data[n : n + size]) for n in range(0, len(data), size)]


def test_the_textual_free_parts_import_without_textual() -> None:
    code = (
        "import json, sys\n"
        "import console.serial.stream, console.serial.prefix\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert not [m for m in json.loads(out.stdout) if m.split(".")[0] == "textual"]


def test_a_session_attached_from_its_scrollback_shows_the_tail_and_goes_on_from_it() -> None:
    head, tail = BOOT[:2000], BOOT[2000:]
    session = attached(offset=1000, data=head[1000:], report={"kernel": {"version": "3.10"}})
    assert session.id == 3 and session.report == {"kernel": {"version": "3.10"}}
    assert session.buffer.end == 2000
    for offset, data in batches(tail, 300, start=2000):
        assert not session.received(offset, T0, data)
    assert session.buffer.end == len(BOOT)
    assert text(session) == BOOT[1000:].replace(b"\r\n", b"\n").rstrip(b"\n")


def test_a_gap_is_fetched_and_the_bytes_after_it_wait_for_it() -> None:
    session = attached()
    events = batches(BOOT, 256)
    missed = {3, 4, 5}  # events the console dropped
    fetches = []
    for n, (offset, data) in enumerate(events):
        if n in missed:
            continue
        if session.received(offset, T0 + n, data):
            fetches.append(session.gap_start)
    # One fetch, from where the console's bytes end; what came meanwhile waits.
    assert fetches == [3 * 256]
    assert session.fetching and session.buffer.end == 3 * 256
    assert [offset for offset, _, _ in session.pending] == [o for o, _ in events[6:]]

    # The engine answers with everything it holds from there (up to when it was asked).
    assert not session.fill(answer(3 * 256, BOOT[3 * 256 : 7 * 256]))
    assert not session.fetching and not session.pending
    assert session.buffer.end == len(BOOT)
    assert text(session) == BOOT.replace(b"\r\n", b"\n").rstrip(b"\n")


def test_a_gap_still_open_after_a_fetch_is_fetched_again() -> None:
    session = attached()
    assert not session.received(0, T0, BOOT[:100])
    assert session.received(300, T0, BOOT[300:400])
    assert not session.received(600, T0, BOOT[600:700])
    # The scrollback answer covers the first hole only: a second one is left before 600.
    assert session.fill(answer(100, BOOT[100:500]))
    assert session.fetching and session.gap_start == 500
    assert [offset for offset, _, _ in session.pending] == [600]
    assert not session.fill(answer(500, BOOT[500:600]))
    assert session.buffer.end == 700 and not session.pending


def test_bytes_older_than_the_engine_keeps_are_said_to_be_lost() -> None:
    session = attached()
    assert not session.received(0, T0, b"U-Boot 2014.04\n")
    assert session.received(9000, T0, b"Starting kernel ...\n")
    assert not session.fill(answer(8000, b"x" * 999 + b"\n"))
    lines = text(session).split(b"\n")
    assert lines[0] == b"U-Boot 2014.04"
    assert b"7985 bytes not shown: the console fell behind" in lines[1]
    assert lines[-1] == b"Starting kernel ..."


def test_a_failed_fetch_drops_what_waited() -> None:
    session = attached()
    assert session.received(100, T0, b"later")
    session.fill_failed()
    assert not session.fetching and not session.pending
    assert session.buffer.end == 0


def test_each_fetched_batch_keeps_the_time_it_arrived() -> None:
    session = attached(data=b"one\ntwo\n", **{"stamps": [[0, T0], [4, T0 + 5]]})
    assert [session.buffer.line(i).ts for i in range(2)] == [T0, T0 + 5]


def test_unplugged_and_back_are_marked_among_the_lines() -> None:
    session = attached(data=b"# ")
    session.changed({"state": "reconnecting", "reason": "device unplugged\x1b[2J"}, lambda: T0)
    session.changed(
        {"state": "connected", "connected_since": T0 + 7, "settings": {**SETTINGS, "map_in": "cr"}}
    )
    lines = [session.buffer.line(i).data for i in range(session.buffer.line_count)]
    assert lines[0] == b"# "
    assert lines[1].startswith(b"\x1b[7m[disconnected ") and b"device unplugged" in lines[1]
    assert b"\x1b[2J" not in lines[1]  # the reason came from elsewhere: escaped
    assert lines[2].startswith(b"\x1b[7m[reconnected ")
    assert session.buffer.map_in == "cr"
    # Settings alone (baud, echo) mark nothing.
    session.changed({"settings": {**SETTINGS, "echo": True}})
    assert session.buffer.line_count == 3


def test_what_is_sent_is_counted_and_echoed_when_echo_is_on() -> None:
    session = attached()
    session.sent(T0, b"help\r")
    assert session.info["tx"] == 5 and session.buffer.line_count == 0
    session.changed({"settings": {**SETTINGS, "echo": True, "map_out": "crlf"}})
    session.sent(T0, b"ls\n")
    assert session.info["tx"] == 8
    assert session.buffer.line(0).data == b"ls" and session.buffer.end == 0
    assert session.enter == b"\r\n"


def test_the_device_a_session_is_attached_to() -> None:
    assert attached().device is None
    assert attached(device="12").device == "12"


# -- prefix commands -------------------------------------------------------------------------


def test_the_prefix_again_asks_for_a_command() -> None:
    commands = PrefixCommands(" Ctrl+T ")
    assert commands.prefix == "ctrl+t" and commands.name == "Ctrl-T"
    resolved = commands.resolve("ctrl+t")
    assert (resolved.kind, resolved.value) == ("prompt", "Ctrl-T: command? (? lists them)")


def test_digits_show_the_apps_panes_and_are_unknown_without_them() -> None:
    console = PrefixCommands("ctrl+t", ("traffic", "devices", "alerts", "serial"))
    assert [console.resolve(k).value for k in "1234"] == ["traffic", "devices", "alerts", "serial"]
    assert {console.resolve(k).kind for k in "1234"} == {"pane"}
    assert console.resolve("5").kind == "unknown"
    bench = PrefixCommands("ctrl+t")
    resolved = bench.resolve("1")
    assert resolved.kind == "unknown"
    assert resolved.value == "Ctrl-T 1: no such command (? lists them)"


def test_every_listed_command_resolves_and_others_do_not() -> None:
    commands = PrefixCommands("ctrl+a")
    listed = [key for _, key, _ in COMMANDS if key != "1"]
    assert {commands.resolve(key).kind for key in [*listed, "right", "N"]} == {"command"}
    assert commands.resolve("question_mark").value == "question_mark"
    for key in ("z", "ctrl+t", "enter", "view"):
        resolved = commands.resolve(key)
        assert resolved.kind == "unknown" and resolved.value.startswith(f"Ctrl-A {key}: ")


def test_the_listing_names_the_prefix_and_ends_with_sending_it() -> None:
    rows = PrefixCommands("ctrl+t").listing()
    assert rows[0] == ("Ctrl-T ?", "list these commands")
    assert ("Ctrl-T /", "search the scrollback") in rows
    assert rows[-1] == ("Ctrl-T Ctrl-T", "send the prefix key itself")
    assert len(rows) == len(COMMANDS) + 1
