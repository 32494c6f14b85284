"""The Silences view: the silences in force, what each matches, how long it has left, how many
alerts it hides now and who made it; extend one (e) or end it (u), which opens again the alerts
it hid.

Opened with S in the Alerts pane or from the command palette. While it is open,
``silences.list`` is polled every two seconds, one poll at a time, and the table is updated by
diff; the time left is worked out from each silence's end at every poll, so it counts down. The
filter is applied here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from console.engine_access import engine
from console.panes.alert_rows import short_count, table_cell
from console.panes.traffic_table import Cells, TrafficTable
from console.screens.alert_detail import when
from console.screens.ban_rows import time_left
from console.screens.engine_view import EngineView, view_bindings
from console.screens.prompts import ConfirmScreen, DurationScreen
from console.untrusted import clean
from console.widgets.row_table import Column

SILENCE_COLUMNS = (
    Column("id", "ID", 5, right=True),
    Column("left", "LEFT", 8),
    Column("hidden", "HIDDEN", 6, right=True),
    Column("matches", "MATCHES", None),
    Column("by", "BY", None),
    Column("comment", "COMMENT", None),
)

# The engine command each action needs; without it the key is shown greyed out.
NEEDS = {"extend": "silences.extend", "end": "alerts.unsilence"}

EMPTY = "No silences. s in the Alerts pane silences alerts like the one under the cursor."

FIELDS = (("rule", "rule"), ("src", "source"), ("dst", "destination"), ("device", "device"))


def matches_text(silence: dict[str, Any]) -> str:
    """What a silence matches: ``rule 9100001 · source 10.0.0.5``."""
    return " · ".join(
        f"{label} {clean(silence.get(key), limit=64)}" for key, label in FIELDS if silence.get(key)
    )


def silence_cells(silence: dict[str, Any], now: float) -> tuple[Text, ...]:
    hidden = int(silence.get("hidden") or 0)
    return (
        table_cell(str(silence.get("id")), justify="right"),
        table_cell(time_left(silence.get("expires"), now)),
        table_cell(short_count(hidden), "" if hidden else "dim", justify="right"),
        table_cell(matches_text(silence)),
        table_cell(clean(silence.get("created_by"), limit=32)),
        table_cell(clean(silence.get("comment"), limit=200)),
    )


def describe(silence: dict[str, Any]) -> Content:
    """Two lines on the silence under the cursor: who made it when, until when, how many
    alerts it hides; what it matches and its comment in full."""
    by = clean(silence.get("created_by"), limit=32) or "-"
    hidden = int(silence.get("hidden") or 0)
    first = (
        f"silence #{silence.get('id')} by {by} {when(silence.get('created'))}"
        f" → {when(silence.get('expires'))} · hides {hidden} alert{'' if hidden == 1 else 's'}"
    )
    comment = clean(silence.get("comment"), limit=300)
    return Content.assemble(
        first,
        "\n",
        ("matches ", "bold"),
        matches_text(silence) or "-",
        *((" · ", ("comment ", "bold"), comment) if comment else ()),
    )


def silence_matches(silence: dict[str, Any], terms: tuple[str, ...]) -> bool:
    """Whether every term (casefolded) is in the silence's matches, maker or comment."""
    text = " ".join(
        str(silence.get(k) or "")
        for k in ("id", "rule", "src", "dst", "device", "created_by", "comment")
    ).casefold()
    return all(term in text for term in terms)


class SilencesScreen(EngineView):
    what = "silences"
    TITLE = "Silences"
    help_text = (
        "The silences in force, soonest made first: what each matches (rule, source, "
        "destination, device), how long it has left, how many alerts it hides now, who made it "
        "and why. Matching alerts are still recorded while a silence lasts, as silenced, and "
        "never notify. e lets the silence under the cursor run longer (asks by how much); u "
        "ends it now, and the alerts it hid open again. A silence ends by itself when its time "
        "is up. The filter looks for text in what a silence matches, its maker and comment."
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "e",
            "extend",
            "Extend",
            id="silences.extend",
            tooltip="Let the silence under the cursor run longer (asks by how much)",
        ),
        Binding(
            "u",
            "end",
            "End",
            id="silences.end",
            tooltip="End the silence under the cursor now; the alerts it hid open again"
            " (asks first)",
        ),
        *view_bindings(
            "silences", "Silences", "Filter by text in what a silence matches, its maker or comment"
        ),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.listing: list[dict[str, Any]] | None = None
        # The clock the time left is counted from (a test stops it).
        self.clock: Callable[[], float] = time.time
        self._silences: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []

    @property
    def table(self) -> TrafficTable:
        return self.query_one("#silence-table", TrafficTable)

    def compose(self) -> ComposeResult:
        yield Static("Silences", id="title", markup=False)
        yield Static("", id="problem", classes="alarm", markup=False)
        with Vertical(id="silences-box", classes="view-box"):
            yield TrafficTable(SILENCE_COLUMNS, rest="comment", id="silence-table")
        yield Static("", id="detail", markup=False)
        yield from self.filter_and_footer("filter: text in the matches, maker or comment")

    def on_mount(self) -> None:
        self.table.focus()
        self._update_titles()
        self._poller.now()

    # -- polling ------------------------------------------------------------------------------

    async def _ask(self) -> list[dict[str, Any]]:
        return await engine(self).link.request("silences.list")

    def _answer(self, answer: list[dict[str, Any]]) -> None:
        self.show(answer)

    # -- showing what came back ---------------------------------------------------------------

    def show(self, listing: list[dict[str, Any]]) -> None:
        """Show a ``silences.list`` answer in the engine's order (soonest made first)."""
        self.listing = listing if isinstance(listing, list) else []
        self._silences = {
            str(s["id"]): s for s in self.listing if isinstance(s, dict) and "id" in s
        }
        self._order = list(self._silences)
        self._show_rows()

    def _show_rows(self) -> None:
        now = self.clock()
        terms = tuple(self.filter.casefold().split())
        shown = [k for k in self._order if not terms or silence_matches(self._silences[k], terms)]
        rows: dict[str, Cells] = {k: silence_cells(self._silences[k], now) for k in shown}
        self.table.show(rows, shown)
        self._update_titles()
        self._cursor_moved()

    def _update_titles(self) -> None:
        hidden = sum(int(s.get("hidden") or 0) for s in self._silences.values())
        parts: list[Content | str | tuple[str, str]] = [
            ("Silences", "bold"),
            f" {len(self._silences)} in force, hiding {hidden} alert{'' if hidden == 1 else 's'}",
        ]
        if self.filter:
            parts += [
                f" │ {len(self.table.shown_keys)} shown, filter: ",
                (clean(self.filter, limit=40), "bold"),
            ]
        self.query_one("#silences-box").border_title = Content.assemble(*parts)

    def _under_cursor(self) -> dict[str, Any] | None:
        key = self.table.key_under_cursor()
        return self._silences.get(key) if key is not None else None

    @on(DataTable.RowHighlighted, "#silence-table")
    def _cursor_moved(self) -> None:
        silence = self._under_cursor()
        detail = self.query_one("#detail", Static)
        if silence is not None:
            detail.update(describe(silence))
        elif self.listing is not None:
            detail.update(Content(EMPTY if not self._silences else "No silence matches."))

    # -- extend, end --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # None shows the key greyed out: not the operator's to use, or no silence here.
        if action in NEEDS and (not engine(self).may(NEEDS[action]) or not self._silences):
            return None
        return True

    def _chosen(self) -> dict[str, Any] | None:
        silence = self._under_cursor()
        if silence is None:
            self.app.notify("No silence under the cursor", severity="warning")
        return silence

    def action_extend(self) -> None:
        if (silence := self._chosen()) is None:
            return
        silence_id = int(silence["id"])

        async def call(duration: str) -> None:
            answer = await engine(self).link.request(
                "silences.extend", {"id": silence_id, "duration": duration}
            )
            self.app.notify(
                f"Silence #{silence_id} now ends {when(answer.get('expires'))}", markup=False
            )
            if self.is_attached:
                self._ask_again()

        def send(duration: str | None) -> None:
            if duration:
                self.app.run_worker(
                    call(duration),
                    name=f"Extend silence {silence_id}",
                    group="actions",
                    exit_on_error=False,
                )

        left = time_left(silence.get("expires"), self.clock())
        self.app.push_screen(
            DurationScreen(
                f"Extend silence #{silence_id}",
                Content.assemble(describe(silence), f"\n\n{left} left now."),
                label="Longer by (e.g. 30m, 2h, 1d)",
            ),
            send,
        )

    def action_end(self) -> None:
        if (silence := self._chosen()) is None:
            return
        silence_id = int(silence["id"])
        hidden = int(silence.get("hidden") or 0)

        async def call() -> None:
            answer = await engine(self).link.request("alerts.unsilence", {"id": silence_id})
            self.app.notify(
                f"Silence #{silence_id} ended: {answer.get('reopened', 0)} alerts open again",
                markup=False,
            )
            if self.is_attached:
                self._ask_again()

        def send(confirmed: bool | None) -> None:
            if confirmed:
                self.app.run_worker(
                    call(), name=f"End silence {silence_id}", group="actions", exit_on_error=False
                )

        body = Content.assemble(
            describe(silence),
            f"\n\nThe {hidden} alert{'' if hidden == 1 else 's'} it hides open again, and"
            " matching alerts notify from now on.",
        )
        self.app.push_screen(
            ConfirmScreen(f"End silence #{silence_id}?", body, confirm="End"), send
        )

    # -- filter -------------------------------------------------------------------------------

    def _filter_changed(self) -> None:
        self._show_rows()

    def _focus_view(self) -> None:
        self.table.focus()
