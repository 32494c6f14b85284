"""The Alerts pane: every alert the engine raised, live, with the operator's workflow on it
(acknowledge with a note, resolve, silence), a live filter and a pause.

Changes from the engine are gathered by alert id and applied at most once per
``[console] refresh`` seconds (less often when a storm makes each update expensive) as a diff
of the table; the newest ``[console] max_rows`` alerts are kept. While paused, changes keep
gathering (still bounded) and are applied on resume.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Input

from console import severity
from console.panes.alert_rows import AlertRow, alert_flow, alert_sides, clock
from console.panes.alert_table import AlertTable
from console.screens.alert_detail import ACTION_COMMANDS, AlertDetailScreen
from console.screens.ban_form import ask_ban
from console.screens.prompts import ConfirmScreen, NoteScreen
from console.screens.silence import SilenceRequest, SilenceScreen
from console.throttle import Throttle
from console.untrusted import clean

if TYPE_CHECKING:
    from console.app import IotsecApp

# The share of one core that updating the table (applying changes and drawing them) may take;
# when an update costs more, the next one waits longer.
APPLY_BUDGET = 0.1

# The engine command each action needs; without it the key is shown greyed out.
NEEDS = {**ACTION_COMMANDS, "reopen": "alerts.reopen"}


def subject(alert: dict[str, Any]) -> Content:
    """A few lines that say which alert an action is about."""
    sev = str(alert.get("severity", ""))
    attacker, target = alert_sides(alert)
    return Content.assemble(
        (severity.LABEL.get(sev, sev), severity.STYLE.get(sev, "")),
        f" #{alert.get('id')} {clean(alert.get('title'), limit=140)}\n",
        f"attacker {attacker or '-'} → target {target or '-'}  rule {clean(alert.get('rule'))}"
        f"  count {alert.get('count')}",
    )


class AlertsPane(Vertical):
    title = "Alerts"
    help_text = (
        "Every alert the engine raised, newest first, updated live. Acknowledge an alert to "
        "tell other operators you are on it (with a note saying what you are doing), resolve "
        "it when it is dealt with, or silence alerts like it for a while: they are still "
        "recorded but never notify. Filter with words that must all appear (severity, state, "
        "address, rule or title). Pause to read without rows moving; changes queue until you "
        "resume. Enter shows the evidence and who did what. For an alert a rule raised on "
        "traffic, f shows its flow in the Traffic pane. b bans the alert's attacker (the side "
        "that did it, not the device that answered) in the firewall (it asks for how long, and "
        "once more for a device of your inventory); B opens the Bans view."
    )

    DEFAULT_CSS = """
    AlertsPane {
        border-top: solid $primary;
        border-title-align: left;
    }
    AlertsPane.-paused {
        border-top: heavy $warning;
    }
    AlertsPane AlertTable {
        height: 1fr;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
    }
    AlertsPane #alert-filter {
        display: none;
    }
    AlertsPane.-filtering #alert-filter {
        display: block;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "a",
            "ack",
            "Ack",
            id="alerts.ack",
            tooltip="Acknowledge the alert under the cursor, with a note",
        ),
        Binding(
            "r",
            "resolve",
            "Resolve",
            id="alerts.resolve",
            tooltip="Resolve the alert under the cursor (asks first)",
        ),
        Binding(
            "s",
            "silence",
            "Silence",
            id="alerts.silence",
            tooltip="Silence alerts like the one under the cursor for a while (asks first)",
        ),
        Binding(
            "u",
            "reopen",
            "Reopen",
            id="alerts.reopen",
            show=False,
            tooltip="Open the acknowledged or resolved alert under the cursor again",
        ),
        Binding(
            "b",
            "ban",
            "Ban",
            id="alerts.ban",
            tooltip="Ban the attacker of the alert under the cursor (asks for how long)",
        ),
        Binding(
            "B",
            "bans",
            "Bans",
            id="alerts.bans",
            show=False,
            tooltip="Open the Bans view: what is banned, for how long, proposed bans",
        ),
        Binding(
            "f",
            "flow",
            "Flow",
            id="alerts.flow",
            tooltip="Show the flow of the rule alert under the cursor in the Traffic pane",
        ),
        Binding(
            "slash",
            "filter",
            "Filter",
            id="alerts.filter",
            tooltip="Filter rows as you type; Enter keeps the filter, Esc clears it",
        ),
        Binding(
            "escape",
            "clear_filter",
            "Clear",
            id="alerts.clear_filter",
            tooltip="Clear the filter",
        ),
        Binding(
            "p",
            "pause",
            "Pause",
            id="alerts.pause",
            tooltip="Pause or resume live updates; changes queue while paused",
        ),
        Binding(
            "o",
            "sort",
            "Sort",
            id="alerts.sort",
            # Off the footer, which at 80 columns must keep ? Help: headers can be clicked too.
            show=False,
            tooltip="Sort by the next column (or click a column header)",
        ),
        Binding(
            "O",
            "reverse_sort",
            "Reverse",
            id="alerts.sort_reverse",
            show=False,
            tooltip="Reverse the sort order",
        ),
    ]

    def __init__(self, *, max_rows: int, refresh: float, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_rows = max_rows
        self.paused = False
        self._throttle = Throttle(self, refresh, self._apply, budget=APPLY_BUDGET)
        self._rows: dict[int, AlertRow] = {}
        self._pending: dict[int, dict[str, Any]] = {}
        self._snapshot: dict[int, dict[str, Any]] | None = None
        self._filter = ""
        self._terms: tuple[str, ...] = ()
        self._title = ""
        # Whether the alert under the cursor has a flow and a source, as the bindings last
        # showed it.
        self._cursor_shown = (False, False)

    @property
    def console(self) -> IotsecApp:
        return self.app  # type: ignore[return-value]

    @property
    def table(self) -> AlertTable:
        return self.query_one(AlertTable)

    def compose(self) -> ComposeResult:
        yield AlertTable(id="alert-table")
        yield Input(
            placeholder="filter: words that must all appear", id="alert-filter", compact=True
        )

    def on_mount(self) -> None:
        self._update_title()

    # -- changes from the engine --------------------------------------------------------------

    def receive(self, alerts: list[dict[str, Any]]) -> None:
        """New or changed alerts from the event stream."""
        for alert in alerts:
            self._pending[int(alert["id"])] = alert
        if len(self._pending) > 2 * self.max_rows:
            # Paused through a storm: only the newest can ever be shown, keep those.
            newest = heapq.nlargest(
                self.max_rows, self._pending.values(), key=lambda a: a.get("last_seen") or 0
            )
            self._pending = {int(a["id"]): a for a in newest}
        self._schedule()

    def load(self, alerts: list[dict[str, Any]]) -> None:
        """A full list that replaces what the table holds (after connecting or a resync).

        Changes that arrived before it stay on top of it: events are at least as new as a
        list read from the database.
        """
        self._snapshot = {int(a["id"]): a for a in alerts}
        self._schedule()

    def _schedule(self) -> None:
        if self.paused:
            self._update_title()
        else:
            self._throttle.request()

    def _apply(self) -> None:
        if self.paused:
            return  # a run requested before the pause: resuming requests another
        if self._snapshot is not None:
            rows: dict[int, AlertRow] = {}
            incoming = {**self._snapshot, **self._pending}
        else:
            rows, incoming = self._rows, self._pending
        for alert_id, alert in incoming.items():
            rows[alert_id] = AlertRow.build(alert)
        self._rows, self._pending, self._snapshot = rows, {}, None
        excess = len(rows) - self.max_rows
        if excess > 0:
            for row in heapq.nsmallest(excess, rows.values(), key=lambda r: (r.last_seen, r.id)):
                del rows[row.id]
        self._show()

    def _show(self) -> None:
        rows = self._rows
        if self._terms:
            rows = {i: r for i, r in rows.items() if r.matches(self._terms)}
        self.table.show(rows)
        self._update_title()
        self._cursor_moved()

    def _update_title(self) -> None:
        shown, total = len(self.table.shown), len(self._rows)
        parts: list[Content | str | tuple[str, str]] = [("Alerts", "bold")]
        parts.append(f" {shown} of {total}" if self._terms else f" {total}")
        if total >= self.max_rows:
            parts.append(" (newest kept)")
        if self._filter:
            parts += [" │ filter: ", (clean(self._filter, limit=40), "bold")]
        if self.paused:
            queued = len(self._pending) + len(self._snapshot or {})
            parts += [" │ ", (" PAUSED ", "bold reverse"), f" {queued} queued, p resumes"]
        title = Content.assemble(*parts)
        if title.plain != self._title:
            self._title = title.plain
            self.border_title = title

    # -- filter, pause, sort ------------------------------------------------------------------

    def action_filter(self) -> None:
        self.add_class("-filtering")
        self.query_one("#alert-filter", Input).focus()
        self.refresh_bindings()

    @on(Input.Changed, "#alert-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._filter = event.value.strip()
        self._terms = tuple(self._filter.casefold().split())
        self._show()
        self.refresh_bindings()

    @on(Input.Submitted, "#alert-filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        event.stop()
        self.remove_class("-filtering")
        self.table.focus()

    def action_clear_filter(self) -> None:
        self.query_one("#alert-filter", Input).value = ""
        self.remove_class("-filtering")
        self.table.focus()
        self.refresh_bindings()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.set_class(self.paused, "-paused")
        if self.paused:
            self._update_title()
        else:
            self._schedule()

    def action_sort(self) -> None:
        self.table.next_sort_column()

    def action_reverse_sort(self) -> None:
        self.table.reverse_sort()

    # -- the operator's workflow --------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "ban":
            return True if self.console.may(NEEDS[action]) and self._has_attacker() else None
        if action == "bans":
            return self.console.check_action("bans", ())
        if action in NEEDS:
            # None shows the key greyed out: the operator sees it exists but is not theirs.
            return True if self.console.may(NEEDS[action]) else None
        if action == "clear_filter":
            return bool(self._filter) or self.has_class("-filtering")
        if action == "flow":
            return True if self._has_flow() else None
        return True

    def _has_flow(self) -> bool:
        row = self.table.row_under_cursor()
        return row is not None and alert_flow(row.alert) is not None

    def _has_attacker(self) -> bool:
        row = self.table.row_under_cursor()
        return row is not None and bool(alert_sides(row.alert)[0])

    @on(DataTable.RowHighlighted)
    def _cursor_moved(self) -> None:
        # The flow and ban keys follow the alert under the cursor; the footer is redrawn only
        # when that changes them, not at every row.
        shown = (self._has_flow(), self._has_attacker())
        if shown != self._cursor_shown:
            self._cursor_shown = shown
            self.refresh_bindings()

    def _selected(self) -> dict[str, Any] | None:
        row = self.table.row_under_cursor()
        if row is None:
            self.app.notify("No alert selected", severity="warning")
            return None
        return row.alert

    def action_ack(self) -> None:
        if (alert := self._selected()) is not None:
            self.acknowledge(alert)

    def action_resolve(self) -> None:
        if (alert := self._selected()) is not None:
            self.resolve(alert)

    def action_silence(self) -> None:
        if (alert := self._selected()) is not None:
            self.silence(alert)

    def action_reopen(self) -> None:
        if (alert := self._selected()) is not None:
            self.reopen(alert)

    def action_ban(self) -> None:
        if (alert := self._selected()) is not None:
            self.ban(alert)

    def action_bans(self) -> None:
        self.console.action_bans()

    def acknowledge(self, alert: dict[str, Any]) -> None:
        alert_id = alert["id"]
        if alert["state"] in ("acknowledged", "resolved"):
            self.app.notify(
                f"Alert {alert_id} is already {alert['state']}"
                + ("; reopen it first (u)" if alert["state"] == "resolved" else ""),
                severity="warning",
                markup=False,
            )
            return

        def send(note: str | None) -> None:
            if note is not None:
                self._send(
                    "alerts.ack",
                    {"id": alert_id, "note": note},
                    f"Acknowledge alert {alert_id}",
                    lambda _: f"Alert {alert_id} acknowledged",
                )

        self.app.push_screen(
            NoteScreen(
                f"Acknowledge alert #{alert_id}",
                subject(alert),
                placeholder="note: what you are doing about it",
            ),
            send,
        )

    def resolve(self, alert: dict[str, Any]) -> None:
        alert_id = alert["id"]
        if alert["state"] == "resolved":
            self.app.notify(f"Alert {alert_id} is already resolved", severity="warning")
            return

        def send(confirmed: bool | None) -> None:
            if confirmed:
                self._send(
                    "alerts.resolve",
                    {"id": alert_id, "note": ""},
                    f"Resolve alert {alert_id}",
                    lambda _: f"Alert {alert_id} resolved",
                )

        body = Content.assemble(
            subject(alert), "\n\nThe next identical event will open a new alert."
        )
        self.app.push_screen(
            ConfirmScreen(f"Resolve alert #{alert_id}?", body, confirm="Resolve"), send
        )

    def silence(self, alert: dict[str, Any]) -> None:
        def confirm(request: SilenceRequest | None) -> None:
            if request is None:
                return
            body = Content(
                "Matching alerts are still recorded but never notify; open ones become"
                " silenced. The silence ends by itself, or with 'iotsec alerts unsilence'."
            )

            def send(confirmed: bool | None) -> None:
                if confirmed:
                    self._send(
                        "alerts.silence",
                        request.args(),
                        "Silence alerts",
                        lambda r: (
                            f"Silence #{r['id']} until {clock(r['expires'])}:"
                            f" {r['silenced']} open alerts silenced"
                        ),
                    )

            self.app.push_screen(
                ConfirmScreen(f"Silence {request.describe()}?", body, confirm="Silence"), send
            )

        self.app.push_screen(SilenceScreen(alert), confirm)

    def ban(self, alert: dict[str, Any]) -> None:
        attacker, _target = alert_sides(alert)
        if not attacker:
            self.app.notify(f"Alert {alert['id']} names no attacker to ban", severity="warning")
            return
        title = clean(alert.get("title"), limit=200)
        ask_ban(self.console, attacker, f"the attacker of alert #{alert['id']}",
                f"alert #{alert['id']}: {title}")  # fmt: skip

    def action_flow(self) -> None:
        if (alert := self._selected()) is not None:
            self.show_flow(alert)

    def show_flow(self, alert: dict[str, Any]) -> None:
        flow = alert_flow(alert)
        if flow is None:
            self.app.notify(
                f"Alert {alert['id']} names no flow: only alerts a rule raised on traffic do",
                severity="warning",
            )
            return
        self.console.show_flow(flow, f"alert #{alert['id']}")

    def reopen(self, alert: dict[str, Any]) -> None:
        alert_id = alert["id"]
        if alert["state"] == "open":
            self.app.notify(f"Alert {alert_id} is already open", severity="warning")
            return
        self._send(
            "alerts.reopen",
            {"id": alert_id, "note": ""},
            f"Reopen alert {alert_id}",
            lambda _: f"Alert {alert_id} open again",
        )

    def _send(self, cmd: str, args: dict[str, Any], label: str, done: Callable[[Any], str]) -> None:
        """Run one request in the background; a refusal shows as an error (see the app)."""

        async def call() -> None:
            result = await self.console.link.request(cmd, args)
            self.app.notify(done(result), markup=False)

        self.console.run_worker(call(), name=label, group="actions", exit_on_error=False)

    @on(DataTable.RowSelected)
    def _open_details(self, event: DataTable.RowSelected) -> None:
        event.stop()
        alert_id = int(str(event.row_key.value))

        def act(action: str | None) -> None:
            row = self._rows.get(alert_id)
            if action is None or row is None:
                return
            actions = {
                "ack": self.acknowledge,
                "resolve": self.resolve,
                "silence": self.silence,
                "flow": self.show_flow,
                "ban": self.ban,
            }
            actions[action](row.alert)

        self.app.push_screen(AlertDetailScreen(alert_id), act)
