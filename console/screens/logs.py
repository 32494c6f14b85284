"""The Logs view: the engine's jails with their failure counts, the sources they follow (files,
syslog, the journal) and the alerts they raised, over a pane of log lines that follows the row
under the cursor: the hosts failing in a jail, the tail of a source with its failures
highlighted, or the lines that made an alert.

Opened with L or from the command palette; j, s and a switch between jails, sources and
alerts, as k9s switches resources. While the view is open, ``logs.status`` (and the list or
tail in view) is polled every two seconds, one poll at a time.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from console.engine_access import engine
from console.panes.traffic_table import TrafficTable
from console.screens.engine_view import EngineView, view_bindings
from console.screens.log_rows import (
    ALERT_COLUMNS,
    JAIL_COLUMNS,
    SOURCE_COLUMNS,
    alert_cells,
    host_lines,
    jail_cells,
    jail_sources,
    line_text,
    source_cells,
    sources_of,
)
from console.untrusted import clean
from console.widgets.log_lines import LogLines

MODES = {
    "jails": ("Jails", JAIL_COLUMNS, "sources"),
    "sources": ("Sources", SOURCE_COLUMNS, "jails"),
    "alerts": ("Alerts", ALERT_COLUMNS, "title"),
}
TAIL_LINES = 500
ALERTS_SHOWN = 200

EMPTY = (
    "No jails. Add [[logwatch.jail]] tables to the config (a name, filters such as sshd, and "
    "files, syslog = true or journal matches) and restart the engine."
)


class LogsScreen(EngineView):
    what = "logs"
    TITLE = "Logs"
    help_text = (
        "Log watching, as fail2ban does it: each jail reads its sources (files, syslog from "
        "devices, the systemd journal) through its filters and counts failures per host; "
        "maxretry failures within findtime raise an alert and, where the jail bans, a ban "
        "through the response policy. j lists the jails (failing: hosts with failures now, "
        "failed: failure lines ever, alerts raised), s the sources (lines read, failures, "
        "state), a the alerts the jails raised. The lower pane follows the row under the "
        "cursor: the hosts failing in a jail, the tail of a source with failures in yellow and "
        "their host in red, or the lines that made an alert. Tab moves between the table and "
        "the lines; Enter on an alert opens it."
    )

    DEFAULT_CSS = """
    LogsScreen #modes {
        padding: 0 1;
        background: $panel;
    }
    LogsScreen #logs-box {
        height: 2fr;
        border-top: solid $primary;
        border-title-align: left;
    }
    LogsScreen #lines-box {
        height: 3fr;
        border-top: solid $primary;
        border-title-align: left;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "mode('jails')", "Jails", id="logs.jails", tooltip="List the jails"),
        Binding(
            "s",
            "mode('sources')",
            "Sources",
            id="logs.sources",
            tooltip="List the followed files, syslog and journal sources",
        ),
        Binding(
            "a",
            "mode('alerts')",
            "Alerts",
            id="logs.alerts",
            tooltip="List the alerts the jails raised",
        ),
        *view_bindings("logs", "Logs", "Filter the rows by text"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.mode = "jails"
        self.status: dict[str, Any] | None = None
        self._rows: dict[str, dict[str, Any]] = {}
        self._alerts: list[dict[str, Any]] = []
        self._tail_note = ""
        self._shown_source = ""  # the source whose tail the lower pane shows

    @property
    def table(self) -> TrafficTable:
        return self.query_one("#log-table", TrafficTable)

    @property
    def lines(self) -> LogLines:
        return self.query_one("#log-lines", LogLines)

    def compose(self) -> ComposeResult:
        yield Static("Logs", id="title", markup=False)
        yield Static("", id="problem", classes="alarm", markup=False)
        yield Static("", id="modes", markup=False)
        with Vertical(id="logs-box"):
            yield TrafficTable(JAIL_COLUMNS, rest="sources", id="log-table")
        with Vertical(id="lines-box"):
            yield LogLines(id="log-lines")
        yield from self.filter_and_footer("filter: text in the row")

    def on_mount(self) -> None:
        self.table.focus()
        self._show_modes()
        self._poller.now()

    # -- polling ------------------------------------------------------------------------------

    async def _ask(self) -> tuple[Any, ...]:
        link = engine(self).link
        status = await link.request("logs.status")
        alerts = self._alerts
        if self.mode == "alerts":
            alerts = await link.request(
                "alerts.list", {"source": "logwatch", "limit": ALERTS_SHOWN}
            )
        tail: dict[str, Any] | None = None
        note = ""
        source = self._source_under_cursor()
        if source is not None:
            if engine(self).may("logs.tail"):
                tail = await link.request("logs.tail", {"source": source, "limit": TAIL_LINES})
            else:
                note = "Reading log lines needs the operator role."
        return status, alerts, source, tail, note

    def _answer(self, answer: tuple[Any, ...]) -> None:
        self.status, self._alerts, source, tail, self._tail_note = answer
        self._show_rows()
        if tail is not None and source == self._source_under_cursor():
            self._show_tail(tail)

    # -- showing what came back ---------------------------------------------------------------

    def _show_modes(self) -> None:
        parts: list[Content | str | tuple[str, str]] = []
        for mode, (label, _, _) in MODES.items():
            key = mode[0]
            if parts:
                parts.append(" │ ")
            style = "bold reverse" if mode == self.mode else ""
            parts.append((f" {key} {label} ", style))
        self.query_one("#modes", Static).update(Content.assemble(*parts))

    def _show_title(self) -> None:
        status = self.status or {}
        jails = status.get("jails", [])
        parts: list[Content | str | tuple[str, str]] = [("Logs", "bold")]
        parts.append(
            f" │ {clean(status.get('state'), limit=20)}, {clean(status.get('watcher'), limit=10)}"
        )
        parts.append(f" │ {len(jails)} jails, {len(status.get('files', []))} files")
        failing = sum(int(j.get("currently_failed") or 0) for j in jails)
        if failing:
            parts += [" │ ", (f"{failing} hosts failing", "bold yellow")]
        if status.get("dropped"):
            parts += [" │ ", (f"{status['dropped']} lines dropped", "bold red")]
        self.query_one("#title", Static).update(Content.assemble(*parts))
        reason = status.get("reason")
        if reason and not self.query_one("#problem", Static).has_class("-shown"):
            self._show_problem(str(reason))

    def _show_rows(self) -> None:
        self._show_title()
        status = self.status or {}
        if self.mode == "jails":
            rows = {f"jail:{j['name']}": j for j in status.get("jails", [])}
            cells = jail_cells
        elif self.mode == "sources":
            rows = {f"source:{s['key']}": s for s in sources_of(status)}
            cells = source_cells
        else:
            rows = {f"alert:{a['id']}": a for a in self._alerts}
            cells = alert_cells
        terms = tuple(self.filter.casefold().split())
        shown = [k for k, row in rows.items() if not terms or _matches(row, terms)]
        self._rows = rows
        self.table.show({k: cells(rows[k]) for k in shown}, shown)
        box = self.query_one("#logs-box")
        label = MODES[self.mode][0]
        count = f"{len(shown)} of {len(rows)}" if terms else str(len(rows))
        box.border_title = Content.assemble((label, "bold"), f" {count}")
        self._cursor_moved()

    def _under_cursor(self) -> tuple[str, dict[str, Any]] | None:
        key = self.table.key_under_cursor()
        if key is None or key not in self._rows:
            return None
        return key.split(":", 1)[0], self._rows[key]

    def _source_under_cursor(self) -> str | None:
        if not self.is_attached or self.mode != "sources":
            return None
        found = self._under_cursor()
        return str(found[1]["key"]) if found is not None else None

    @on(DataTable.RowHighlighted, "#log-table")
    def _cursor_moved(self) -> None:
        found = self._under_cursor()
        box = self.query_one("#lines-box")
        if found is None:
            box.border_title = "Lines"
            empty = EMPTY if self.status is not None and not self.status.get("jails") else ""
            self.lines.show([Text(empty, style="dim")] if empty else [])
            return
        kind, row = found
        if kind == "jail":
            box.border_title = Content.assemble(
                ("Failing hosts", "bold"), " in ", clean(row.get("name"), limit=40)
            )
            state = str(row.get("state") or "")
            error = [Text(clean(state), style="bold red")] if state != "running" else []
            self.lines.show(error + host_lines(row))
        elif kind == "alert":
            box.border_title = Content.assemble(("Lines of alert", "bold"), f" #{row['id']}")
            evidence = row.get("evidence") or {}
            host, jail = str(row.get("src") or ""), str(row.get("rule") or "")
            self.lines.show([line_text(str(t), host, jail) for t in evidence.get("lines", [])])
        else:
            box.border_title = Content.assemble(
                ("Tail of", "bold"), " ", clean(row["key"], limit=200)
            )
            if row["key"] != self._shown_source:
                self._shown_source = str(row["key"])
                self.lines.show([Text("reading…", style="dim")])
                self._ask_again()  # the next poll reads its tail
            elif self._tail_note:
                self.lines.show([Text(self._tail_note, style="dim")])

    def _show_tail(self, tail: dict[str, Any]) -> None:
        found = self._under_cursor()
        error = found[1].get("error") if found is not None else ""
        lines = [Text(clean(error, limit=300), style="bold red")] if error else []
        lines += [
            line_text(str(r.get("text", "")), str(r.get("host") or ""), str(r.get("jail") or ""))
            for r in tail.get("lines", [])
        ]
        self.lines.show(lines or [Text("No lines yet.", style="dim")])

    # -- keys ---------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "mode":
            return parameters[0] != self.mode or None
        return True

    def action_mode(self, mode: str) -> None:
        if mode == self.mode:
            return
        self.mode = mode
        _, columns, rest = MODES[mode]
        self.table.use_columns(columns, rest=rest)
        self._rows, self._shown_source = {}, ""
        self._show_modes()
        self.refresh_bindings()
        self._show_rows()
        self._ask_again()

    @on(DataTable.RowSelected, "#log-table")
    def _open(self) -> None:
        """Enter on an alert opens it."""
        found = self._under_cursor()
        if found is None or found[0] != "alert":
            return
        from console.screens.alert_detail import AlertDetailScreen

        self.app.push_screen(AlertDetailScreen(int(found[1]["id"])))

    def _filter_changed(self) -> None:
        self._show_rows()

    def _focus_view(self) -> None:
        self.table.focus()


def _matches(row: dict[str, Any], terms: tuple[str, ...]) -> bool:
    text = " ".join(
        str(v) for k, v in row.items() if k not in ("evidence", "hosts") and v is not None
    )
    text += " " + " ".join(jail_sources(row)) if "filters" in row else ""
    folded = text.casefold()
    return all(term in folded for term in terms)
