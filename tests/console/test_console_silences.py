"""The Silences view, driven through the real console (Pilot) against a real engine: silences
listed with what they match, time left and the alerts they hide; extended (e) and ended (u)
through the engine, which opens the hidden alerts again; greyed out for a viewer."""

from __future__ import annotations

from typing import Any

from console_helpers import console_for, inject, request, shown_ids, table, wait_until
from test_console_roles import viewer_socket  # noqa: F401 (a fixture)
from test_console_rules import box_title, connected, notified, text
from test_console_traffic import rows
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from console.app import IotsecApp
from console.panes.traffic_table import TrafficTable
from console.screens.prompts import ConfirmScreen, DurationScreen
from console.screens.silence import SilenceScreen
from console.screens.silences import SilencesScreen

SIZE = (80, 24)


def silence_rows(app: IotsecApp) -> list[list[str]]:
    return rows(app.screen.query_one("#silence-table", TrafficTable))


def silences(engine: Any) -> dict[int, dict[str, Any]]:
    return {s["id"]: s for s in request(engine, "silences.list")}


async def open_silences(pilot: Any, app: IotsecApp) -> None:
    await connected(pilot, app)
    await pilot.press("3", "S")
    await wait_until(pilot, lambda: isinstance(app.screen, SilencesScreen), "the Silences view")
    await wait_until(pilot, lambda: app.screen.listing is not None, "the silences")


async def test_silences_are_listed_extended_and_ended(engine):
    loud = inject(engine, title="telnet brute force", src="203.0.113.7", rule="9100001")
    inject(engine, title="telnet brute force", src="203.0.113.8", rule="9100001")
    by_rule = request(engine, "alerts.silence", {"rule": "9100001", "duration": "2h",
                                                 "comment": "bench work"})  # fmt: skip
    by_src = request(engine, "alerts.silence", {"src": "198.51.100.4", "duration": "30m"})
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await open_silences(pilot, app)
        who = by_rule["created_by"]
        listed = silence_rows(app)
        assert [r[0] for r in listed] == [str(by_rule["id"]), str(by_src["id"])]
        assert listed[0][1] in ("1h59m", "2h00m") and listed[0][2:] == [
            "2", "rule 9100001", who, "bench work"
        ]  # fmt: skip
        assert listed[1][1] in ("29m", "30m") and listed[1][2:4] == ["0", "source 198.51.100.4"]
        assert box_title(app, "#silences-box") == "Silences 2 in force, hiding 2 alerts"
        detail = text(app, "#detail")
        assert detail.startswith(f"silence #{by_rule['id']} by {who} 20")
        assert "· hides 2 alerts\nmatches rule 9100001 · comment bench work" in detail

        await pilot.press("slash", *"198.51", "enter")
        assert [r[0] for r in silence_rows(app)] == [str(by_src["id"])]
        await pilot.press("escape", "up")
        assert len(silence_rows(app)) == 2
        assert app.screen.table.key_under_cursor() == str(by_rule["id"])

        # e: longer by what the dialog is told; a bad duration is said and the dialog stays.
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, DurationScreen), "the dialog")
        field = app.screen.query_one("#duration", Input)
        field.value = "soon"
        await pilot.press("enter")
        assert isinstance(app.screen, DurationScreen)
        assert "soon" in text(app, "#error")
        field.value = "1d"
        await pilot.press("enter")
        await wait_until(pilot, lambda: notified(app, "now ends"), "the extension")
        assert silences(engine)[by_rule["id"]]["expires"] == by_rule["expires"] + 86400
        await wait_until(pilot, lambda: silence_rows(app)[0][1] == "1d01h", "the new time left")

        # u: asks, ends it; the alerts it hid open again.
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert "The 2 alerts it hides open again" in text(app, "#body")
        await pilot.press("y")
        await wait_until(pilot, lambda: notified(app, "2 alerts open again"), "the end")
        assert list(silences(engine)) == [by_src["id"]]
        await wait_until(pilot, lambda: len(silence_rows(app)) == 1, "one silence left")
        states = {a["id"]: a["state"] for a in request(engine, "alerts.list")}
        assert states[loud] == "open"
        audit = [e["command"] for e in request(engine, "audit.list", {"limit": 10})]
        assert "silences.extend" in audit and "alerts.unsilence" in audit

        await pilot.press("question_mark")
        assert app.screen.pane == "Silences"
        assert dict(app.screen.keys)["e"].startswith("Let the silence under the cursor run longer")
        await pilot.press("escape", "escape")
        assert not isinstance(app.screen, SilencesScreen)
        assert app.screen.focused is table(app)


async def test_the_silence_dialog_points_at_the_view_and_the_palette_opens_it(engine):
    alert_id = inject(engine, title="anon mqtt", src="203.0.113.7", rule="mqtt-anon")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("3")
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, SilenceScreen), "the dialog")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        assert "S lists the silences to extend or end one" in text(app, "#body")
        await pilot.press("y")
        await wait_until(pilot, lambda: len(silences(engine)) == 1, "the silence")
        await pilot.press("ctrl+p", *"extend or end")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, SilencesScreen), "the view")
        await wait_until(pilot, lambda: len(silence_rows(app)) == 1, "the silence listed")


async def test_a_viewer_sees_extend_and_end_greyed_out(viewer_socket):  # noqa: F811
    engine, listen = viewer_socket
    made = request(engine, "alerts.silence", {"rule": "x", "duration": "1h"})
    app = console_for(engine.config, socket=listen)
    async with app.run_test(size=(100, 24)) as pilot:
        await open_silences(pilot, app)
        await wait_until(pilot, lambda: len(silence_rows(app)) == 1, "the silence")
        assert app.link.state.role == "viewer"
        await pilot.pause(0.1)
        footer = {k.action: k for k in app.screen.query(FooterKey)}
        assert footer["extend"].has_class("-disabled") and footer["end"].has_class("-disabled")
        await pilot.press("u", "e")
        assert isinstance(app.screen, SilencesScreen), "nothing asked"
    assert silences(engine)[made["id"]]["expires"] == made["expires"]
