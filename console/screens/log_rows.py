"""The Logs view's rows: jails, followed sources and the alerts jails raised, as table cells;
and log lines as text with the failing host highlighted. Every value from the engine (paths,
host names, log text) is cleaned before it is drawn."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from console.panes.alert_rows import short_count, table_cell
from console.screens.alert_detail import when
from console.untrusted import clean
from console.widgets.row_table import Column
from engine.durations import format_duration

JAIL_COLUMNS = (
    Column("name", "JAIL", None),
    Column("state", "STATE", 8),
    Column("failing", "FAILING", 8, right=True),
    Column("failed", "FAILED", 7, right=True),
    Column("alerts", "ALERTS", 7, right=True),
    Column("limits", "RETRY/FIND", 11),
    Column("sources", "SOURCES", None),
)
SOURCE_COLUMNS = (
    Column("source", "SOURCE", None),
    Column("state", "STATE", 10),
    Column("lines", "LINES", 7, right=True),
    Column("failures", "FAILS", 6, right=True),
    Column("jails", "JAILS", None),
)
ALERT_COLUMNS = (
    Column("when", "LAST", 9),
    Column("jail", "JAIL", None),
    Column("host", "HOST", None),
    Column("count", "N", 4, right=True),
    Column("title", "TITLE", None),
)
FAILURE_STYLE = "yellow"
HOST_STYLE = "bold red"


def _count(value: Any) -> Text:
    return table_cell(short_count(int(value or 0)), justify="right")


def jail_sources(jail: dict[str, Any]) -> list[str]:
    return [
        *jail.get("files", []),
        *(["syslog"] if jail.get("syslog") else []),
        *(f"journal {m}" for m in jail.get("journal", [])),
    ]


def jail_cells(jail: dict[str, Any]) -> tuple[Text, ...]:
    running = jail.get("state") == "running"
    limits = f"{jail.get('maxretry')}/{format_duration(float(jail.get('findtime') or 0))}"
    return (
        table_cell(clean(jail.get("name"), limit=40), "bold"),
        table_cell("running" if running else "error", "" if running else "bold red"),
        _count(jail.get("currently_failed")),
        _count(jail.get("total_failed")),
        _count(jail.get("alerts")),
        table_cell(limits),
        table_cell(clean(", ".join(jail_sources(jail)), limit=300)),
    )


def sources_of(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Files, syslog and journal sources as rows of one kind: key, state, counts, jails."""
    rows = [
        {
            "key": f["path"],
            "state": f.get("state", ""),
            "lines": f.get("lines", 0),
            "failures": f.get("matched", 0),
            "jails": f.get("jails", []),
            "error": f.get("error"),
        }
        for f in status.get("files", [])
    ]
    syslog = status.get("syslog") or {}
    if syslog.get("enabled"):
        rows.append(
            {
                "key": "syslog",
                "state": "listening",
                "lines": syslog.get("lines", 0),
                "failures": syslog.get("matched", 0),
                "jails": [j["name"] for j in status.get("jails", []) if j.get("syslog")],
                "error": syslog.get("last_error"),
            }
        )
    for journal in status.get("journal", []):
        rows.append(
            {
                "key": f"journal:{journal['matches']}",
                "state": journal.get("state", ""),
                "lines": journal.get("lines", 0),
                "failures": journal.get("matched", 0),
                "jails": [],
                "error": "",
            }
        )
    return rows


def source_cells(source: dict[str, Any]) -> tuple[Text, ...]:
    state = str(source.get("state") or "")
    good = state in ("following", "listening")
    return (
        table_cell(clean(source["key"], limit=300)),
        table_cell(clean(state.split(":")[0], limit=10), "" if good else "bold red"),
        _count(source.get("lines")),
        _count(source.get("failures")),
        table_cell(clean(", ".join(source.get("jails") or []), limit=200)),
    )


def alert_cells(alert: dict[str, Any]) -> tuple[Text, ...]:
    return (
        table_cell(when(alert.get("last_seen")).split(" ")[-1]),
        table_cell(clean(alert.get("rule"), limit=40), "bold"),
        table_cell(clean(alert.get("src"), limit=60)),
        _count(alert.get("count") or 1),
        table_cell(clean(alert.get("title"), limit=300)),
    )


def line_text(text: str, host: str = "", jail: str = "") -> Text:
    """One log line; a failure's line in yellow, marked with its jail, its host in bold red."""
    shown = clean(text)
    if not host:
        return Text(shown)
    out = Text(f"[{clean(jail, limit=40)}] " if jail else "", style=HOST_STYLE)
    line = Text(shown, style=FAILURE_STYLE)
    needle = clean(host, limit=200)
    at = shown.lower().find(needle.lower()) if needle else -1
    if at >= 0:
        line.stylize(HOST_STYLE, at, at + len(needle))
    return out + line


def host_lines(jail: dict[str, Any]) -> list[Text]:
    """What the lower pane shows for a jail: the hosts failing now."""
    hosts = jail.get("hosts") or []
    if not hosts:
        return [Text("No host is failing in this jail now.", style="dim")]
    return [
        Text.assemble(
            (f"{clean(h.get('host'), limit=60):<40}", HOST_STYLE),
            f" {h.get('failures')} failure{'' if h.get('failures') == 1 else 's'}, the last"
            f" {when(h.get('last'))}",
        )
        for h in hosts
    ]
