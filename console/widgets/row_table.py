"""The console's tables: a ``DataTable`` of one-line rows kept in step with what the engine
says by diff, ordered from outside, with column widths set from outside. This module is the
only one that touches ``DataTable``'s private state; test_console_structure.py fails loudly
when a Textual upgrade changes what it relies on.

Why private state: ``DataTable.remove_row`` re-indexes every row on each call,
``DataTable.sort`` cannot see row keys, ``add_row`` has every new cell measured for automatic
column widths these tables do not use, and a column's width or label cannot be changed in
place. Under an alert storm (hundreds of rows in and out per refresh, 5000 rows kept) that
costs more CPU than the whole console may use, so removal and ordering are done here once per
update with the same bookkeeping those methods do, and the measuring is skipped; rows are
still added with ``add_row`` and changed with ``update_cell``. A column is hidden by giving it
width 0 (cheap on resize: no row is touched), and such a cell is drawn as nothing at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

# DataTable pads both sides of every cell, two spaces between columns; one is enough and at 80
# columns the title needs the rest, so the tables have no padding and each cell starts with this.
GAP = " "
# Starts the row of a selected row instead of the gap (as in Midnight Commander, where * selects
# too): seen without colour.
MARK = "*"


@dataclass(frozen=True)
class Column:
    """A table column: ``width`` is fixed, or ``None`` for one sized to its cells (or given the
    width that is left); ``right`` aligns its label right; a table sorted by it starts
    descending when ``descending_first``."""

    key: str
    label: str
    width: int | None
    right: bool = False
    descending_first: bool = False


class RowTable(DataTable[Text]):
    """One-line rows without row labels or cell padding, the cursor on whole rows. A subclass
    that selects rows says which with :meth:`has_marks` and :meth:`row_marked`."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", show_row_labels=False, cell_padding=0)

    # -- columns ------------------------------------------------------------------------------

    def set_column_widths(self, widths: Mapping[str, int]) -> None:
        """Give columns (by key) these widths, and lay out again if any changed."""
        resized = False
        for key, width in widths.items():
            column = self.columns[ColumnKey(key)]
            if column.width != width:
                column.width = width
                resized = True
        if resized:
            self._require_update_dimensions = True
            self._update_count += 1
            self.refresh()

    def set_labels(self, labels: Mapping[str, Text]) -> None:
        """Give columns (by key) these labels, and draw them."""
        for key, label in labels.items():
            self.columns[ColumnKey(key)].label = label
        self.redraw()

    # -- rows ---------------------------------------------------------------------------------

    def redraw(self) -> None:
        """Draw every row again (what a row shows changed without its cells changing)."""
        self._update_count += 1
        self.refresh()

    def skip_measuring(self) -> None:
        """The rows just added need no measuring: every column has a set width and every row
        is one line."""
        self._new_rows.clear()

    def set_order(self, keys: Iterable[RowKey]) -> None:
        """Show the rows in this order (every row's key, once)."""
        self._row_locations = TwoWayDict({key: n for n, key in enumerate(keys)})
        self.redraw()

    def drop_rows(self, rows: Iterable[RowKey]) -> None:
        """Remove these rows; the others keep their order and close up."""
        keys = set(rows)
        for key in keys:
            del self.rows[key]
            del self._data[key]
        self._new_rows -= keys
        if self._updated_cells:
            self._updated_cells = {c for c in self._updated_cells if c.row_key not in keys}
        locations = self._row_locations
        kept = sorted((locations.get(k), k) for k in locations if k not in keys)
        self._row_locations = TwoWayDict({k: n for n, (_, k) in enumerate(kept)})
        self._require_update_dimensions = True
        self._update_count += 1
        self.cursor_coordinate = self.cursor_coordinate

    # -- selected rows ------------------------------------------------------------------------

    def has_marks(self) -> bool:
        return False

    def row_marked(self, key: str) -> bool:
        """Whether the row of ``key`` is selected (drawn starting with MARK)."""
        return False

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
        if column_index or row_index < 0 or not self.has_marks():
            return lines
        key = self._row_locations.get_key(row_index)
        if key is None or not self.row_marked(str(key.value)):
            return lines
        first, *rest = lines[0]
        if not first.text.startswith(GAP):
            return lines
        return [[Segment(MARK + first.text[len(GAP) :], first.style), *rest], *lines[1:]]
