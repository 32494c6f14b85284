"""The tables of rows keyed by a string in an order given from outside (the Traffic pane's flows
or talkers and packets; devices, bans, rules, silences, jails), kept in step with each poll by
diff, the cursor staying on its row. The engine has already sorted: rows are put in its order
directly (see row_table.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets.data_table import RowKey

from console.widgets.row_table import GAP, Column, RowTable

Cells = tuple[Text, ...]

# Addresses (with port) up to this many columns are shown whole on narrow screens; wider
# terminals show whole IPv6 endpoints.
SIZED_NARROW, SIZED_WIDE, WIDE_SCREEN = 21 + len(GAP), 47 + len(GAP), 120
# Whole addresses come before the rest column (the selected row's details are also shown in
# full elsewhere), which gets what is left: on a narrow screen that may be only a few columns,
# but nothing scrolls sideways.
REST_MIN = 1


class TrafficTable(RowTable):
    """A DataTable of rows keyed by a string, in an order given from outside."""

    def __init__(self, columns: Sequence[Column], *, rest: str, id: str | None = None) -> None:
        super().__init__(id=id)
        self._columns_spec = tuple(columns)
        self._rest = rest
        self._shown: dict[str, Cells] = {}
        self._order: list[str] = []
        self.sorted_by = ""
        self.descending = True

    def on_mount(self) -> None:
        self._add_columns()

    # -- what the pane asks for ---------------------------------------------------------------

    @property
    def shown_keys(self) -> list[str]:
        """Row keys in the order the table shows them."""
        return list(self._order)

    def key_under_cursor(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return str(key.value)

    def use_columns(self, columns: Sequence[Column], *, rest: str) -> None:
        """Switch to another set of columns; the rows go with the old ones."""
        self._columns_spec, self._rest = tuple(columns), rest
        self._shown, self._order = {}, []
        self.clear(columns=True)
        self._add_columns()

    def label_sort(self, column: str, *, descending: bool = True) -> None:
        """Mark ``column`` as the one the rows are sorted by."""
        self.sorted_by, self.descending = column, descending
        self._label_columns()

    def show(
        self, rows: Mapping[str, Cells], order: Sequence[str], *, follow: bool = False
    ) -> None:
        """Make the table show exactly ``rows`` in ``order``: remove, update and add only what
        differs. The cursor stays on the row it was on; with ``follow``, a cursor on the last
        row moves to the new last row (a stream's newest entry)."""
        shown = self._shown
        gone = [k for k in shown if k not in rows]
        new = [k for k in order if k not in shown]
        changed = [k for k in order if k in shown and shown[k] != rows[k]]
        order = list(order)
        if not (gone or new or changed) and order == self._order:
            return
        at_end = follow and (not self.row_count or self.cursor_row >= self.row_count - 1)
        anchor = self.key_under_cursor()
        with self.app.batch_update():
            for key in gone:
                self.remove_row(key)
                del shown[key]
            for key in changed:
                for column, old, cell in zip(
                    self._columns_spec, shown[key], rows[key], strict=True
                ):
                    if old != cell:
                        self.update_cell(key, column.key, cell)
                shown[key] = rows[key]
            for key in new:
                self.add_row(*rows[key], key=key)
                shown[key] = rows[key]
            self.skip_measuring()
            if order != self._order:
                self._order = order
                self.set_order(RowKey(k) for k in order)
            if new or gone:
                self.fit_columns()
            if at_end and self.row_count:
                self.move_cursor(row=self.row_count - 1)
            elif anchor is not None and anchor in shown:
                self.move_cursor(row=self._order.index(anchor))

    def on_resize(self) -> None:
        self.fit_columns()

    # -- layout -------------------------------------------------------------------------------

    def _add_columns(self) -> None:
        for column in self._columns_spec:
            self.add_column(column.label, key=column.key, width=column.width or len(column.label))
        self._label_columns()
        self.fit_columns()

    def _label_columns(self) -> None:
        labels = {}
        for column in self._columns_spec:
            arrow = ("▼" if self.descending else "▲") if column.key == self.sorted_by else ""
            label = Text(GAP + column.label + arrow, style="bold", end="")
            if column.right:
                label.justify = "right"
            labels[column.key] = label
        self.set_labels(labels)

    def fit_columns(self) -> None:
        """Fixed columns keep their width, sized ones take what their cells need (up to a cap),
        the rest column whatever is left."""
        available = self.scrollable_content_region.width
        if not available or not self.columns:
            return
        cap = SIZED_WIDE if available >= WIDE_SCREEN else SIZED_NARROW
        widths: dict[str, int] = {}
        for index, column in enumerate(self._columns_spec):
            floor = len(GAP) + len(column.label) + 1
            if column.key == self._rest:
                continue
            if column.width is not None:
                widths[column.key] = max(column.width, floor)
            else:
                longest = max((cells[index].cell_len for cells in self._shown.values()), default=0)
                widths[column.key] = max(floor, min(cap, longest))
        widths[self._rest] = max(REST_MIN, available - sum(widths.values()))
        self.set_column_widths(widths)


class FlowTable(TrafficTable):
    """Flows or talkers; Enter goes down to the packets of the one under the cursor."""

    BINDINGS = [
        Binding(
            "enter",
            "select_cursor",
            "Packets",
            id="traffic.packets",
            show=False,
            tooltip="In the flows: go down to the recent packets of the one under the cursor",
        ),
    ]


class PacketTable(TrafficTable):
    """Recent packets of one flow or host; Enter opens one packet decoded in full."""

    BINDINGS = [
        Binding(
            "enter",
            "select_cursor",
            "Decode",
            id="traffic.packet",
            tooltip="In the packets: open the one under the cursor (its layers and a hex dump)",
        ),
        Binding(
            "escape",
            "back",
            "Back",
            id="traffic.back",
            show=False,
            tooltip="In the packets: back up to the flows",
        ),
    ]

    def action_back(self) -> None:
        self.screen.query_one(FlowTable).focus()
