"""The Serial pane driven with Pilot against a real engine and a real pty pair (socat) with the
camera emulator on the far end: the boot shows, typed commands reach the device and replies
come back, hostile bytes are shown escaped, hex and timestamps, search, long lines wrapped or
cut, unplug and replug with their markers, a status line that fits 80 columns, and snapshots of
the full-screen bench tool in text and hex mode."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import console_for, in_utc, request, wait_until
from textual.content import Content
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from console.panes.serial import SerialPane
from console.serial.app import SerialApp
from console.serial.status import fit_status
from engine.config import load_config
from tests.conftest import LOOPBACK_SCOPE, EngineProcess, SerialDevice, start_serial_engine

SIZE = (100, 30)


@pytest.fixture
def serial_engine(tmp_path: Path) -> Iterator[EngineProcess]:
    engine = start_serial_engine(tmp_path)
    yield engine
    engine.stop()


def screen_text(pane: SerialPane) -> str:
    return "\n".join(pane.view.visible_text())


def last_lines(pane: SerialPane, count: int = 40) -> str:
    """The newest lines, whole (the view may show only their start)."""
    total = pane.view.buffer.line_count
    return "\n".join(pane.view.line_text(i) for i in range(max(total - count, 0), total))


def status(pane: SerialPane) -> str:
    return str(pane.query_one("#serial-status").render())


def drawn_characters(pane: SerialPane) -> str:
    """Every character the view hands to the terminal, as drawn (styles aside)."""
    return "".join(
        s.text for y in range(pane.view.size.height) for s in pane.view.render_line(y)._segments
    )


async def type_text(pilot: Any, text: str) -> None:
    await pilot.press(*[{" ": "space", "/": "slash", "-": "minus"}.get(c, c) for c in text])


async def test_the_pane_opens_a_port_shows_the_boot_and_talks_to_the_shell(
    serial_engine: EngineProcess, serial_device: SerialDevice, tmp_path: Path
) -> None:
    app = console_for(serial_engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        await pilot.press("4")
        pane = app.serial
        assert pane.view.has_focus
        assert "No serial session" in str(pane.query_one("#serial-hint").render())
        await pilot.press("ctrl+t", "o")
        dialog = app.screen.query_one(Input)
        dialog.value = str(serial_device.path)
        await pilot.press("enter")
        await wait_until(pilot, lambda: "/ #" in screen_text(pane), "the root shell", 20)
        assert "BusyBox v1.20.2" in screen_text(pane)
        assert status(pane).startswith("ttyCAM connected  115200 8N1  RX ")
        # The boot log's findings are beside the session (the pane is wide enough).
        await wait_until(
            pilot,
            lambda: "Root shell" in str(pane.query_one("#serial-findings-text").render()),
            "the findings column",
        )
        findings = str(pane.query_one("#serial-findings-text").render())
        assert "U-Boot 2014.04" in findings and "CRIT" in findings

        # Typing goes to the device: even "q", "1" and "?" (console keys elsewhere).
        await type_text(pilot, "id")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "uid=0(root)" in screen_text(pane), "the answer to id")
        await type_text(pilot, "q1?")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "-sh: q1?: not found" in screen_text(pane), "q1?")
        assert app.query_one("#panes").active == "serial"

        # Hostile bytes: shown escaped, never drawn as controls.
        await type_text(pilot, "noise")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "red done" in last_lines(pane), "the noise")
        text = last_lines(pane)
        assert "\\x9b31m\\x85\\x8d\\x90\\x9c\\x9f \\xff\\xfe\\xc3(" in text
        assert "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[?1049h" in text
        drawn = drawn_characters(pane) + text.replace("\n", "")
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in drawn)
        assert "\ufffd" not in drawn  # invalid UTF-8 is shown as its bytes, not replaced
        # The device's colour is drawn as a colour; the escapes are marked out.
        noise = pane.view.buffer.line_count - 2
        styles = {seg.text: seg.style for seg in pane.view._segments(noise)}
        assert styles["red"].color.name == "red"
        marked = next(style for text, style in styles.items() if "\\x85" in text)
        assert marked.bgcolor.name == "yellow"

        # Hex view and timestamps, from the prefix.
        await pilot.press("ctrl+t", "h")
        await pilot.pause(0.1)
        assert "1b 5b 33 31 6d 72 65 64" in screen_text(pane) or "72 65 64" in screen_text(pane)
        assert " hex" in status(pane)
        await pilot.press("ctrl+t", "h", "ctrl+t", "t")
        await pilot.pause(0.1)
        assert "ts:absolute" in status(pane)
        # HH:MM:SS.mmm before each line; the rows a long line wraps onto leave the column blank.
        rows = [row for row in screen_text(pane).splitlines() if row]
        assert all(row[2] == ":" or not row[:13].strip() for row in rows)
        assert sum(row[2] == ":" for row in rows) > len(rows) // 2

        # A file sent raw: its bytes reach the shell as typed.
        commands = tmp_path / "commands.txt"
        commands.write_bytes(b"uname -a\r")
        await pilot.press("ctrl+t", "F")
        app.screen.query_one(Input).value = str(commands)
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: "armv7l GNU/Linux" in last_lines(pane), "the file's command"
        )

        # Search the scrollback.
        await pilot.press("ctrl+t", "slash")
        app.screen.query_one(Input).value = "Kernel command line"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "Kernel command line" in screen_text(pane), "the match")

        # Unplug, then replug at the same path: the session comes back on its own.
        serial_device.unplug()
        await wait_until(pilot, lambda: "reconnecting" in status(pane), "the unplug", 10)
        await type_text(pilot, "x")
        await pilot.pause(0.2)
        serial_device.plug()
        await wait_until(pilot, lambda: " connected" in status(pane), "the replug", 10)
        sessions = request(serial_engine, "serial.list")
        assert sessions[0]["reconnects"] == 1
        assert sessions[0]["tx"] == len("id\rq1?\rnoise\runame -a\r")


async def test_the_empty_state_is_our_lines_with_only_the_engines_words_escaped(
    serial_engine: EngineProcess, tmp_path: Path
) -> None:
    app = console_for(serial_engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        await pilot.press("4")
        hint = app.serial.query_one("#serial-hint")
        await wait_until(pilot, lambda: "Ports found" in str(hint.render()), "the hint")
        lines = str(hint.render()).split("\n")
        assert len(lines) == 2 and "\\x0a" not in str(hint.render())
        assert lines[0].startswith("No serial session. Ctrl-T o opens a port by path or URL")
        assert lines[1].startswith("Ports found: ")
        # A port that cannot be opened: the engine's words (with the hostile path in them) are
        # escaped on a line of their own above ours.
        await pilot.press("ctrl+t", "o")
        app.screen.query_one(Input).value = str(tmp_path / "ttyNONE\x1b[2J")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "ttyNONE" in str(hint.render()), "the problem")
        lines = str(hint.render()).split("\n")
        assert len(lines) == 3 and "ttyNONE\\x1b[2J" in lines[0] and "\x1b" not in lines[0]
        assert lines[1].startswith("No serial session.") and lines[2].startswith("Ports found: ")


async def test_prefix_question_mark_lists_the_commands(
    serial_engine: EngineProcess, serial_device: SerialDevice, tmp_path: Path
) -> None:
    request(serial_engine, "serial.open", {"port": str(serial_device.path)})
    app = console_for(serial_engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        await pilot.press("4")
        await wait_until(pilot, lambda: app.serial.sessions, "the open session")
        await pilot.press("ctrl+t", "question_mark")
        await pilot.pause(0.1)
        listed = "\n".join(str(w.render()) for w in app.screen.query("*") if hasattr(w, "render"))
        for word in (
            "baud",
            "line ending",
            "hex",
            "timestamps",
            "break",
            "macro",
            "log file",
            "reconnect",
            "close",
        ):
            assert word in listed
        await pilot.press("escape")
        # The footer shows what leaves the view: q and ? go to the device, the prefix's do not.
        footer = {key.key: (key.key_display, key.description) for key in app.query(FooterKey)}
        assert footer["q"] == ("^t q", "Quit") and footer["question_mark"][0] == "^t ?"
        # A second session shows as a tab; the prefix and s switches to it.
        second = SerialDevice(tmp_path / "ttyROUTER", [], tmp_path / "router.log")
        second.plug()
        try:
            await pilot.press("ctrl+t", "o")
            app.screen.query_one(Input).value = f"{second.path} 9600"
            await pilot.press("enter")
            await wait_until(pilot, lambda: len(app.serial.sessions) == 2, "the second session")
            assert status(app.serial).startswith("ttyROUTER connected  9600 8N1")
            # Opening a port that is open already shows its tab, and says so.
            app.clear_notifications()
            await pilot.press("ctrl+t", "o")
            app.screen.query_one(Input).value = str(serial_device.path)
            await pilot.press("enter")
            await wait_until(pilot, lambda: "ttyCAM" in status(app.serial), "the first tab")
            await wait_until(pilot, lambda: app._notifications, "the message")
            assert [n.message for n in app._notifications] == [
                "ttyCAM is already open: shown in its tab (1)."
            ]
            assert len(app.serial.sessions) == 2
            await pilot.press("ctrl+t", "s")
            assert "ttyROUTER" in status(app.serial)
            await pilot.press("ctrl+t", "s")
            assert "ttyCAM" in status(app.serial)
            await pilot.press("ctrl+t", "s", "ctrl+t", "c")
            await wait_until(pilot, lambda: len(app.serial.sessions) == 1, "the close")
        finally:
            second.unplug()


def _bench_app(engine: EngineProcess, device: SerialDevice) -> SerialApp:
    config = load_config(engine.config)
    return SerialApp(config, str(device.path), {}, config_path=str(engine.config), spawn=False)


async def _booted(pilot: Any) -> None:
    pane = pilot.app.serial
    await wait_until(pilot, lambda: "/ #" in screen_text(pane), "the root shell", 20)
    await wait_until(
        pilot,
        lambda: pane.sessions[pane.current].report.get("shell", {}).get("root"),
        "the analysis",
    )


def test_bench_tool_text_at_80x24(serial_engine, serial_device, snap_compare) -> None:
    with in_utc():
        assert snap_compare(
            _bench_app(serial_engine, serial_device), terminal_size=(80, 24), run_before=_booted
        )


def test_bench_tool_hex_at_80x24(serial_engine, serial_device, snap_compare) -> None:
    async def run_before(pilot: Any) -> None:
        await _booted(pilot)
        await pilot.press("ctrl+t", "h")
        await pilot.pause(0.2)

    with in_utc():
        assert snap_compare(
            _bench_app(serial_engine, serial_device), terminal_size=(80, 24), run_before=run_before
        )


async def test_long_lines_wrap_or_are_cut_and_scrolled_sideways_by_keys(
    serial_engine: EngineProcess, serial_device: SerialDevice
) -> None:
    app = _bench_app(serial_engine, serial_device)
    async with app.run_test(size=(80, 24)) as pilot:
        await _booted(pilot)
        pane = app.serial
        view = pane.view
        index = next(
            i for i in range(view.buffer.line_count) if "Kernel command line" in view.line_text(i)
        )
        bootargs = view.line_text(index)
        assert len(bootargs) > 79 and bootargs.endswith("256K(custom),320K(mtd)")
        await pilot.press("ctrl+t", "slash")
        app.screen.query_one(Input).value = "Kernel command line"
        await pilot.press("enter")
        await pilot.pause(0.1)
        # Wrapped (the default): the whole line, row after row, in the 79 columns beside the
        # scrollbar; nothing to scroll sideways.
        rows = view.visible_text()
        start = next(n for n, row in enumerate(rows) if "Kernel command line" in row)
        parts = -(-len(bootargs) // 79)
        assert parts > 1 and "".join(rows[start : start + parts]) == bootargs
        assert all(len(row) <= 79 for row in rows)
        assert view.max_scroll_x == 0 and " cut" not in status(pane)

        def cut_row() -> str:
            return next(row for row in view.visible_text() if "Kernel command line" in row)

        # Cut: one row per line, the rest off to the right, reached by keys.
        await pilot.press("ctrl+t", "w")
        await pilot.pause(0.1)
        assert " cut" in status(pane)
        assert cut_row() == bootargs[:79]
        await pilot.press("ctrl+t", "right")
        await pilot.pause(0.1)
        assert view.scroll_x > 0
        shown = next(row for row in view.visible_text() if "rootfstype=cramfs" in row)
        assert bootargs[int(view.scroll_x) :].startswith(shown)
        await pilot.press("ctrl+t", "left")
        await pilot.pause(0.1)
        assert view.scroll_x == 0 and cut_row() == bootargs[:79]
        await pilot.press("ctrl+t", "w", "shift+end")
        await pilot.pause(0.1)
        assert view.wrap and view.scroll_x == 0 and " cut" not in status(pane)
        assert "/ #" in screen_text(pane)  # back at the end


def fits(line: str, width: int) -> bool:
    """The status line within ``width``, every piece whole or cut after a word."""
    if len(line) > width:
        return False
    return all(not piece.endswith("…") or piece[-2] != " " for piece in line.split("  ") if piece)


async def test_unplug_and_replug_leave_markers_and_the_status_line_fits_80_columns(
    serial_engine: EngineProcess, serial_device: SerialDevice
) -> None:
    app = _bench_app(serial_engine, serial_device)
    async with app.run_test(size=(80, 24)) as pilot:
        await _booted(pilot)
        pane = app.serial
        line = status(pane)
        assert (
            line
            == "ttyCAM connected  115200 8N1  RX 1.5kB TX 0B  DTR RTS  cr/lf  Ctrl-T ? commands"
        )
        serial_device.unplug()
        await wait_until(pilot, lambda: "[disconnected " in screen_text(pane), "the unplug")
        line = status(pane)
        # Port and state first, then why; what does not fit is left out, not cut mid-word.
        assert line.startswith("ttyCAM reconnecting  device gone")
        assert fits(line, 80), line
        serial_device.plug()
        await wait_until(pilot, lambda: "[reconnected " in screen_text(pane), "the replug")
        assert status(pane).startswith("ttyCAM connected  ")
        rows = screen_text(pane).splitlines()
        gone = next(row for row in rows if row.startswith("[disconnected "))
        back = next(row for row in rows if row.startswith("[reconnected "))
        assert re.match(r"\[disconnected \d\d:\d\d:\d\d\.\d{3}\] device gone: ", gone), gone
        assert re.match(r"\[reconnected \d\d:\d\d:\d\d\.\d{3}\]$", back), back
        assert rows.index(gone) < rows.index(back)
        # The marker is the console's: drawn in reverse video, not among the device's bytes.
        marker = next(
            i
            for i in range(pane.view.buffer.line_count)
            if pane.view.line_text(i).startswith("[disconnected ")
        )
        assert pane.view._segments(marker)[0].style.reverse
        transcript = Path(pane.sessions[pane.current].info["transcript"]).read_bytes()
        assert b"[disconnected " not in transcript


def test_status_lines_are_cut_after_a_word_at_any_width() -> None:
    pieces = [
        (0, Content("ttyUSB0 reconnecting")),
        (1, Content("device gone: unplugged or powered off, or the cable came loose")),
        (2, Content("115200 8N1")),
        (4, Content("Ctrl-T ? commands")),
    ]
    reason = pieces[1][1].plain
    for width in range(20, 120):
        line = fit_status(pieces, width).plain
        assert fits(line, width) and line.startswith("ttyUSB0 reconnecting"), (width, line)
        for piece in line.split("  "):
            if piece.endswith("…"):  # the reason, up to the end of one of its words
                assert reason.startswith(piece[:-1]) and reason[len(piece) - 1] == " "
    assert fit_status(pieces, 120).plain.endswith("8N1  Ctrl-T ? commands")


async def test_the_bench_tool_closes_what_it_opened(
    serial_engine: EngineProcess, serial_device: SerialDevice
) -> None:
    app = _bench_app(serial_engine, serial_device)
    async with app.run_test(size=(80, 24)) as pilot:
        await _booted(pilot)
        assert request(serial_engine, "serial.list")[0]["state"] == "connected"
        await pilot.press("ctrl+t", "q")
    assert request(serial_engine, "serial.list") == []


async def test_the_devices_pane_goes_to_a_devices_serial_session(
    tmp_path: Path, serial_device: SerialDevice
) -> None:
    engine = start_serial_engine(tmp_path, LOOPBACK_SCOPE)
    try:
        run = request(engine, "scan.start", {"targets": ["127.0.0.1"], "ports": "1", "udp": False})
        app = console_for(engine.config)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
            await wait_until(
                pilot,
                lambda: request(engine, "scan.get", {"id": run["id"]})["state"] == "done",
                "the scan",
            )
            await pilot.press("2")
            await wait_until(pilot, lambda: app.devices.under_cursor() is not None, "the device")
            assert app.devices.check_action("serial", ()) is None  # greyed: no session yet
            sid = request(
                engine, "serial.open", {"port": str(serial_device.path), "device": "127.0.0.1"}
            )["id"]
            await wait_until(
                pilot,
                lambda: app.serial.session_for(app.devices.under_cursor()["id"]) == sid,
                "the attached session",
            )
            await pilot.press("c")
            assert app.query_one("#panes").active == "serial"
            assert app.serial.current == sid and app.serial.view.has_focus
    finally:
        engine.stop()
