"""The Bans view: the addresses the engine bans in the firewall, how long each has left and what
it dropped, whether the firewall enforces them at all, and the bans the response policy proposes
for an operator to confirm or reject.

Opened with B or from the command palette. While it is open, ``bans.list`` is polled every two
seconds, one poll at a time (the next is armed when the last has finished), and the table is
updated by diff; the time left is worked out from each ban's end at every poll, so it counts
down. The filter is applied here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from console.engine_access import engine
from console.panes.traffic_table import Cells, TrafficTable
from console.screens.ban_form import send_ban
from console.screens.ban_rows import (
    BAN_COLUMNS,
    PROPOSED_STYLE,
    ban_cells,
    ban_key,
    describe,
    is_proposed,
    matches,
    time_left,
    times,
)
from console.screens.engine_view import EngineView, view_bindings
from console.screens.prompts import ConfirmScreen
from console.untrusted import clean

# The engine command each action needs; without it the key is shown greyed out.
NEEDS = {"unban": "bans.unban", "confirm": "bans.confirm", "reject": "bans.reject"}

EMPTY = (
    "No bans. b in the Alerts pane bans the source of the alert under the cursor;"
    " 'iotsec ban ADDRESS' bans any address."
)


class BansScreen(EngineView):
    what = "bans"
    TITLE = "Bans"
    help_text = (
        "The addresses and networks the engine bans in the firewall, soonest to end first: "
        "how long each ban has left, how many packets the firewall dropped from it, where it "
        "came from (an operator, or the response policy for a rule or jail) and who made it. "
        "The top line says which firewall backend holds the bans and whether it enforces them; "
        "in dry-run the bans are only recorded. Bans the response policy proposes (its entries "
        "with confirm = true) are listed first in yellow: y makes the ban, n rejects it. u lifts "
        "the ban under the cursor. The filter looks for text in the address, source, operator "
        "and reason."
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "u",
            "unban",
            "Unban",
            id="bans.unban",
            tooltip="Lift the ban under the cursor (asks first)",
        ),
        Binding(
            "y",
            "confirm",
            "Confirm",
            id="bans.confirm",
            tooltip="Make the proposed ban under the cursor (the allow-list is asked again)",
        ),
        Binding(
            "n",
            "reject",
            "Reject",
            id="bans.reject",
            tooltip="Reject the proposed ban under the cursor: nothing is banned",
        ),
        *view_bindings("bans", "Bans", "Filter by text in the address, source, operator or reason"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.listing: dict[str, Any] | None = None
        # The clock the time left is counted from (a test stops it).
        self.clock: Callable[[], float] = time.time
        self._bans: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        # What the bindings last showed for the row under the cursor ("ban", "proposed" or "").
        self._kind_shown = ""

    @property
    def table(self) -> TrafficTable:
        return self.query_one("#ban-table", TrafficTable)

    def compose(self) -> ComposeResult:
        yield Static("Bans", id="title", markup=False)
        yield Static("", id="enforcement", classes="alarm", markup=False)
        yield Static("", id="problem", classes="alarm", markup=False)
        with Vertical(id="bans-box", classes="view-box"):
            yield TrafficTable(BAN_COLUMNS, rest="reason", id="ban-table")
        yield Static("", id="detail", markup=False)
        yield from self.filter_and_footer("filter: text in the address, source, operator or reason")

    def on_mount(self) -> None:
        self.table.focus()
        self._update_titles()
        self._poller.now()

    # -- polling ------------------------------------------------------------------------------

    async def _ask(self) -> dict[str, Any]:
        return await engine(self).link.request("bans.list")

    def _answer(self, answer: dict[str, Any]) -> None:
        self.show(answer)

    # -- showing what came back ---------------------------------------------------------------

    def show(self, listing: dict[str, Any]) -> None:
        """Show a ``bans.list`` answer: proposed bans first, then the bans in the engine's order
        (soonest to end first)."""
        self.listing = listing
        proposed = listing.get("proposed", [])
        bans = [*(proposed if isinstance(proposed, list) else []), *(listing.get("bans") or [])]
        self._bans = {ban_key(ban): ban for ban in bans}
        self._order = list(self._bans)
        self._show_enforcement(listing)
        self._show_rows()

    def _show_enforcement(self, listing: dict[str, Any]) -> None:
        backend = clean(listing.get("backend"), limit=20) or "?"
        enforced = bool(listing.get("enforced"))
        parts: list[Content | str | tuple[str, str]] = [
            ("Bans", "bold"),
            f" │ backend {backend}, ",
            ("enforced", "bold") if enforced else ("NOT enforced", "bold red"),
        ]
        refused = int(listing.get("refused") or 0)
        if refused:
            parts.append(f" │ {refused} policy bans refused by the allow-list")
        reapplied = int(listing.get("reapplied") or 0)
        if reapplied:
            parts.append(f" │ reapplied {times(reapplied)} after the firewall lost them")
        self.query_one("#title", Static).update(Content.assemble(*parts))
        problem = clean(listing.get("problem"), limit=300) or "the backend does not enforce bans"
        line = self.query_one("#enforcement", Static)
        line.update(Content(f"✕ {problem}"))
        line.set_class(not enforced, "-shown")

    def _show_rows(self) -> None:
        now = self.clock()
        terms = tuple(self.filter.casefold().split())
        shown = [k for k in self._order if not terms or matches(self._bans[k], terms)]
        rows: dict[str, Cells] = {k: ban_cells(self._bans[k], now) for k in shown}
        self.table.show(rows, shown)
        self._update_titles()
        self._cursor_moved()

    def _update_titles(self) -> None:
        shown = len(self.table.shown_keys)
        proposed = sum(1 for ban in self._bans.values() if is_proposed(ban))
        active = len(self._bans) - proposed
        parts: list[Content | str | tuple[str, str]] = [("Bans", "bold")]
        parts.append(f" {active} active")
        if proposed:
            parts += [" │ ", (f"{proposed} proposed", PROPOSED_STYLE), ": y bans, n rejects"]
        if self.filter:
            parts += [
                f" │ {shown} shown, filter: ",
                (clean(self.filter, limit=40), "bold"),
            ]
        self.query_one("#bans-box").border_title = Content.assemble(*parts)

    def _under_cursor(self) -> dict[str, Any] | None:
        key = self.table.key_under_cursor()
        return self._bans.get(key) if key is not None else None

    @on(DataTable.RowHighlighted, "#ban-table")
    def _cursor_moved(self) -> None:
        ban = self._under_cursor()
        detail = self.query_one("#detail", Static)
        if ban is not None:
            detail.update(describe(ban))
        elif self.listing is not None:
            detail.update(Content(EMPTY if not self._bans else "No ban matches the filter."))
        # The keys follow the kind of row under the cursor; the footer is redrawn only when
        # that changes, not at every row.
        kind = "" if ban is None else "proposed" if is_proposed(ban) else "ban"
        if kind != self._kind_shown:
            self._kind_shown = kind
            self.refresh_bindings()

    # -- unban, confirm, reject ---------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("confirm", "reject") and not any(map(is_proposed, self._bans.values())):
            return False  # nothing proposed: the keys stay out of the footer
        if action in NEEDS:
            # None shows the key greyed out: not the operator's to use, or not for this row.
            wanted = "ban" if action == "unban" else "proposed"
            return True if engine(self).may(NEEDS[action]) and self._kind_shown == wanted else None
        return True

    def action_unban(self) -> None:
        ban = self._under_cursor()
        if ban is None or is_proposed(ban):
            self.app.notify("No ban under the cursor", severity="warning")
            return
        address = str(ban["address"])

        async def call() -> None:
            await engine(self).link.request("bans.unban", {"address": address})
            self.app.notify(f"Ban of {clean(address)} lifted", markup=False)
            if self.is_attached:
                self._ask_again()

        def send(confirmed: bool | None) -> None:
            if confirmed:
                self.app.run_worker(
                    call(), name=f"Unban {clean(address)}", group="actions", exit_on_error=False
                )

        left = time_left(ban.get("expires"), self.clock())
        body = Content.assemble(
            describe(ban),
            f"\n\n{left} left. Traffic from {clean(address)} is let through again at once.",
        )
        self.app.push_screen(
            ConfirmScreen(f"Lift the ban of {clean(address)}?", body, confirm="Unban"), send
        )

    def action_confirm(self) -> None:
        if (proposal := self._proposal()) is None:
            return

        async def call() -> None:
            await send_ban(self.app, "bans.confirm", {"id": proposal["id"]})
            if self.is_attached:
                self._ask_again()

        self.app.run_worker(
            call(),
            name=f"Confirm the ban of {clean(proposal['address'])}",
            group="actions",
            exit_on_error=False,
        )

    def action_reject(self) -> None:
        if (proposal := self._proposal()) is None:
            return

        async def call() -> None:
            await engine(self).link.request("bans.reject", {"id": proposal["id"]})
            self.app.notify(
                f"Proposed ban of {clean(proposal['address'])} rejected: nothing was banned",
                markup=False,
            )
            if self.is_attached:
                self._ask_again()

        self.app.run_worker(
            call(),
            name=f"Reject the ban of {clean(proposal['address'])}",
            group="actions",
            exit_on_error=False,
        )

    def _proposal(self) -> dict[str, Any] | None:
        ban = self._under_cursor()
        if ban is None or not is_proposed(ban):
            self.app.notify("No proposed ban under the cursor", severity="warning")
            return None
        return ban

    # -- filter -------------------------------------------------------------------------------

    def _filter_changed(self) -> None:
        self._show_rows()

    def _focus_view(self) -> None:
        self.table.focus()
