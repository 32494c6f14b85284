# Over 500 lines: one live table and the whole workflow on it, sharing its selection.
"""The Alerts pane: every alert the engine raised, live, with the operator's workflow on it
(acknowledge with a note, resolve, silence), a live filter and a pause.

Changes from the engine are gathered by alert id and applied at most once per
``[console] refresh`` seconds (less often when a storm makes each update expensive) as a diff
of the table; the newest ``[console] max_rows`` alerts are kept. While paused, changes keep
gathering (still bounded) and are applied on resume.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Input

from console import severity
from console.engine_access import engine
from console.messages import OpenView, ShowFlow
from console.panes.alert_rows import AlertRow, alert_flow, alert_sides, clock
from console.panes.alert_table import AlertTable
from console.screens.alert_detail import ACTION_COMMANDS, AlertDetailScreen
from console.screens.ban_form import ask_ban
from console.screens.prompts import ConfirmScreen, NoteScreen
from console.screens.silence import SilenceRequest, SilenceScreen
from console.screens.views import view_available
from console.throttle import Throttle
from console.untrusted import clean
from engine.durations import format_duration

# The share of one core that updating the table (applying changes and drawing them) may take;
# when an update costs more, the next one waits longer.
APPLY_BUDGET = 0.1

# The engine command each action needs; without it the key is shown greyed out.
NEEDS = {**ACTION_COMMANDS, "reopen": "alerts.reopen"}


# How many alerts a dialog about several names, one a line.
SUBJECTS = 5


def subjects(alerts: Sequence[dict[str, Any]], *, skipped: int = 0) -> Content:
    """One line per alert (the first few) for a dialog about several."""
    lines = [
        Content.assemble(
            (
                severity.LABEL.get(sev := str(a.get("severity", "")), sev),
                severity.STYLE.get(sev, ""),
            ),
            f" #{a.get('id')} {alert_sides(a)[0] or '-'} {clean(a.get('title'), limit=50)}",
        )
        for a in alerts[:SUBJECTS]
    ]
    if len(alerts) > SUBJECTS:
        lines.append(Content(f"… and {len(alerts) - SUBJECTS} more"))
    if skipped:
        lines.append(Content(f"({skipped} selected already done: left as they are)"))
    return Content("\n").join(lines)


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
        "resume. Space selects the alert under the cursor and * every alert the filter shows; "
        "a, r and s then act on all the selected alerts at once (one note for all). Enter "
        "shows the evidence and who did what. For an alert a rule raised on "
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
            tooltip="Acknowledge the selected alerts or the one under the cursor, with a note",
        ),
        Binding(
            "r",
            "resolve",
            "Resolve",
            id="alerts.resolve",
            tooltip="Resolve the selected alerts or the one under the cursor (asks first)",
        ),
        Binding(
            "s",
            "silence",
            "Silence",
            id="alerts.silence",
            tooltip="Silence alerts like the selected ones or the one under the cursor for a "
            "while (asks first)",
        ),
        Binding(
            "space",
            "mark",
            "Select",
            id="alerts.select",
            show=False,
            tooltip="Select or unselect the alert under the cursor, for a, r or s on several",
        ),
        Binding(
            "asterisk",
            "mark_all",
            "Select all",
            id="alerts.select_all",
            show=False,
            tooltip="Select every alert the filter shows (again: select none)",
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
            "S",
            "silences",
            "Silences",
            id="alerts.silences",
            show=False,
            tooltip="Open the Silences view: what is silenced, for how long; extend or end one",
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
            tooltip="Clear the filter, or else the selection",
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
        self.table.set_marked(i for i in self.table.marked if i in rows)
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
        if marked := len(self._marked_rows()):
            parts += [" │ ", (f"{marked} selected", "bold")]
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
        if not (self._filter or self.has_class("-filtering")):
            self._mark(())
            return
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
            return True if engine(self).may(NEEDS[action]) and self._has_attacker() else None
        if action in ("bans", "silences"):
            return view_available(self.app, action)
        if action in NEEDS:
            # None shows the key greyed out: the operator sees it exists but is not theirs.
            return True if engine(self).may(NEEDS[action]) else None
        if action == "clear_filter":
            return bool(self._filter or self.table.marked) or self.has_class("-filtering")
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

    # -- selecting several alerts -------------------------------------------------------------

    def _marked_rows(self) -> list[AlertRow]:
        """The selected alerts the table shows, top to bottom (the filter may hide others)."""
        table = self.table
        marked = [table.shown[i] for i in table.marked if i in table.shown]
        return sorted(marked, key=lambda r: table.get_row_index(str(r.id)))

    def _mark(self, ids: Iterable[int]) -> None:
        self.table.set_marked(ids)
        self._update_title()
        self.refresh_bindings()

    def action_mark(self) -> None:
        row = self.table.row_under_cursor()
        if row is None:
            return
        self._mark(self.table.marked ^ {row.id})
        # As in file managers: the cursor moves on, so space space space selects a run.
        self.table.action_cursor_down()

    def action_mark_all(self) -> None:
        shown = set(self.table.shown)
        self._mark(set() if shown <= self.table.marked else self.table.marked | shown)

    def _targets(self) -> list[dict[str, Any]]:
        """What a, r and s act on: the selected alerts, or else the one under the cursor."""
        if marked := self._marked_rows():
            return [row.alert for row in marked]
        alert = self._selected()
        return [] if alert is None else [alert]

    def _selected(self) -> dict[str, Any] | None:
        row = self.table.row_under_cursor()
        if row is None:
            self.app.notify("No alert selected", severity="warning")
            return None
        return row.alert

    def action_ack(self) -> None:
        alerts = self._targets()
        if len(alerts) > 1:
            self.acknowledge_all(alerts)
        elif alerts:
            self.acknowledge(alerts[0])

    def action_resolve(self) -> None:
        alerts = self._targets()
        if len(alerts) > 1:
            self.resolve_all(alerts)
        elif alerts:
            self.resolve(alerts[0])

    def action_silence(self) -> None:
        alerts = self._targets()
        if len(alerts) > 1:
            self.silence_all(alerts)
        elif alerts:
            self.silence(alerts[0])

    def action_reopen(self) -> None:
        if (alert := self._selected()) is not None:
            self.reopen(alert)

    def action_ban(self) -> None:
        if (alert := self._selected()) is not None:
            self.ban(alert)

    def action_bans(self) -> None:
        self.post_message(OpenView("bans"))

    def action_silences(self) -> None:
        self.post_message(OpenView("silences"))

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
                " silenced. The silence ends by itself; S lists the silences to extend or end"
                " one."
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

    def acknowledge_all(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Acknowledge several alerts with one note: one request, audited, per alert."""
        todo = [a for a in alerts if a["state"] not in ("acknowledged", "resolved")]
        if not todo:
            self.app.notify(
                "The selected alerts are all acknowledged or resolved already", severity="warning"
            )
            return

        def send(note: str | None) -> None:
            if note is not None:
                self._send_all(
                    "alerts.ack",
                    [{"id": a["id"], "note": note} for a in todo],
                    f"Acknowledge {len(todo)} alerts",
                    "acknowledged",
                )

        self.app.push_screen(
            NoteScreen(
                f"Acknowledge {len(todo)} alerts",
                subjects(todo, skipped=len(alerts) - len(todo)),
                placeholder="note: what you are doing about them",
            ),
            send,
        )

    def resolve_all(self, alerts: Sequence[dict[str, Any]]) -> None:
        todo = [a for a in alerts if a["state"] != "resolved"]
        if not todo:
            self.app.notify("The selected alerts are all resolved already", severity="warning")
            return

        def send(confirmed: bool | None) -> None:
            if confirmed:
                self._send_all(
                    "alerts.resolve",
                    [{"id": a["id"], "note": ""} for a in todo],
                    f"Resolve {len(todo)} alerts",
                    "resolved",
                )

        body = Content.assemble(
            subjects(todo, skipped=len(alerts) - len(todo)),
            "\n\nThe next identical event will open a new alert.",
        )
        self.app.push_screen(
            ConfirmScreen(f"Resolve {len(todo)} alerts?", body, confirm="Resolve"), send
        )

    def silence_all(self, alerts: Sequence[dict[str, Any]]) -> None:
        """One silence per different rule and source among the alerts, asked once."""

        def confirm(request: SilenceRequest | None) -> None:
            if request is None:
                return
            requests = list(dict.fromkeys(r for a in alerts if (r := request.like(a))))
            if not requests:
                self.app.notify("No selected alert has a source to match", severity="warning")
                return
            body = Content(
                "\n".join(r.describe() for r in requests[:SUBJECTS])
                + (f"\n… and {len(requests) - SUBJECTS} more" if len(requests) > SUBJECTS else "")
                + "\n\nMatching alerts are still recorded but never notify; open ones become"
                " silenced."
            )

            def send(confirmed: bool | None) -> None:
                if confirmed:
                    self._send_all(
                        "alerts.silence",
                        [r.args() for r in requests],
                        f"Silence {len(requests)} kinds of alerts",
                        "silenced",
                        noun="silences",
                    )

            self.app.push_screen(
                ConfirmScreen(
                    f"Add {len(requests)} silences for {format_duration(request.seconds)}?",
                    body,
                    confirm="Silence",
                ),
                send,
            )

        self.app.push_screen(SilenceScreen(alerts[0], count=len(alerts)), confirm)

    def ban(self, alert: dict[str, Any]) -> None:
        attacker, _target = alert_sides(alert)
        if not attacker:
            self.app.notify(f"Alert {alert['id']} names no attacker to ban", severity="warning")
            return
        title = clean(alert.get("title"), limit=200)
        ask_ban(self.app, attacker, f"the attacker of alert #{alert['id']}",
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
        self.post_message(ShowFlow(flow, f"alert #{alert['id']}"))

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
            result = await engine(self).link.request(cmd, args)
            self.app.notify(done(result), markup=False)

        self.app.run_worker(call(), name=label, group="actions", exit_on_error=False)

    def _send_all(
        self,
        cmd: str,
        requests: list[dict[str, Any]],
        label: str,
        done: str,
        *,
        noun: str = "alerts",
    ) -> None:
        """Send one request per item, all at once; the selection is cleared when they are."""
        self._mark(())

        async def call() -> None:
            link = engine(self).link
            results = await asyncio.gather(
                *(link.request(cmd, args) for args in requests), return_exceptions=True
            )
            failed = [r for r in results if isinstance(r, BaseException)]
            if len(failed) < len(results):
                self.app.notify(
                    f"{len(results) - len(failed)} {noun} {done}"
                    + (f", {len(failed)} failed" if failed else ""),
                    markup=False,
                )
            if failed:
                raise failed[0]

        self.app.run_worker(call(), name=label, group="actions", exit_on_error=False)

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
