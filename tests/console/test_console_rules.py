"""The Rules view and the way from a rule alert to its flow, driven through the real console
(Pilot) against a real engine that runs the shipped rule pack (or rule files the test writes)
on the recorded captures, replayed through its live pipeline."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_helpers import console_for, in_utc, request, shown_ids, table, wait_until
from test_console_roles import viewer_socket  # noqa: F401 (a fixture)
from test_console_traffic import MQTT, TELNET, flow_rows, replay, rows
from textual.content import Content
from textual.widgets import ContentSwitcher, Static
from textual.widgets._footer import FooterKey

from console.app import IotsecApp
from console.panes.alert_rows import COLUMN_INDEX
from console.panes.traffic_table import FlowTable, PacketTable, TrafficTable
from console.screens.alert_detail import AlertDetailScreen
from console.screens.rules import RulesScreen
from tests.conftest import ROOT, EngineProcess, start_engine

SIZE = (80, 24)
SHIPPED = ROOT / "rules" / "packet" / "iot.rules"
# What our pack raises on the recorded telnet capture: the login and the password prompt.
LOGIN_PROMPT, PASSWORD_PROMPT = 9100001, 9100002


def rule_rows(app: IotsecApp) -> dict[str, list[str]]:
    """The Rules view's rows by sid, cell by cell."""
    return {r[0]: r for r in rows(app.screen.query_one("#rule-table", TrafficTable))}


def text(app: IotsecApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


def box_title(app: IotsecApp, selector: str) -> str:
    return Content.from_markup(app.screen.query_one(selector).border_title or "").plain


def notified(app: IotsecApp, text: str) -> bool:
    return any(text in n.message for n in app._notifications)


def listed(engine: EngineProcess, sid: int) -> dict[str, Any]:
    """The rule as ``rules.list`` gives it."""
    (rule,) = [r for r in request(engine, "rules.list")["rules"] if r["sid"] == sid]
    return rule


async def connected(pilot: Any, app: IotsecApp) -> None:
    await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")


async def open_rules(pilot: Any, app: IotsecApp) -> None:
    await connected(pilot, app)
    await pilot.press("R")
    await wait_until(pilot, lambda: isinstance(app.screen, RulesScreen), "the Rules view")
    await wait_until(pilot, lambda: len(rule_rows(app)) > 0, "the rules")


async def test_rules_view_opens_from_the_palette_and_lists_rules_with_their_hits(engine):
    replay(engine, TELNET)
    shipped = request(engine, "rules.status")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("ctrl+p", *"rules")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RulesScreen), "the Rules view")
        await wait_until(
            pilot, lambda: len(rule_rows(app)) == shipped["accepted"], "every shipped rule"
        )
        assert text(app, "#title").startswith(
            f"Rules │ {shipped['accepted']} loaded · 0 rejected · 0 disabled │ loaded 20"
        )
        (shipped_file,) = shipped["files"]
        assert text(app, "#files") == (
            f"{shipped['accepted']:>6} loaded    0 rejected  {shipped_file['path']}"
        )
        assert not app.screen.query_one("#reload-error").display

        hits = {LOGIN_PROMPT: listed(engine, LOGIN_PROMPT), PASSWORD_PROMPT: None}
        hits[PASSWORD_PROMPT] = listed(engine, PASSWORD_PROMPT)
        assert all(rule["hits"] > 0 for rule in hits.values()), "the telnet capture hits both"
        login = rule_rows(app)[str(LOGIN_PROMPT)]
        # policy-violation is priority 1 in classification.config; the pack sets 3: low.
        expected_row = [
            str(LOGIN_PROMPT),
            "alert",
            "LOW",
            str(hits[LOGIN_PROMPT]["hits"]),
            "on",
            "IOTSEC TELNET login prompt served by a device (cleartext logins)",
        ]
        assert login == expected_row[: len(login)]
        sids = list(rule_rows(app))
        assert sids == sorted(sids, key=int), "by sid first"

        await pilot.press("o")
        sids = list(rule_rows(app))
        assert set(sids[:2]) == {str(LOGIN_PROMPT), str(PASSWORD_PROMPT)}, "most hits first"
        total = request(engine, "rules.status")["hits"]
        assert box_title(app, "#rules-box").startswith(
            f"Rules {shipped['accepted']} │ {total} hits,"
        )
        assert "by hits" in box_title(app, "#rules-box")

        await pilot.press("slash", *"password")
        await wait_until(pilot, lambda: len(rule_rows(app)) < shipped["accepted"], "filtered")
        expected = request(engine, "rules.list", {"filter": "password"})["rules"]
        assert sorted(rule_rows(app)) == sorted(str(r["sid"]) for r in expected)
        assert "filter: password" in box_title(app, "#rules-box")
        await pilot.press("enter", "escape")
        await wait_until(pilot, lambda: len(rule_rows(app)) == shipped["accepted"], "unfiltered")
        await pilot.press("escape")
        assert not isinstance(app.screen, RulesScreen)


async def test_a_sid_turned_off_stays_off_when_the_view_is_opened_again(engine):
    app = console_for(engine.config)
    sid = str(PASSWORD_PROMPT)
    async with app.run_test(size=SIZE) as pilot:
        await open_rules(pilot, app)
        await pilot.press("slash", *sid, "enter")
        await wait_until(pilot, lambda: list(rule_rows(app)) == [sid], "the one rule")
        await pilot.press("space")
        await wait_until(pilot, lambda: not listed(engine, PASSWORD_PROMPT)["enabled"], "off")
        await wait_until(pilot, lambda: rule_rows(app)[sid][4] == "off", "the row to say off")
        assert notified(app, f"Rule {sid} disabled: IOTSEC TELNET password prompt")
        await wait_until(pilot, lambda: "· 1 disabled" in text(app, "#title"), "the count")

        await pilot.press("escape", "escape")
        assert not isinstance(app.screen, RulesScreen)
        await pilot.press("R")
        await wait_until(pilot, lambda: sid in rule_rows(app), "the rules again")
        assert rule_rows(app)[sid][4] == "off"
        assert request(engine, "rules.status")["disabled"] == [PASSWORD_PROMPT]

        await pilot.press("slash", *sid, "enter", "e")
        await wait_until(pilot, lambda: listed(engine, PASSWORD_PROMPT)["enabled"], "on again")
        await wait_until(pilot, lambda: rule_rows(app)[sid][4] == "on", "the row to say on")


@pytest.fixture
def own_rules(tmp_path) -> Iterator[tuple[EngineProcess, Path]]:
    """An engine that loads one rule file of its own (a copy of the shipped pack)."""
    rules = tmp_path / "rules" / "local.rules"
    rules.parent.mkdir()
    shutil.copy(SHIPPED, rules)
    engine = start_engine(tmp_path / "engine", f'[detect]\nrule_files = ["{rules}"]\n')
    try:
        yield engine, rules
    finally:
        engine.stop()


async def test_a_failed_reload_says_why_and_the_running_rules_stay(own_rules):
    engine, rules = own_rules
    accepted = request(engine, "rules.status")["accepted"]
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await open_rules(pilot, app)
        content = rules.read_text()
        rules.unlink()
        await pilot.press("r")
        error = app.screen.query_one("#reload-error", Static)
        await wait_until(pilot, lambda: error.display, "the reload error")
        reason = request(engine, "rules.status")["reload_error"]
        assert str(rules) in reason
        assert text(app, "#reload-error") == (
            f"✕ Last reload failed, the rules before it still run: {reason}"
        )
        (toast,) = [n for n in app._notifications if n.title == "Rules not reloaded"]
        assert toast.severity == "error" and reason in toast.message
        assert len(rule_rows(app)) == accepted

        rules.write_text(
            content + 'alert udp any any -> any 7777 (msg:"TEST knock"; content:"knock";'
            " sid:1000001; rev:1;)\n"
        )
        await pilot.press("r")
        await wait_until(pilot, lambda: not error.display, "the error to go")
        assert notified(app, f"Rules reloaded: {accepted + 1} loaded, 0 rejected")
        await wait_until(pilot, lambda: "1000001" in rule_rows(app), "the new rule")


async def test_rejected_rules_are_listed_with_file_line_and_reason(tmp_path):
    bad = tmp_path / "bad.rules"
    bad.write_text(
        'alert tcp any any -> any 23 (msg:"TEST fine"; content:"x"; sid:1000010; rev:1;)\n'
        'alert tcp any any -> any 23 (msg:"TEST bad"; nosuchkeyword; sid:1000011; rev:1;)\n'
    )
    engine = start_engine(tmp_path / "engine", f'[detect]\nrule_files = ["{bad}"]\n')
    try:
        (rejection,) = request(engine, "rules.status")["rejected"]
        app = console_for(engine.config)
        async with app.run_test(size=SIZE) as pilot:
            await open_rules(pilot, app)
            assert "1 loaded · 1 rejected" in text(app, "#title")
            await pilot.press("t")
            assert app.screen.query_one(ContentSwitcher).current == "rejections-box"
            rejected = rows(app.screen.query_one("#rejection-table", TrafficTable))
            assert [r[1:] for r in rejected] == [["1000011", rejection["reason"]]]
            assert rejected[0][0].endswith(":2") or rejected[0][0].endswith("…")
            assert box_title(app, "#rejections-box").startswith("Rejected 1")
            await pilot.press("space")
            assert notified(app, "nothing to turn on or off")
            await pilot.press("t")
            assert app.screen.query_one("#rule-table").has_focus
    finally:
        engine.stop()


async def test_a_viewer_sees_toggle_and_reload_greyed_out(viewer_socket):  # noqa: F811
    engine, listen = viewer_socket
    app = console_for(engine.config, socket=listen)
    async with app.run_test(size=(100, 24)) as pilot:
        await open_rules(pilot, app)
        assert app.link.state.role == "viewer"
        bindings = app.screen.active_bindings
        for key in ("space", "e", "r"):
            assert bindings[key].enabled is False, f"{key} should be disabled"
        await pilot.pause(0.1)
        footer = {k.action: k for k in app.screen.query(FooterKey)}
        for action in ("toggle", "reload"):
            assert footer[action].has_class("-disabled"), f"{action} should be greyed out"
        await pilot.press("space", "r")
        await pilot.pause(0.3)
        assert all(rule["enabled"] for rule in request(engine, "rules.list")["rules"])
        names = [name for name, _, _ in app.palette_commands()]
        assert not any("Enable or disable" in n or "Reload" in n for n in names)
        assert "Rules: Sort by the next of sid, hits and severity (or click a column header)" in (
            names
        )


async def test_help_in_the_rules_view_is_about_the_rules(engine):
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await open_rules(pilot, app)
        await pilot.press("question_mark")
        assert app.screen.pane == "Rules"
        keys = dict(app.screen.keys)
        assert keys["space, e"] == "Enable or disable the rule under the cursor (by sid)"
        assert keys["r"].startswith("Reload the rule files")


# -- from a rule alert to its flow ------------------------------------------------------------


def rule_alert(engine: EngineProcess, sid: int) -> dict[str, Any]:
    (alert,) = [a for a in request(engine, "alerts.list") if a["rule"] == str(sid)]
    return alert


async def test_the_flow_key_shows_a_rule_alerts_flow_in_the_traffic_pane(engine):
    replay(engine, MQTT, TELNET)
    alert = rule_alert(engine, PASSWORD_PROMPT)
    flow = alert["evidence"]["flow"]
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: alert["id"] in shown_ids(app), "the rule alert")
        row = [c.plain.strip() for c in table(app).get_row(str(alert["id"]))]
        assert row[COLUMN_INDEX["title"]].startswith("IOTSEC TELNET password prompt")
        assert row[COLUMN_INDEX["sid"]] == str(PASSWORD_PROMPT)
        other = next(a for a in request(engine, "alerts.list") if a["rule"] == "9100010")
        await pilot.press(*["down"] * shown_ids(app).index(other["id"]), "enter")
        assert isinstance(app.screen, AlertDetailScreen)
        await wait_until(pilot, lambda: app.screen.alert is not None, "the alert's details")
        assert "sid        9100010" in str(app.screen.query_one("#fields", Static).render())
        await pilot.press("escape", *["up"] * 5)
        while table(app).row_under_cursor().id != alert["id"]:
            await pilot.press("down")
        await pilot.press("f")
        flows = app.query_one(FlowTable)
        await wait_until(pilot, lambda: flows.key_under_cursor() == flow["key"], "the flow")
        assert app.query_one("#panes").active == "traffic"
        packets = app.query_one(PacketTable)
        await wait_until(pilot, lambda: len(rows(packets)) == 92, "the flow's packets")
        assert flow_rows(app)[flows.cursor_row][:3] == [
            "telnet",
            "192.168.0.2:1550",
            "192.168.0.1:23",
        ]


async def test_an_alert_without_a_flow_has_the_flow_key_greyed_out(engine):
    injected = request(engine, "alerts.inject", {"title": "no flow here", "rule": "inject"})
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [injected["id"]], "the alert")
        assert app.screen.active_bindings["f"].enabled is False
        await pilot.press("f")
        assert app.query_one("#panes").active == "alerts"


async def test_a_flow_no_longer_listed_shows_its_packets_or_says_they_are_gone(tmp_path):
    with in_utc():
        engine = start_engine(tmp_path, "[capture]\nring_bytes = 4000\n")
    try:
        replay(engine, TELNET)
        alert = rule_alert(engine, LOGIN_PROMPT)
        flow = alert["evidence"]["flow"]
        app = console_for(engine.config)
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot, app)
            # Listed only when the display filter lets it through: mqtt keeps it out.
            await pilot.press("1", "slash", *"mqtt", "enter", "3")
            await wait_until(pilot, lambda: alert["id"] in shown_ids(app), "the rule alert")
            while table(app).row_under_cursor().id != alert["id"]:
                await pilot.press("down")
            await pilot.press("f")
            packets = app.query_one(PacketTable)
            box = app.query_one("#packets-box")
            await wait_until(pilot, lambda: len(rows(packets)) > 0, "the flow's packets")
            assert Content.from_markup(box.border_title).plain.startswith(
                f"Packets {len(rows(packets))} │ tcp 192.168.0.2:1550 → 192.168.0.1:23 │"
                f" alert #{alert['id']}, not in the flows above"
            )
            assert packets.has_focus
            assert {r[2] for r in rows(packets)} <= {"192.168.0.2:1550", "192.168.0.1:23"}

            # Newer traffic pushes the flow's packets out of the small ring.
            replay(engine, MQTT, MQTT)
            assert request(engine, "traffic.packets", {"flow": flow["key"]}) == []
            await pilot.press("3", "f")
            await wait_until(pilot, lambda: notified(app, "are left in the engine's"), "the news")
            assert len(rows(packets)) == 0
    finally:
        engine.stop()


def test_rules_at_80x24(tmp_path, snap_compare):
    with in_utc():
        engine = start_engine(tmp_path)
        try:
            replay(engine, TELNET)
            app = console_for(engine.config)
            # The replay's alerts may still be on their way to subscribers when the console
            # connects; their toast would land on the drawing at a moment no run repeats.
            app.notifier.offer = lambda alerts: None

            async def run_before(pilot) -> None:
                await open_rules(pilot, app)
                await wait_until(pilot, lambda: "hits" in box_title(app, "#rules-box"), "hits")
                screen = app.screen
                assert isinstance(screen, RulesScreen)
                screen.on_unmount()  # no more polls: what is drawn stays as it is
                # The load time is the engine's start: draw a fixed one.
                status = {**screen.status, "loaded_at": 1713669000.0}
                status["files"] = [{**f, "path": "rules/packet/iot.rules"} for f in status["files"]]
                screen._show_status(status)
                await pilot.press("o")

            assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
        finally:
            engine.stop()
