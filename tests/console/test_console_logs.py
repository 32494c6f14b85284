"""The Logs view, driven through the real console (Pilot) against a real engine whose jail
follows a real file: the jails with their counts, the file's tail with the failures
highlighted, and the lines behind the jail's alert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console_helpers import console_for, wait_until
from test_console_rules import box_title, connected
from test_console_traffic import rows

from console.app import IotsecApp
from console.panes.traffic_table import TrafficTable
from console.screens.alert_detail import AlertDetailScreen
from console.screens.logs import LogsScreen
from tests.conftest import EngineProcess, start_engine
from tests.test_logwatch_engine import failed, jail_config, log_alerts

SIZE = (80, 24)


def table_rows(app: IotsecApp) -> list[list[str]]:
    return rows(app.screen.query_one("#log-table", TrafficTable))


def pane_lines(app: IotsecApp) -> list[str]:
    assert isinstance(app.screen, LogsScreen)
    return [line.plain for line in app.screen.lines.lines]


def styles_of(app: IotsecApp, index: int) -> set[str]:
    assert isinstance(app.screen, LogsScreen)
    return {str(span.style) for span in app.screen.lines.lines[index].spans}


def jail_engine(tmp_path: Path) -> tuple[EngineProcess, Path]:
    log = tmp_path / "auth.log"
    log.write_text("")
    engine = start_engine(tmp_path / "engine", jail_config(log))
    with log.open("a") as handle:
        handle.write(
            "Nov 24 03:09:00 gw sshd[9]: Accepted publickey for ops from 192.0.2.4 port 5000 ssh2\n"
        )
        handle.writelines(failed(n) for n in range(3))
        handle.write(failed(4, "198.51.100.9", "admin"))
    return engine, log


async def test_logs_view_shows_jails_tails_and_the_lines_of_an_alert(tmp_path: Path) -> None:
    engine, log = jail_engine(tmp_path)
    try:
        alerts: list[Any] = []

        def raised() -> bool:
            alerts[:] = log_alerts(engine)
            return bool(alerts)

        app = console_for(engine.config)
        async with app.run_test(size=SIZE) as pilot:
            await connected(pilot, app)
            await wait_until(pilot, raised, "the jail's alert")
            await pilot.press("L")
            await wait_until(pilot, lambda: isinstance(app.screen, LogsScreen), "the Logs view")
            await wait_until(pilot, lambda: table_rows(app) != [], "the jails")
            (jail,) = table_rows(app)
            assert jail[:6] == ["sshd", "running", "1", "4", "1", "3/10m"]
            assert jail[6] == str(log)
            # The jail's failing hosts: the one that has not reached maxretry yet.
            assert box_title(app, "#lines-box") == "Failing hosts in sshd"
            assert pane_lines(app)[0].startswith("198.51.100.9")

            await pilot.press("s")
            await wait_until(
                pilot,
                lambda: table_rows(app)[:1] != [] and table_rows(app)[0][0] == str(log),
                "the sources",
            )
            assert table_rows(app)[0][1:] == ["following", "5", "4", "sshd"]
            await wait_until(pilot, lambda: len(pane_lines(app)) == 5, "the tail")
            lines = pane_lines(app)
            assert lines[0].endswith("Accepted publickey for ops from 192.0.2.4 port 5000 ssh2")
            assert lines[1].startswith("[sshd] Nov 24 03:10:00 gw sshd[410]: Failed password")
            assert "bold red" in styles_of(app, 1) and "yellow" in styles_of(app, 1)
            assert styles_of(app, 0) == set()
            assert box_title(app, "#lines-box") == f"Tail of {log}"
            with log.open("a") as handle:
                handle.write(failed(5, "198.51.100.9", "guest"))
            await wait_until(pilot, lambda: len(pane_lines(app)) == 6, "the new line", 10)

            await pilot.press("a")
            await wait_until(pilot, lambda: len(table_rows(app)) == 1, "the jail's alert")
            assert table_rows(app)[0][1:4] == ["sshd", "203.0.113.50", "1"]
            assert box_title(app, "#lines-box") == f"Lines of alert #{alerts[0]['id']}"
            assert len(pane_lines(app)) == 3
            assert all(
                line.startswith("[sshd] ") and "Failed password for root from 203.0.113.50" in line
                for line in pane_lines(app)
            )
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, AlertDetailScreen), "the alert")
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, LogsScreen), "back")
            await pilot.press("escape")
            await wait_until(pilot, lambda: not isinstance(app.screen, LogsScreen), "closed")
    finally:
        engine.stop()


async def test_logs_view_without_jails_says_how_to_add_one(engine: EngineProcess) -> None:
    app = console_for(engine.config)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, app)
        await pilot.press("ctrl+p", *"jails and their failures")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, LogsScreen), "the Logs view")
        await wait_until(pilot, lambda: app.screen.status is not None, "the status")
        await pilot.pause(0.1)
        assert table_rows(app) == []
        assert "[[logwatch.jail]]" in pane_lines(app)[0]
