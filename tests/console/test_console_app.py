"""The console around the alerts pane: panes, status bar, help, palette, keys, notifications,
and the connection to the engine, all against a real engine process."""

from __future__ import annotations

import inspect
import pkgutil
import subprocess
import sys
import tempfile
import time
from importlib import import_module

from console_helpers import console_for, inject, pane_title, request, shown_ids, wait_until
from textual.binding import Binding
from textual.command import CommandList
from textual.content import Content
from textual.widgets._toast import Toast, ToastRack

import console
from console.app import IotsecApp
from console.keys import RESERVED
from console.screens.help import HelpScreen
from console.widgets.link_notice import LinkNotice
from console.widgets.status_bar import StatusBar
from engine.config import load_config
from tests.conftest import ROOT, start_engine, write_config

SIZE = (80, 24)


def status_line(app: IotsecApp) -> str:
    return str(app.query_one(StatusBar).render())


def notifications(app: IotsecApp) -> list[tuple[str, str, str]]:
    return [(n.title, n.message, n.severity) for n in app._notifications]


def failures(app: IotsecApp) -> list[tuple[str, str, str]]:
    return [n for n in notifications(app) if " failed: " in n[1]]


async def test_the_panes_switch_by_number(engine):
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        await pilot.press("1")
        assert app.query_one("#panes").active == "traffic"
        assert app.query_one("#flow-table").has_focus
        await pilot.press("2")
        assert app.query_one("#device-table").has_focus
        await pilot.press("4")
        assert app.query_one("#panes").active == "serial"
        # Keys now go to the device: the prefix leads back to the other panes.
        await pilot.press("3")
        assert app.query_one("#panes").active == "serial"
        await pilot.press("ctrl+t", "3")
        assert app.query_one("#alert-table").has_focus


async def test_status_bar_counts_open_alerts_by_severity(engine):
    inject(engine, title="one", severity="critical", src="10.0.0.1")
    inject(engine, title="two", severity="high", src="10.0.0.2")
    inject(engine, title="three", severity="high", src="10.0.0.3")
    app = console_for(engine.config)
    async with app.run_test(size=(120, 24)) as pilot:
        await wait_until(pilot, lambda: "open:" in status_line(app), "status")
        line = status_line(app)
        assert line.startswith("● engine │ capture: stopped │ open: CRIT 1 HIGH 2")
        assert "bans 0" in line and "dropped 0" in line


async def test_status_bar_says_when_bans_are_not_enforced(engine):
    """The default backend records bans without applying them: the bar must say so."""
    request(engine, "bans.ban", {"address": "203.0.113.9", "for": "1h"})
    app = console_for(engine.config)
    async with app.run_test(size=(120, 24)) as pilot:
        await wait_until(pilot, lambda: "bans 1" in status_line(app), "the ban")
        assert "bans 1 NOT enforced (dry-run)" in status_line(app)


async def test_help_is_per_pane(engine):
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.pane == "Alerts"
        keys = dict(app.screen.keys)
        assert keys["a"] == (
            "Acknowledge the selected alerts or the one under the cursor, with a note"
        )
        assert keys["space"].startswith("Select or unselect")
        assert keys["/"].startswith("Filter rows")
        assert keys["⏎"] == "Open the alert under the cursor: evidence and history"
        await pilot.press("escape")
        await pilot.press("1", "f1")
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.pane == "Traffic"
        assert "\n\nNow: ■ stopped" in app.screen.purpose
        keys = app.screen.keys
        assert "a" not in dict(keys)
        assert dict(keys)["/"].startswith("Display filter")
        assert (
            "⏎",
            "In the flows: go down to the recent packets of the one under the cursor",
        ) in keys
        assert (
            "⏎",
            "In the packets: open the one under the cursor (its layers and a hex dump)",
        ) in keys


async def test_palette_offers_every_action_by_name(engine):
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        names = [name for name, _, _ in app.palette_commands()]
        for expected in (
            "Alerts: Acknowledge the selected alerts or the one under the cursor, with a note",
            "Alerts: Resolve the selected alerts or the one under the cursor (asks first)",
            "Alerts: Filter rows as you type; Enter keeps the filter, Esc clears it",
            "Alerts: Pause or resume live updates; changes queue while paused",
            "Show the Traffic pane",
            "Help for the pane you are in",
        ):
            assert expected in names
        await pilot.press("ctrl+p")
        await pilot.press(*"pause live")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: "PAUSED" in pane_title(app), "paused by the palette")


async def test_palette_shows_names_literally_not_as_markup(engine):
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        await pilot.press("ctrl+p", *"scan every network")
        await pilot.pause(0.5)
        shown = [
            app.screen.query_one(CommandList).get_option_at_index(i).prompt
            for i in range(app.screen.query_one(CommandList).option_count)
        ]
        plain = [p.plain if isinstance(p, Content) else str(p) for p in shown]
        assert any("Scan every network of [scan] scope" in text for text in plain), plain


def _console_classes():
    for info in pkgutil.walk_packages(console.__path__, "console."):
        module = import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and "BINDINGS" in vars(cls):
                yield cls


def test_every_binding_has_an_id_and_a_description_and_leaves_tmux_keys_alone():
    seen = {}
    for cls in _console_classes():
        for binding in vars(cls)["BINDINGS"]:
            assert isinstance(binding, Binding), f"{cls.__name__}: use Binding(...)"
            assert binding.id, f"{cls.__name__}: {binding.key} has no id"
            assert binding.description, f"{binding.id} has no description"
            assert not set(binding.key.split(",")) & RESERVED, f"{binding.id} uses a tmux key"
            assert seen.setdefault(binding.id, cls) is cls, f"{binding.id} is declared twice"
    for expected in (
        "alerts.ack",
        "alerts.resolve",
        "alerts.silence",
        "alerts.filter",
        "alerts.pause",
        "alerts.sort",
        "app.pane.alerts",
        "app.help",
    ):
        assert expected in seen


async def test_keymap_from_the_config_rebinds_by_id_and_warns_about_mistakes(tmp_path):
    engine = start_engine(
        tmp_path,
        '[console.keymap]\n"alerts.ack" = "k"\n"alerts.nope" = "x"\n"alerts.pause" = "ctrl+b"\n',
    )
    try:
        alert_id = inject(engine, title="telnet brute force", src="10.0.0.5")
        app = console_for(engine.config)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
            messages = [m for _, m, _ in notifications(app)]
            assert (
                f"{engine.config}: [console.keymap] 'alerts.nope' is not a binding id" in messages
            )
            assert any("alerts.pause = 'ctrl+b'" in m for m in messages)
            await pilot.press("a")
            assert app.screen is app.screen_stack[0], "a no longer acknowledges"
            await pilot.press("k", *"rebound", "enter")
            await wait_until(
                pilot,
                lambda: request(engine, "alerts.get", {"id": alert_id})["state"] == "acknowledged",
                "the ack through the rebound key",
            )
    finally:
        engine.stop()


async def test_new_alerts_notify_with_a_bell_and_silenced_ones_never_do(engine):
    app = console_for(engine.config)
    bells = []
    async with app.run_test(size=SIZE) as pilot:
        app.bell = lambda: bells.append(1)
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        inject(
            engine, title="telnet root shell", severity="critical", src="10.0.0.5", rule="2023019"
        )
        await wait_until(pilot, lambda: notifications(app), "a notification")
        ((title, message, level),) = notifications(app)
        assert title.startswith("CRIT alert #")
        assert message == "telnet root shell\n10.0.0.5 → -"
        assert level == "error"
        assert bells == [1]
        app.clear_notifications()
        request(engine, "alerts.silence", {"rule": "2023019", "duration": "1h"})
        silenced = inject(
            engine, title="telnet root shell", severity="critical", src="10.0.0.6", rule="2023019"
        )
        low = inject(engine, title="ssdp notify", severity="low", src="10.0.0.7")
        await wait_until(pilot, lambda: {silenced, low} <= set(shown_ids(app)), "both rows")
        await pilot.pause(1.2)
        assert notifications(app) == [], "silenced and below notify_severity: no notification"
        assert bells == [1]


async def test_a_refused_action_shows_the_engines_reason(engine):
    alert_id = inject(engine, title="telnet brute force", src="10.0.0.5")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("p")
        request(engine, "alerts.resolve", {"id": alert_id, "note": "elsewhere"})
        await pilot.press("a", *"late", "enter")
        # (The alert's own notification may be there too if it was published after we
        # subscribed.)
        await wait_until(pilot, lambda: failures(app), "an error")
        ((_, message, level),) = failures(app)
        assert level == "error"
        assert message == (
            f"Acknowledge alert {alert_id} failed: alert {alert_id} is resolved; reopen it first"
        )


async def test_only_the_newest_max_rows_alerts_are_kept(tmp_path):
    engine = start_engine(tmp_path, "[console]\nmax_rows = 5\n")
    try:
        ids = [inject(engine, title=f"alert {i}", src=f"10.0.0.{i}") for i in range(8)]
        app = console_for(engine.config)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: len(shown_ids(app)) == 5, "five rows")
            assert shown_ids(app) == list(reversed(ids[-5:]))
            newer = inject(engine, title="newer", src="10.0.1.1")
            await wait_until(pilot, lambda: shown_ids(app)[0] == newer, "the newest row")
            assert shown_ids(app) == [newer, *reversed(ids[-4:])]
            assert "(newest kept)" in pane_title(app)
    finally:
        engine.stop()


# Raises COUNT alerts through SOCKET as fast as the engine takes them, 100 requests in flight.
STORM = """
import asyncio, sys
from engine.control.client import AsyncClient

async def main(path, count):
    client = AsyncClient(path, client="storm")
    await client.connect()

    def inject(n):
        address = f"10.1.{n // 250}.{n % 250}"
        return client.request("alerts.inject", {"title": f"storm {n}", "src": address})

    for start in range(0, count, 100):
        await asyncio.gather(*(inject(n) for n in range(start, min(count, start + 100))))
    await client.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_missed_events_are_shown_and_the_alert_list_reloaded(tmp_path):
    """A console that stops reading (here: its loop blocked for a while) loses events once the
    engine's queue for it is full; it must say so and then catch up from the database."""
    engine = start_engine(tmp_path, "queue_size = 2\n")
    try:
        app = console_for(engine.config)
        async with app.run_test(size=(120, 24)) as pilot:
            await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
            storm = subprocess.Popen(
                [sys.executable, "-c", STORM, str(engine.socket), "3000"], cwd=ROOT
            )
            time.sleep(4)  # blocks the app's loop: nothing is read from the engine meanwhile
            assert storm.wait(60) == 0
            await wait_until(pilot, lambda: app.missed > 0, "events to be reported dropped")
            assert f"missed {app.missed} here" in status_line(app)
            await wait_until(pilot, lambda: len(shown_ids(app)) == 3000, "the reload", 30)
    finally:
        engine.stop()


async def test_disconnect_is_shown_and_the_console_reconnects(tmp_path):
    engine = start_engine(tmp_path)
    first = inject(engine, title="before", src="10.0.0.1")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [first], "the alert")
        engine.stop()
        await wait_until(pilot, lambda: "engine gone" in status_line(app), "engine gone")
        assert app.link.state.message == f"engine gone: {engine.socket}; reconnecting"
        notice = app.query_one(LinkNotice)
        assert notice.display and notice.border_title == "Engine gone"
        assert str(engine.socket) in str(notice.render())
        assert app.link.private is None, "a console that was attached never starts an engine"
        assert app.may("alerts.ack") is False
        assert not app.screen.active_bindings["a"].enabled
        engine = start_engine(tmp_path)
        try:
            second = inject(engine, title="after", src="10.0.0.2")
            await wait_until(pilot, lambda: app.link.state.phase == "connected", "reconnect")
            await wait_until(pilot, lambda: shown_ids(app) == [second, first], "both alerts")
            assert status_line(app).startswith("● engine")
            assert not notice.display
        finally:
            engine.stop()


async def test_no_engine_and_no_spawn_says_so_and_keeps_trying(tmp_path):
    config = write_config(tmp_path)
    app = console_for(config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "no engine, retrying" in status_line(app), "no engine")
        assert app.link.private is None
        assert "no engine at" in app.link.state.message
        assert app.query_one(LinkNotice).border_title == "No engine"


def test_the_console_path_imports_neither_scapy_nor_the_store():
    """The console starts fast and never does the engine's work: packet dissection and the
    database stay in the engine process."""
    code = (
        "import sys, console.cli, console.app\n"
        "print(' '.join(m for m in ('scapy', 'sqlite_utils', 'engine.store', 'textual')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["textual"]


async def test_a_private_engine_that_fails_to_start_is_reported_with_its_reason(
    tmp_path, monkeypatch
):
    config = write_config(tmp_path)
    # Its private directory so deep that no socket path fits under it: the engine cannot listen.
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    app = IotsecApp(load_config(config), config_path=str(config), spawn=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: "✕" in status_line(app), "the failure", 15)
        assert app.link.state.phase == "failed"
        message = app.link.state.message
        assert message.startswith("private engine exited with status 1: ")
        assert "path too long" in message
        assert "private engine exited" in status_line(app)
        directory = app.link.private.directory
    assert directory is None or not directory.exists()
    assert app.link.private.exit_status() is not None


async def test_toasts_stay_below_help_and_dialogs(engine):
    app = console_for(engine.config)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        app.notify("Alert 7 acknowledged", timeout=30)
        await pilot.pause(0.3)
        assert not toasts(app), "not drawn over the help"
        await pilot.press("escape")
        await wait_until(pilot, lambda: toasts(app) == ["Alert 7 acknowledged"], "the toast")


def toasts(app: IotsecApp) -> list[str]:
    """The toasts the operator can see on the screen on top."""
    rack = app.screen.query_one(ToastRack)
    return [str(t.render()) for t in rack.query(Toast) if all(n.display for n in t.ancestors)]
