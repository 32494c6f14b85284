"""The alerts workflow, driven through the real console (Pilot) against a real engine."""

from __future__ import annotations

import time

from console_helpers import (
    cells,
    console_for,
    cursor_id,
    inject,
    pane_title,
    request,
    rule_titles,
    seed_alerts,
    shown_ids,
    table,
    wait_until,
)
from textual.widgets import Static
from textual.widgets.data_table import ColumnKey

from console.panes.alert_rows import COLUMN_INDEX
from console.screens.alert_detail import AlertDetailScreen
from console.screens.prompts import ConfirmScreen, NoteScreen
from console.screens.silence import SilenceScreen
from engine.model import Severity
from tests.conftest import start_engine

SIZE = (80, 24)
SID, TITLE = COLUMN_INDEX["sid"], COLUMN_INDEX["title"]


async def test_alerts_arrive_live_newest_first(engine):
    titles = rule_titles(3)
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.link.state.phase == "connected", "connection")
        ids = [inject(engine, title=t, src=f"10.0.0.{i}") for i, t in enumerate(titles, 1)]
        await wait_until(pilot, lambda: len(shown_ids(app)) == 3, "three rows")
        assert shown_ids(app) == list(reversed(ids))
        newest = cells(app, ids[-1])
        assert newest[1:5] == ["HIGH", "open", "1", "10.0.0.3"]
        assert newest[TITLE] == titles[-1]
        assert newest[SID] == "-", "an injected alert has no sid"


async def test_filter_is_live_enter_keeps_it_escape_clears_it(engine):
    inject(engine, title="telnet login from camera", src="10.0.0.5")
    inject(engine, title="mqtt anonymous broker", src="10.0.0.6")
    inject(engine, title="telnet root shell", src="10.0.0.7", severity="critical")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 3, "three rows")
        await pilot.press("slash", *"telnet")
        await wait_until(pilot, lambda: len(shown_ids(app)) == 2, "two telnet rows")
        assert "filter: telnet" in pane_title(app)
        await pilot.press("space", *"crit")
        await wait_until(pilot, lambda: len(shown_ids(app)) == 1, "one critical telnet row")
        await pilot.press("enter")
        assert table(app).has_focus
        await pilot.pause(0.3)
        assert len(shown_ids(app)) == 1, "Enter keeps the filter"
        assert "filter: telnet crit" in pane_title(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(shown_ids(app)) == 3, "all rows back")
        assert "filter" not in pane_title(app)


async def test_acknowledge_with_a_note(engine):
    alert_id = inject(engine, title="telnet brute force", src="10.0.0.5")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("a")
        assert isinstance(app.screen, NoteScreen)
        await pilot.press(*"checking the camera", "enter")
        await wait_until(
            pilot,
            lambda: cells(app, alert_id)[2] == "acked",
            "the row to show acked",
        )
    alert = request(engine, "alerts.get", {"id": alert_id})
    assert alert["state"] == "acknowledged"
    assert alert["ack_note"] == "checking the camera"
    assert alert["ack_by"] == app.link.state.operator
    assert alert["history"][-1]["action"] == "ack"


async def test_escape_cancels_the_note_and_nothing_changes(engine):
    alert_id = inject(engine, title="telnet brute force", src="10.0.0.5")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("a", *"oops", "escape")
        assert not isinstance(app.screen, NoteScreen)
        await pilot.pause(0.3)
    assert request(engine, "alerts.get", {"id": alert_id})["state"] == "open"


async def test_resolve_asks_first(engine):
    alert_id = inject(engine, title="telnet brute force", src="10.0.0.5")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause(0.3)
        assert request(engine, "alerts.get", {"id": alert_id})["state"] == "open"
        await pilot.press("r", "y")
        await wait_until(
            pilot,
            lambda: cells(app, alert_id)[2] == "resolved",
            "the row to show resolved",
        )
    assert request(engine, "alerts.get", {"id": alert_id})["state"] == "resolved"


async def test_silence_for_a_duration_matching_rule_and_source(engine):
    alert_id = inject(engine, title="telnet brute force", src="10.0.0.5", rule="2023019")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("s")
        assert isinstance(app.screen, SilenceScreen)
        # The duration field is focused with "1h" selected: typing replaces it.
        await pilot.press(*"2h", "enter")
        assert isinstance(app.screen, ConfirmScreen)
        body = str(app.screen.query_one(".heading", Static).render())
        assert "rule 2023019 and source 10.0.0.5 for 2h" in body
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: cells(app, alert_id)[2] == "silenced",
            "the row to show silenced",
        )
    (silence,) = request(engine, "silences.list")
    assert (silence["rule"], silence["src"]) == ("2023019", "10.0.0.5")
    assert abs(silence["expires"] - silence["created"] - 7200) < 1
    assert request(engine, "alerts.get", {"id": alert_id})["state"] == "silenced"


async def test_silence_matching_the_source_only(engine):
    alert_id = inject(engine, title="telnet brute force", src="10.0.0.5", rule="2023019")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("s")
        assert isinstance(app.screen, SilenceScreen)
        # Back to the choice of what to match (its first, "this rule", highlighted), down to
        # "this source", chosen with space.
        await pilot.press("shift+tab", "down", "space", "tab", "enter")
        assert isinstance(app.screen, ConfirmScreen)
        body = str(app.screen.query_one(".heading", Static).render())
        assert "source 10.0.0.5 for 1h" in body and "rule" not in body
        await pilot.press("y")
        await wait_until(pilot, lambda: request(engine, "silences.list"), "the silence")
    (silence,) = request(engine, "silences.list")
    assert (silence["rule"], silence["src"]) == ("", "10.0.0.5")


async def test_silence_rejects_a_bad_duration(engine):
    alert_id = inject(engine, title="telnet brute force", src="10.0.0.5")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("s", *"soon", "enter")
        assert isinstance(app.screen, SilenceScreen)
        assert "expected a duration" in str(app.screen.query_one("#error", Static).render())
        await pilot.press("escape")
    assert request(engine, "silences.list") == []


async def test_pause_queues_changes_and_resume_applies_them(engine):
    first = inject(engine, title="first", src="10.0.0.1")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [first], "the first alert")
        await pilot.press("p")
        assert "PAUSED" in pane_title(app)
        second = inject(engine, title="second", src="10.0.0.2")
        await wait_until(pilot, lambda: "1 queued" in pane_title(app), "the change to queue")
        await pilot.pause(0.5)
        assert shown_ids(app) == [first]
        await pilot.press("p")
        await wait_until(pilot, lambda: shown_ids(app) == [second, first], "the queued row")
        assert "PAUSED" not in pane_title(app)


async def test_cursor_stays_on_its_alert_when_new_ones_arrive(engine):
    ids = [inject(engine, title=f"alert {i}", src=f"10.0.0.{i}") for i in range(1, 4)]
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 3, "three rows")
        await pilot.press("down")
        assert cursor_id(app) == ids[1]
        newer = [inject(engine, title=f"new {i}", src=f"10.0.1.{i}") for i in range(3)]
        await wait_until(pilot, lambda: len(shown_ids(app)) == 6, "six rows")
        assert shown_ids(app)[:3] == list(reversed(newer))
        assert cursor_id(app) == ids[1]
        assert table(app).cursor_row == 4


async def test_scrolled_down_the_row_under_the_cursor_stays_put_on_screen(engine):
    ids = [inject(engine, title=f"alert {i}", src=f"10.0.0.{i}") for i in range(40)]
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 40, "forty rows")
        await pilot.press(*["down"] * 30)
        t = table(app)
        assert t.scroll_y > 0
        watched, screen_row = cursor_id(app), t.cursor_row - t.scroll_y
        newer = [inject(engine, title=f"new {i}", src=f"10.0.1.{i}") for i in range(3)]
        await wait_until(pilot, lambda: len(shown_ids(app)) == 43, "the new rows")
        await pilot.pause(0.2)
        assert cursor_id(app) == watched
        assert t.cursor_row - t.scroll_y == screen_row
        assert shown_ids(app)[:3] == list(reversed(newer))
        assert ids[0] == shown_ids(app)[-1]


async def test_cursor_stays_when_its_alert_changes_and_moves(engine):
    ids = [inject(engine, title=f"alert {i}", src=f"10.0.0.{i}") for i in range(1, 4)]
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 3, "three rows")
        await pilot.press("down", "down")
        assert cursor_id(app) == ids[0]
        # Same rule, source and destination: folds into alert 1, which becomes the newest.
        inject(engine, title="alert 1", src="10.0.0.1")
        await wait_until(pilot, lambda: shown_ids(app)[0] == ids[0], "alert 1 to move up")
        assert cursor_id(app) == ids[0]
        assert cells(app, ids[0])[3] == "2"


async def test_sort_key_cycles_columns_and_header_click_reverses(engine):
    inject(engine, title="b medium", severity="medium", src="10.0.0.2")
    inject(engine, title="a critical", severity="critical", src="10.0.0.10")
    inject(engine, title="c low", severity="low", src="10.0.0.1")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 3, "three rows")

        def column(index: int) -> list[str]:
            return [cells(app, i)[index] for i in shown_ids(app)]

        await pilot.press("o")
        assert table(app).sort_column == "sev"
        assert column(1) == ["CRIT", "MED", "LOW"]
        await pilot.press("O")
        assert column(1) == ["LOW", "MED", "CRIT"]
        await pilot.press("o", "o", "o")
        assert table(app).sort_column == "attacker"
        assert column(4) == ["10.0.0.1", "10.0.0.2", "10.0.0.10"], "addresses sort as numbers"
        await pilot.click("#alert-table", offset=header_offset(app, "attacker"))
        assert column(4) == ["10.0.0.10", "10.0.0.2", "10.0.0.1"], "clicked again: reversed"
        await pilot.click("#alert-table", offset=header_offset(app, "title"))
        assert table(app).sort_column == "title"
        assert column(TITLE) == ["a critical", "b medium", "c low"]


async def test_a_rule_alert_leads_with_its_msg_and_its_sid_has_a_column_when_wide(tmp_path):
    msg = rule_titles(1)[0]
    now = time.time()
    seed_alerts(
        tmp_path / "state" / "iotsec.db",
        [
            {
                "id": 1,
                "severity": int(Severity.HIGH),
                "rule": "2000001",
                "title": msg,
                "src": "203.0.113.7",
                "dst": "192.168.1.20",
                "ts": now - 60,
            },
            {
                "id": 2,
                "severity": int(Severity.MEDIUM),
                "source": "logwatch",
                "rule": "sshd",
                "title": "sshd: 5 failed logins",
                "src": "198.51.100.4",
                "ts": now - 30,
            },
        ],
    )
    engine = start_engine(tmp_path)
    try:
        app = console_for(engine.config)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: len(shown_ids(app)) == 2, "two rows")
            sid_column = table(app).columns[ColumnKey("sid")]
            assert cells(app, 1)[TITLE] == msg, "the title is the rule's msg, no sid before it"
            assert [cells(app, 1)[SID], cells(app, 2)[SID]] == ["2000001", "-"]
            assert sid_column.width == 0, "at 80 columns the title keeps the room"
            await pilot.press(*"oooooo")
            assert table(app).sort_column == "title", "o skips the hidden SID column"

            await pilot.resize_terminal(140, 24)
            await wait_until(pilot, lambda: sid_column.width > 0, "the SID column")
            assert table(app).columns[ColumnKey("title")].width >= 40
            await pilot.click("#alert-table", offset=header_offset(app, "sid"))
            assert table(app).sort_column == "sid"
            assert shown_ids(app) == [1, 2], "sids in order, alerts without one after them"

            await pilot.resize_terminal(*SIZE)
            await wait_until(pilot, lambda: sid_column.width == 0, "the SID column hidden")
    finally:
        engine.stop()


def header_offset(app, key: str) -> tuple[int, int]:
    """Where the header of column ``key`` is inside the table, for clicking it."""
    t = table(app)
    x = 0
    for column in t.ordered_columns:
        if column.key.value == key:
            return (x + 2, 0)
        x += column.get_render_width(t)
    raise AssertionError(f"no column {key}")


async def test_enter_shows_evidence_and_history(engine):
    alert_id = inject(
        engine,
        title="telnet brute force",
        src="10.0.0.5",
        evidence={"payload": "root\r\n\x1b[2J\x9b31m", "port": 23},
    )
    request(engine, "alerts.ack", {"id": alert_id, "note": "on it"})
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("enter")
        assert isinstance(app.screen, AlertDetailScreen)
        evidence = app.screen.query_one("#evidence", Static)
        await wait_until(pilot, lambda: "port" in str(evidence.render()), "the evidence")
        text = str(evidence.render())
        assert '"port": 23' in text
        # JSON escapes C0 controls itself; C1 controls (an 8-bit CSI here) are made visible.
        assert "\x1b" not in text and "\\u001b[2J" in text
        assert "\x9b" not in text and "\\x9b31m" in text
        history = str(app.screen.query_one("#history", Static).render())
        assert "ack  on it" in history
        await pilot.press("escape")
        assert not isinstance(app.screen, AlertDetailScreen)


async def test_resolve_from_the_detail_screen(engine):
    alert_id = inject(engine, title="telnet brute force", src="10.0.0.5")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        await pilot.press("enter")
        assert isinstance(app.screen, AlertDetailScreen)
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: cells(app, alert_id)[2] == "resolved", "resolved")
    assert request(engine, "alerts.get", {"id": alert_id})["state"] == "resolved"


async def test_untrusted_titles_are_shown_literally(engine):
    title = "evil [bold]x[/] [$accent]y [@click=app.quit]z[/] \x1b[31mred\x07"
    alert_id = inject(engine, title=title, src="10.0.0.5")
    app = console_for(engine.config)
    async with app.run_test(size=(160, 24)) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        cell = table(app).get_row(str(alert_id))[TITLE]
        shown = "evil [bold]x[/] [$accent]y [@click=app.quit]z[/] \\x1b[31mred\\x07"
        assert cell.plain.strip() == shown
        assert not [span for span in cell.spans if span.style], "no markup was interpreted"


async def test_space_selects_and_one_note_acknowledges_them_all(engine):
    ids = [inject(engine, title=f"telnet brute force {i}", src=f"10.0.0.{i}") for i in range(3)]
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 3, "three rows")
        # Space selects the row under the cursor and moves on: the two newest.
        await pilot.press("space", "space")
        assert "2 selected" in pane_title(app)
        await pilot.pause(0.1)
        assert first_line(app, ids[2]).startswith("*"), "a selected row starts with *"
        assert not first_line(app, ids[0]).startswith("*")
        await pilot.press("a")
        assert isinstance(app.screen, NoteScreen), "one note for both"
        await pilot.press(*"isolating the cameras", "enter")
        await wait_until(
            pilot,
            lambda: [cells(app, i)[2] for i in ids] == ["open", "acked", "acked"],
            "both selected rows to show acked",
        )
        assert "selected" not in pane_title(app), "done: the selection is cleared"
    for alert_id in ids[1:]:
        alert = request(engine, "alerts.get", {"id": alert_id})
        assert alert["ack_note"] == "isolating the cameras"
        assert alert["history"][-1]["action"] == "ack", "audited per alert"
    assert request(engine, "alerts.get", {"id": ids[0]})["state"] == "open"


async def test_asterisk_selects_what_the_filter_shows_and_resolve_asks_once(engine):
    telnet = [inject(engine, title=f"telnet login {i}", src=f"10.0.0.{i}") for i in range(3)]
    mqtt = inject(engine, title="mqtt anonymous broker", src="10.0.0.9")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 4, "four rows")
        await pilot.press("slash", *"telnet", "enter", "asterisk")
        assert "3 selected" in pane_title(app)
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Resolve 3 alerts?" in str(app.screen.query_one(".heading", Static).render())
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: all(
                request(engine, "alerts.get", {"id": i})["state"] == "resolved" for i in telnet
            ),
            "the telnet alerts resolved",
        )
    assert request(engine, "alerts.get", {"id": mqtt})["state"] == "open"


async def test_asterisk_again_and_escape_select_none(engine):
    for i in range(3):
        inject(engine, title=f"alert {i}", src=f"10.0.0.{i}")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 3, "three rows")
        await pilot.press("asterisk")
        assert "3 selected" in pane_title(app)
        await pilot.press("asterisk")
        assert "selected" not in pane_title(app)
        await pilot.press("space", "escape")
        assert "selected" not in pane_title(app)


async def test_silence_several_adds_one_silence_per_source(engine):
    ids = [
        inject(engine, title="telnet brute force", src=f"10.0.0.{i}", rule="2023019")
        for i in range(2)
    ]
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 2, "two rows")
        await pilot.press("asterisk", "s")
        assert isinstance(app.screen, SilenceScreen)
        await pilot.press(*"2h", "enter")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Add 2 silences for 2h" in str(app.screen.query_one(".heading", Static).render())
        await pilot.press("y")
        await wait_until(
            pilot, lambda: [cells(app, i)[2] for i in ids] == ["silenced"] * 2, "both silenced"
        )
    silences = request(engine, "silences.list")
    assert sorted((s["rule"], s["src"]) for s in silences) == [
        ("2023019", "10.0.0.0"),
        ("2023019", "10.0.0.1"),
    ]


async def test_home_end_g_and_sorting_move_the_cursor(engine):
    ids = [inject(engine, title=f"alert {i}", src=f"10.0.0.{i}") for i in range(5)]
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(shown_ids(app)) == 5, "five rows")
        await pilot.press("G")
        assert cursor_id(app) == ids[0]
        await pilot.press("g")
        assert cursor_id(app) == ids[-1]
        await pilot.press("end")
        assert table(app).cursor_row == 4
        await pilot.press("home")
        assert table(app).cursor_row == 0
        await pilot.press("down", "down", "o")
        assert table(app).cursor_row == 0, "a new order is read from the top"


def first_line(app, alert_id: int) -> str:
    """The row of an alert as the table draws it (below the header row)."""
    t = table(app)
    return t.render_line(t.get_row_index(str(alert_id)) + 1 - round(t.scroll_y)).text


async def test_enter_in_the_silence_dialogs_choice_goes_on(engine):
    alert_id = inject(engine, title="telnet brute force", src="10.0.0.5", rule="2023019")
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [alert_id], "the alert")
        # Choose "this source" in the list of choices, and Enter right there.
        await pilot.press("s", "shift+tab", "down", "space", "enter")
        assert isinstance(app.screen, ConfirmScreen), "Enter goes on from the choice too"
        body = str(app.screen.query_one(".heading", Static).render())
        assert "source 10.0.0.5 for 1h" in body and "rule" not in body
