"""The alerts table: kept in step with a set of rows by diff, sorted by one column, and holding
the cursor on the same alert while rows arrive, change and go. Removal and ordering are done
once per update (see row_table.py for why).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from console.panes.alert_rows import COLUMN_INDEX, COLUMNS, AlertRow
from console.widgets.row_table import GAP, RowTable

ADDRESS_COLUMNS = (COLUMN_INDEX["attacker"], COLUMN_INDEX["target"])

TITLE_MIN = 10
# The title comes first: the SID column is shown only when the title keeps this much room
# beside it (from about 120 terminal columns with IPv4 addresses; never at 80).
TITLE_BESIDE_SID = 40
LABEL_ROOM = len(GAP) + 1  # a column is at least its label, the gap and the sort arrow
# Addresses narrower than this many terminal columns are shown in full on narrow screens;
# wider terminals show whole IPv6 addresses.
ADDRESS_NARROW, ADDRESS_WIDE, WIDE_SCREEN = 15 + len(GAP), 39 + len(GAP), 120


class AlertTable(RowTable):
    """A DataTable of :class:`AlertRow`, keyed by alert id."""

    BINDINGS = [
        Binding(
            "enter",
            "select_cursor",
            "Details",
            id="alerts.details",
            show=False,
            tooltip="Open the alert under the cursor: evidence and history",
        ),
        Binding(
            "home,g",
            "scroll_top",
            "First",
            id="alerts.first",
            show=False,
            tooltip="Move to the first row",
        ),
        Binding(
            "end,G",
            "scroll_bottom",
            "Last",
            id="alerts.last",
            show=False,
            tooltip="Move to the last row",
        ),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: dict[int, AlertRow] = {}
        self._keys: dict[int, RowKey] = {}
        # How many shown rows have each address width, per address column.
        self._address_widths = {i: Counter[int]() for i in ADDRESS_COLUMNS}
        self.sort_column = "time"
        self.descending = True
        # Alert ids the operator selected for an action on several at once (drawn with MARK).
        self.marked: set[int] = set()

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(column.label, key=column.key, width=column.width or len(column.label))
        self._label_columns()

    # -- what the pane asks for ---------------------------------------------------------------

    @property
    def shown(self) -> Mapping[int, AlertRow]:
        return self._shown

    def row_under_cursor(self) -> AlertRow | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return self._shown.get(int(str(key.value)))

    def set_marked(self, ids: Iterable[int]) -> None:
        """Select exactly these alerts (their rows start with MARK)."""
        marked = set(ids)
        if marked != self.marked:
            self.marked = marked
            self.redraw()

    def show(self, rows: Mapping[int, AlertRow]) -> None:
        """Make the table show exactly ``rows``: remove, update and add only what differs."""
        shown = self._shown
        gone = [i for i in shown if i not in rows]
        new = [i for i in rows if i not in shown]
        changed = [i for i, row in rows.items() if i in shown and shown[i] is not row]
        if not (gone or new or changed):
            return
        anchor = self._cursor_anchor()
        sort_index = COLUMN_INDEX[self.sort_column]
        reorder = bool(new)
        with self.app.batch_update():
            if gone:
                self._drop(gone)
            for alert_id in changed:
                before, after = shown[alert_id], rows[alert_id]
                key = self._keys[alert_id]
                for column, old, cell in zip(COLUMNS, before.cells, after.cells, strict=True):
                    if old is not cell and (old.plain != cell.plain or old.style != cell.style):
                        self.update_cell(key, column.key, cell)
                reorder = reorder or before.sort_keys[sort_index] != after.sort_keys[sort_index]
                shown[alert_id] = after
            for alert_id in new:
                row = rows[alert_id]
                self._keys[alert_id] = self.add_row(*row.cells, key=str(alert_id))
                shown[alert_id] = row
                self._count_addresses(row, 1)
            self.skip_measuring()
            if reorder:
                self._place()
            if new or gone:
                # An alert's addresses never change, so only new and gone rows move widths.
                self.fit_columns()
            self._restore_cursor(anchor)

    def sort_by(self, column: str, *, descending: bool | None = None) -> None:
        """Order rows by ``column``; without ``descending``, that column's natural direction."""
        if descending is None:
            descending = COLUMNS[COLUMN_INDEX[column]].descending_first
        self.sort_column, self.descending = column, descending
        self._label_columns()
        self._place()
        # A new order puts other rows first: start reading it from the top.
        if self.row_count:
            self.move_cursor(row=0)

    def next_sort_column(self) -> None:
        """Sort by the next column on screen (a hidden SID column is skipped)."""
        keys = [c.key for c in COLUMNS if c.key == self.sort_column or self._is_shown(c.key)]
        self.sort_by(keys[(keys.index(self.sort_column) + 1) % len(keys)])

    def reverse_sort(self) -> None:
        self.sort_by(self.sort_column, descending=not self.descending)

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        if column == self.sort_column:
            self.reverse_sort()
        else:
            self.sort_by(column)

    def on_resize(self) -> None:
        self.fit_columns()

    # -- layout -------------------------------------------------------------------------------

    def fit_columns(self) -> None:
        """Fixed columns keep their width, addresses take what they need, the title the rest;
        the SID column shows only when the title still has room beside it (else width 0)."""
        available = self.scrollable_content_region.width
        if not available or not self.columns:
            return
        cap = ADDRESS_WIDE if available >= WIDE_SCREEN else ADDRESS_NARROW
        widths = {}
        for index, column in enumerate(COLUMNS):
            floor = len(column.label) + LABEL_ROOM
            if column.width is not None:
                widths[column.key] = max(column.width, floor)
            elif index in self._address_widths:
                longest = max(self._address_widths[index], default=0)
                widths[column.key] = max(floor, min(cap, longest))
        used = sum(widths.values()) + 2 * self.cell_padding * len(COLUMNS)
        if available - used < TITLE_BESIDE_SID:
            used -= widths["sid"]
            widths["sid"] = 0
        widths["title"] = max(TITLE_MIN, available - used)
        self.set_column_widths(widths)

    def _is_shown(self, key: str) -> bool:
        return self.columns[ColumnKey(key)].width > 0

    def has_marks(self) -> bool:
        return bool(self.marked)

    def row_marked(self, key: str) -> bool:
        return int(key) in self.marked

    def _label_columns(self) -> None:
        arrow = "▼" if self.descending else "▲"
        labels = {
            column.key: Text(
                GAP + column.label + (arrow if column.key == self.sort_column else ""),
                style="bold",
                end="",
            )
            for column in COLUMNS
        }
        self.set_labels(labels)

    # -- row bookkeeping ----------------------------------------------------------------------

    def _count_addresses(self, row: AlertRow, step: int) -> None:
        for index, widths in self._address_widths.items():
            width = row.cells[index].cell_len
            widths[width] += step
            if not widths[width]:
                del widths[width]

    def _drop(self, ids: Iterable[int]) -> None:
        """Remove rows; the others keep their order and close up."""
        keys = []
        for alert_id in ids:
            keys.append(self._keys.pop(alert_id))
            self._count_addresses(self._shown.pop(alert_id), -1)
        self.drop_rows(keys)

    def _place(self) -> None:
        """Give every row its position in the current sort order."""
        index = COLUMN_INDEX[self.sort_column]
        order = sorted(
            self._shown.values(),
            key=lambda r: (r.sort_keys[index], r.last_seen, r.id),
            reverse=self.descending,
        )
        self.set_order(self._keys[r.id] for r in order)
        self.cursor_coordinate = self.cursor_coordinate

    def _cursor_anchor(self) -> tuple[int, int, int] | None:
        """(alert id, row index, row's distance from the top of the view) under the cursor."""
        row = self.row_under_cursor()
        if row is None:
            return None
        return row.id, self.cursor_row, self.cursor_row - round(self.scroll_y)

    def _restore_cursor(
        self, anchor: tuple[int, int, int] | None, *, keep_screen_row: bool = True
    ) -> None:
        """Put the cursor back on the alert it was on.

        Scrolled into the list, the view moves with that alert so the row under the cursor
        stays where the operator's eyes are; at the top, the view stays at the top so that new
        alerts come into sight above it.
        """
        if anchor is None or not self.row_count:
            return
        alert_id, old_index, screen_row = anchor
        key = self._keys.get(alert_id)
        index = self.get_row_index(key) if key is not None else None
        if index is None:
            self.move_cursor(row=min(old_index, self.row_count - 1))
            return
        if keep_screen_row and self.scroll_y > 0:
            self.move_cursor(row=index, scroll=False)
            self.call_after_refresh(self.scroll_to, y=max(0, index - screen_row), animate=False)
        else:
            self.move_cursor(row=index)
