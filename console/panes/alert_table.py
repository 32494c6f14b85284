"""The alerts table: kept in step with a set of rows by diff, sorted by one column, and holding
the cursor on the same alert while rows arrive, change and go.

``DataTable.remove_row`` re-indexes every row on each call, ``DataTable.sort`` cannot see row
keys, and ``add_row`` has every new cell measured for automatic column widths this table does
not use. Under an alert storm (hundreds of rows in and out per refresh, 5000 rows kept) that
costs more CPU than the whole console may use, so removal and ordering are done here once per
update with the same bookkeeping those methods do, and the measuring is skipped; rows are
still added with ``add_row`` and changed with ``update_cell``. A column is hidden by giving it
width 0 (cheap on resize: no row is touched), and such a cell is drawn as nothing at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual._two_way_dict import TwoWayDict
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from console.panes.alert_rows import COLUMN_INDEX, COLUMNS, GAP, AlertRow

# Starts the row of a selected alert (as in Midnight Commander, where * selects too).
MARK = "*"

ADDRESS_COLUMNS = (COLUMN_INDEX["attacker"], COLUMN_INDEX["target"])

TITLE_MIN = 10
# The title comes first: the SID column is shown only when the title keeps this much room
# beside it (from about 120 terminal columns with IPv4 addresses; never at 80).
TITLE_BESIDE_SID = 40
LABEL_ROOM = len(GAP) + 1  # a column is at least its label, the gap and the sort arrow
# Addresses narrower than this many terminal columns are shown in full on narrow screens;
# wider terminals show whole IPv6 addresses.
ADDRESS_NARROW, ADDRESS_WIDE, WIDE_SCREEN = 15 + len(GAP), 39 + len(GAP), 120


def set_column_widths(table: DataTable[Text], widths: Mapping[str, int]) -> None:
    """Give columns (by key) these widths, and have the table lay out again if any changed."""
    resized = False
    for key, width in widths.items():
        column = table.columns[ColumnKey(key)]
        if column.width != width:
            column.width = width
            resized = True
    if resized:
        table._require_update_dimensions = True
        table._update_count += 1
        table.refresh()


class AlertTable(DataTable[Text]):
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
        super().__init__(id=id, cursor_type="row", show_row_labels=False, cell_padding=0)
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
            self._update_count += 1
            self.refresh()

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
            # Every column has a set width and every row one line: nothing to measure.
            self._new_rows.clear()
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
        set_column_widths(self, widths)

    def _is_shown(self, key: str) -> bool:
        return self.columns[ColumnKey(key)].width > 0

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        # Rich draws a cell 0 wide as one empty segment without a style, which Textual's
        # NO_COLOR filter cannot take; every row here is one line high.
        if not width:
            return [[]]
        lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        if column_index or row_index < 0 or not self.marked:
            return lines
        key = self._row_locations.get_key(row_index)
        if key is None or int(str(key.value)) not in self.marked:
            return lines
        # A selected row's first cell starts with MARK instead of the gap: seen without colour.
        first, *rest = lines[0]
        if not first.text.startswith(GAP):
            return lines
        return [[Segment(MARK + first.text[len(GAP) :], first.style), *rest], *lines[1:]]

    def _label_columns(self) -> None:
        arrow = "▼" if self.descending else "▲"
        for column in COLUMNS:
            label = GAP + column.label + (arrow if column.key == self.sort_column else "")
            self.columns[ColumnKey(column.key)].label = Text(label, style="bold", end="")
        self._update_count += 1
        self.refresh()

    # -- row bookkeeping ----------------------------------------------------------------------

    def _count_addresses(self, row: AlertRow, step: int) -> None:
        for index, widths in self._address_widths.items():
            width = row.cells[index].cell_len
            widths[width] += step
            if not widths[width]:
                del widths[width]

    def _drop(self, ids: Iterable[int]) -> None:
        """Remove rows; the others keep their order and close up."""
        keys = set()
        for alert_id in ids:
            key = self._keys.pop(alert_id)
            self._count_addresses(self._shown.pop(alert_id), -1)
            del self.rows[key]
            del self._data[key]
            keys.add(key)
        self._new_rows -= keys
        if self._updated_cells:
            self._updated_cells = {c for c in self._updated_cells if c.row_key not in keys}
        locations = self._row_locations
        kept = sorted((locations.get(k), k) for k in locations if k not in keys)
        self._row_locations = TwoWayDict({k: n for n, (_, k) in enumerate(kept)})
        self._require_update_dimensions = True
        self._update_count += 1
        self.cursor_coordinate = self.cursor_coordinate

    def _place(self) -> None:
        """Give every row its position in the current sort order."""
        index = COLUMN_INDEX[self.sort_column]
        order = sorted(
            self._shown.values(),
            key=lambda r: (r.sort_keys[index], r.last_seen, r.id),
            reverse=self.descending,
        )
        self._row_locations = TwoWayDict({self._keys[r.id]: i for i, r in enumerate(order)})
        self._update_count += 1
        self.cursor_coordinate = self.cursor_coordinate
        self.refresh()

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
