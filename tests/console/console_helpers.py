"""Helpers for driving the real console against a real engine process (see tests/conftest.py)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from textual.content import Content
from textual.pilot import Pilot

from console.app import IotsecApp
from console.panes.alert_table import AlertTable
from engine.config import load_config
from engine.store.db import connect
from tests.conftest import DATA

TELNET_RULES = DATA / "rules" / "emerging-telnet.rules"


def console_for(config_path: Path, socket: Path | None = None) -> IotsecApp:
    """The console app as ``iotsec console --no-spawn --config config_path`` builds it."""
    return IotsecApp(load_config(config_path).with_socket(socket), config_path=str(config_path))


@contextlib.contextmanager
def in_utc() -> Iterator[None]:
    """Local time is UTC inside (so times on screen are the same on every machine)."""
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old_tz is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


async def wait_until(
    pilot: Pilot[Any], predicate: Callable[[], bool], what: str, timeout: float = 10.0
) -> None:
    """Let the app run until ``predicate()`` holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def inject(engine: Any, **fields: Any) -> int:
    """Raise an alert through the engine, as ``iotsec alerts inject`` does; its id."""
    args = {"severity": "high", "title": "test alert", "src": "", "dst": "", "rule": "inject"}
    with engine.client() as client:
        return int(client.request("alerts.inject", {**args, **fields})["id"])


def request(engine: Any, cmd: str, args: dict[str, Any] | None = None) -> Any:
    with engine.client() as client:
        return client.request(cmd, args)


def pane_title(app: IotsecApp) -> str:
    """The alerts pane's border title as the operator reads it."""
    return Content.from_markup(app.alerts.border_title or "").plain


def table(app: IotsecApp) -> AlertTable:
    return app.query_one(AlertTable)


def cells(app: IotsecApp, alert_id: int) -> list[str]:
    """The text of an alert's row, cell by cell."""
    return [c.plain.strip() for c in table(app).get_row(str(alert_id))]


def shown_ids(app: IotsecApp) -> list[int]:
    """Alert ids in the order the table shows them."""
    t = table(app)
    return [int(str(row.key.value)) for row in t.ordered_rows]


def cursor_id(app: IotsecApp) -> int | None:
    row = table(app).row_under_cursor()
    return row.id if row else None


def rule_titles(count: int) -> list[str]:
    """Real Suricata rule messages (Emerging Threats telnet rules) to use as alert titles."""
    text = TELNET_RULES.read_text()
    titles = [part.split('"')[0] for part in text.split('msg:"')[1:]]
    return titles[:count]


def seed_alerts(db: Path, alerts: list[dict[str, Any]]) -> None:
    """Write alert rows straight into a new database (before its engine starts); the attacker
    and target are the source and destination unless given."""
    conn = connect(db)
    try:
        conn.execute("BEGIN")
        for a in alerts:
            conn.execute(
                "INSERT INTO alerts (id, severity, source, rule, title, src, dst, device,"
                " first_seen, last_seen, count, state, evidence, attacker, target) VALUES"
                " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    a["id"],
                    a["severity"],
                    a.get("source", "rules"),
                    a["rule"],
                    a["title"],
                    a.get("src", ""),
                    a.get("dst", ""),
                    a.get("device", ""),
                    a["ts"],
                    a["ts"],
                    a.get("count", 1),
                    a.get("state", "open"),
                    a.get("evidence", "{}"),
                    a.get("attacker", a.get("src", "")),
                    a.get("target", a.get("dst", "")),
                ),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()
