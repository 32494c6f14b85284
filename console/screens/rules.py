"""The Rules view: the packet rules the engine loaded, from which files, how often each one hit,
and the rules it rejected; an operator enables or disables a rule by sid and reloads the files.

Opened with R or from the command palette. While it is open, ``rules.status`` and
``rules.list`` are polled every two seconds, one poll at a time (the next is armed when the
last has finished), and the tables are updated by diff. The text filter is the engine's
(``rules.list``); sorting is done here.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import ContentSwitcher, DataTable, Static

from console.engine_access import engine
from console.panes.traffic_table import Cells, TrafficTable
from console.screens.alert_detail import when
from console.screens.engine_view import EngineView
from console.screens.rule_rows import (
    DESCENDING,
    REJECTION_COLUMNS,
    RULE_COLUMNS,
    SORT_LABEL,
    SORTS,
    file_line,
    rejection_cells,
    rejection_key,
    rule_cells,
    rule_key,
    sort_key,
)
from console.untrusted import clean
from engine.control.protocol import ControlError

LIST_LIMIT = 5000

# The engine commands each action needs; without them the key is shown greyed out.
NEEDS = {"toggle": ("rules.enable", "rules.disable"), "reload": ("rules.reload",)}


class RulesScreen(EngineView):
    what = "rules"
    TITLE = "Rules"
    help_text = (
        "The packet rules the engine runs (Suricata syntax), from which files, and how many "
        "times each one hit since the engine started. Enable or disable a rule by its sid: "
        "the engine keeps that across restarts and reloads. Reload reads the rule files (and "
        "the config's [detect] section) again; a reload that brings new problems, such as a "
        "missing file or a bad variable, keeps the running rules and says why. Rules that did "
        "not load are listed with their file, line and the reason (t shows them). The filter "
        "looks for text in the sid, msg and classtype."
    )

    DEFAULT_CSS = """
    RulesScreen #files {
        max-height: 4;
        overflow-y: auto;
        padding: 0 1;
    }
    RulesScreen #views {
        height: 1fr;
    }
    RulesScreen #views > Vertical {
        border-top: solid $primary;
        border-title-align: left;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "space,e",
            "toggle",
            "On/Off",
            id="rules.toggle",
            tooltip="Enable or disable the rule under the cursor (by sid)",
        ),
        Binding(
            "r",
            "reload",
            "Reload",
            id="rules.reload",
            tooltip="Reload the rule files; on new problems the running rules stay",
        ),
        Binding(
            "slash",
            "filter",
            "Filter",
            id="rules.filter",
            tooltip="Filter by text in the sid, msg or classtype; Enter keeps it, Esc clears it",
        ),
        Binding(
            "o",
            "sort",
            "Sort",
            id="rules.sort",
            tooltip="Sort by the next of sid, hits and severity (or click a column header)",
        ),
        Binding(
            "t",
            "switch_view",
            "Rejected",
            id="rules.view",
            tooltip="Switch between the rules and the ones that were rejected (file, line, why)",
        ),
        Binding(
            "escape",
            "back",
            "Back",
            id="rules.back",
            tooltip="Clear the filter, else close the Rules view",
        ),
        Binding(
            "q", "close", "Close", id="rules.close", show=False, tooltip="Close the Rules view"
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sort = SORTS[0]
        self.status: dict[str, Any] | None = None
        self.total = 0
        self._rules: dict[str, dict[str, Any]] = {}
        self._cells: dict[str, tuple[dict[str, Any], Cells]] = {}

    @property
    def rules(self) -> TrafficTable:
        return self.query_one("#rule-table", TrafficTable)

    @property
    def rejections(self) -> TrafficTable:
        return self.query_one("#rejection-table", TrafficTable)

    def compose(self) -> ComposeResult:
        yield Static("Rules", id="title", markup=False)
        yield Static("", id="files", markup=False)
        yield Static("", id="reload-error", classes="alarm", markup=False)
        yield Static("", id="problem", classes="alarm", markup=False)
        with ContentSwitcher(initial="rules-box", id="views"):
            with Vertical(id="rules-box"):
                yield TrafficTable(RULE_COLUMNS, rest="msg", id="rule-table")
            with Vertical(id="rejections-box"):
                yield TrafficTable(REJECTION_COLUMNS, rest="reason", id="rejection-table")
        yield from self.filter_and_footer("filter: text in the sid, msg or classtype")

    def on_mount(self) -> None:
        self.rules.label_sort(self.sort, descending=DESCENDING[self.sort])
        self.rules.focus()
        self._update_titles()
        self._poller.now()

    # -- polling ------------------------------------------------------------------------------

    async def _ask(self) -> tuple[dict[str, Any], dict[str, Any]]:
        link = engine(self).link
        args: dict[str, Any] = {"limit": LIST_LIMIT}
        if self.filter:
            args["filter"] = self.filter
        status, listed = await asyncio.gather(
            link.request("rules.status"), link.request("rules.list", args)
        )
        return status, listed

    def _answer(self, answer: tuple[dict[str, Any], dict[str, Any]]) -> None:
        status, listed = answer
        self._show_status(status)
        self._show_rules(listed)

    # -- showing what came back ---------------------------------------------------------------

    def _show_status(self, status: dict[str, Any]) -> None:
        self.status = status
        rejected = status.get("rejected") or []
        disabled = status.get("disabled") or []
        loaded_at = float(status.get("loaded_at") or 0)
        title = Content.assemble(
            ("Rules", "bold"),
            f" │ {int(status.get('accepted') or 0)} loaded · {len(rejected)} rejected"
            f" · {len(disabled)} disabled │ ",
            f"loaded {when(loaded_at)}" if loaded_at else "not loaded",
        )
        self.query_one("#title", Static).update(title)
        files = status.get("files") or []
        lines = Text("\n", no_wrap=True, overflow="ellipsis", end="").join(map(file_line, files))
        if not files:
            lines = Text("no rule files: [detect] rule_files names none and no rules are shipped")
        self.query_one("#files", Static).update(lines)
        error = str(status.get("reload_error") or "")
        box = self.query_one("#reload-error", Static)
        box.update(Content(f"✕ Last reload failed, the rules before it still run: {clean(error)}"))
        box.set_class(bool(error), "-shown")
        rows = {rejection_key(r): rejection_cells(r) for r in rejected}
        self.rejections.show(rows, list(rows))
        self._update_titles()

    def _show_rules(self, listed: dict[str, Any]) -> None:
        rules = listed.get("rules") or []
        self.total = int(listed.get("total") or len(rules))
        cells: dict[str, tuple[dict[str, Any], Cells]] = {}
        for rule in rules:
            key = rule_key(rule)
            before = self._cells.get(key)
            # Unchanged rules keep their cells: nothing to format, nothing to redraw.
            cells[key] = (
                before if before is not None and before[0] == rule else (rule, rule_cells(rule))
            )
        self._cells = cells
        self._rules = {key: rule for key, (rule, _) in cells.items()}
        self._show_rows()

    def _show_rows(self) -> None:
        order = sorted(
            self._rules,
            key=lambda k: sort_key(self.sort, self._rules[k]),
            reverse=DESCENDING[self.sort],
        )
        self.rules.show({key: c for key, (_, c) in self._cells.items()}, order)
        self._update_titles()

    def _update_titles(self) -> None:
        shown = len(self._rules)
        parts: list[Content | str | tuple[str, str]] = [("Rules", "bold")]
        parts.append(f" {shown}" + (f" of {self.total}" if self.total > shown else ""))
        if self.status is not None:
            parts.append(
                f" │ {int(self.status.get('hits') or 0)} hits,"
                f" {int(self.status.get('alerts') or 0)} alerts"
            )
        parts.append(f" │ by {SORT_LABEL[self.sort]}")
        if self.filter:
            parts += [" │ filter: ", (clean(self.filter, limit=40), "bold")]
        self.query_one("#rules-box").border_title = Content.assemble(*parts)
        rejected = len((self.status or {}).get("rejected") or [])
        self.query_one("#rejections-box").border_title = Content.assemble(
            ("Rejected", "bold"), f" {rejected} │ t shows the rules"
        )

    # -- enabling, disabling and reloading ----------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in NEEDS:
            # None shows the key greyed out: the operator sees it exists but is not theirs.
            return True if all(engine(self).may(c) for c in NEEDS[action]) else None
        return True

    def action_toggle(self) -> None:
        if self.query_one(ContentSwitcher).current != "rules-box":
            self.app.notify("Rejected rules did not load: there is nothing to turn on or off")
            return
        key = self.rules.key_under_cursor()
        rule = self._rules.get(key) if key is not None else None
        if rule is None:
            self.app.notify("No rule under the cursor", severity="warning")
            return
        sid = int(rule["sid"])
        enable = not rule.get("enabled", True)

        async def call() -> None:
            changed = await engine(self).link.request(
                "rules.enable" if enable else "rules.disable", {"sid": sid}
            )
            state = "enabled" if changed.get("enabled") else "disabled"
            self.app.notify(
                f"Rule {sid} {state}: {clean(changed.get('msg'), limit=100)}", markup=False
            )
            if self.is_attached and str(changed.get("sid")) in self._rules:
                self._rules[str(changed["sid"])] = changed
                self._cells[str(changed["sid"])] = (changed, rule_cells(changed))
                self._show_rows()
                self._changed()

        verb = "Enable" if enable else "Disable"
        self.app.run_worker(call(), name=f"{verb} rule {sid}", group="actions", exit_on_error=False)

    def action_reload(self) -> None:
        async def call() -> None:
            try:
                status = await engine(self).link.request("rules.reload")
            except ControlError as exc:
                if exc.code != "rules_error":
                    raise
                self.app.notify(
                    str(exc), title="Rules not reloaded", severity="error", markup=False, timeout=15
                )
            else:
                rejected = len(status.get("rejected") or [])
                self.app.notify(
                    f"Rules reloaded: {int(status.get('accepted') or 0)} loaded,"
                    f" {rejected} rejected",
                    markup=False,
                )
            if self.is_attached:
                self._changed()

        self.app.run_worker(
            call(), name="Reloading the rules", group="actions", exit_on_error=False
        )

    def _changed(self) -> None:
        self._update_titles()
        self._ask_again()

    # -- filter, sort, views ------------------------------------------------------------------

    def _filter_changed(self) -> None:
        self._changed()

    def action_sort(self) -> None:
        self._sort_by(SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)])

    @on(DataTable.HeaderSelected, "#rule-table")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        if column in SORTS:
            self._sort_by(column)

    def _sort_by(self, sort: str) -> None:
        self.sort = sort
        self.rules.label_sort(sort, descending=DESCENDING[sort])
        self._show_rows()

    def action_switch_view(self) -> None:
        views = self.query_one(ContentSwitcher)
        views.current = "rejections-box" if views.current == "rules-box" else "rules-box"
        self._focus_view()

    def _focus_view(self) -> None:
        if self.query_one(ContentSwitcher).current == "rejections-box":
            self.rejections.focus()
        else:
            self.rules.focus()
