"""How the console is put together: panes, screens and widgets never import the app (they post
messages and reach the engine through console.engine_access), its modules import no circle, and
the table base's use of Textual's private DataTable state still works with the Textual
installed (an upgrade that changes it fails here, not as a slow or garbled table)."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.app import App, ComposeResult
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from console.widgets.row_table import MARK, RowTable
from tests.conftest import ROOT

CONSOLE = ROOT / "console"
# The parts that must not know the app they run in.
APP_FREE = ("panes", "screens", "widgets", "serial")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, at any level (``TYPE_CHECKING`` included), and for
    ``from a import b`` also ``a.b`` (b may be a module)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def console_modules() -> dict[str, Path]:
    return {module_name(path): path for path in CONSOLE.rglob("*.py")}


def test_panes_screens_and_widgets_never_import_the_app() -> None:
    checked = [
        path
        for part in APP_FREE
        for path in (CONSOLE / part).rglob("*.py")
        if path != CONSOLE / "serial" / "app.py"  # the `iotsec serial` app itself
    ]
    assert len(checked) > 30
    offenders = {
        module_name(path): name
        for path in checked
        for name in imported(path)
        if name == "console.app" or name.startswith("console.app.")
    }
    assert not offenders, f"these import the app: {offenders}"


def test_the_console_modules_import_no_circle() -> None:
    modules = console_modules()
    graph = {
        name: {m for m in imported(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    circles = strongly_connected(graph)
    assert not circles, f"import circles: {circles}"


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The components of more than one node (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]


# -- what row_table.py relies on in Textual's DataTable ----------------------------------------


def test_datatable_has_the_private_state_the_table_base_uses() -> None:
    table = DataTable[Text]()
    assert isinstance(table._row_locations, TwoWayDict)
    assert isinstance(table._update_count, int)
    assert isinstance(table._new_rows, set)
    assert isinstance(table._updated_cells, set)
    assert isinstance(table._data, dict)
    assert isinstance(table._require_update_dimensions, bool)
    assert list(inspect.signature(DataTable._render_cell).parameters) == [
        "self",
        "row_index",
        "column_index",
        "base_style",
        "width",
        "cursor",
        "hover",
    ]
    locations = TwoWayDict({RowKey("a"): 0, RowKey("b"): 1})
    assert list(locations) == [RowKey("a"), RowKey("b")]
    assert locations.get(RowKey("b")) == 1
    assert locations.get_key(0) == RowKey("a")
    assert RowKey("a") in locations and RowKey("c") not in locations


class MarkingTable(RowTable):
    marked: set[str] = set()

    def has_marks(self) -> bool:
        return bool(self.marked)

    def row_marked(self, key: str) -> bool:
        return key in self.marked


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield MarkingTable(id="table")

    def on_mount(self) -> None:
        table = self.query_one(MarkingTable)
        table.add_column(" NAME", key="name", width=8)
        table.add_column(" N", key="n", width=4)
        for name, n in (("alpha", 1), ("bravo", 2), ("charlie", 3)):
            table.add_row(Text(f" {name}"), Text(f" {n}"), key=name)
        table.skip_measuring()


def lines(table: RowTable) -> list[str]:
    """The table as drawn: the header, then one line per row."""
    return [
        "".join(s.text for s in table.render_line(y)).rstrip() for y in range(table.row_count + 1)
    ]


def order(table: RowTable) -> list[str]:
    return [
        str(table.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value)
        for row in range(table.row_count)
    ]


async def test_the_table_base_orders_drops_sizes_and_marks_rows() -> None:
    app = TableApp()
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(MarkingTable)
        await pilot.pause()
        assert lines(table) == [" NAME    N", " alpha   1", " bravo   2", " charlie 3"]

        table.set_order([RowKey("charlie"), RowKey("alpha"), RowKey("bravo")])
        await pilot.pause()
        assert order(table) == ["charlie", "alpha", "bravo"]
        assert table.get_row_index("bravo") == 2
        assert lines(table)[1:] == [" charlie 3", " alpha   1", " bravo   2"]

        table.move_cursor(row=2)
        table.drop_rows([RowKey("alpha")])
        await pilot.pause()
        assert table.row_count == 2 and set(table.rows) == {RowKey("charlie"), RowKey("bravo")}
        assert order(table) == ["charlie", "bravo"]
        assert table.cursor_row == 1  # clamped to the rows that are left
        assert lines(table)[1:] == [" charlie 3", " bravo   2"]
        table.update_cell("bravo", "n", Text(" 9"))
        await pilot.pause()
        assert lines(table)[2] == " bravo   9"

        table.set_column_widths({"name": 4})
        table.set_labels({"n": Text(" N▼")})
        await pilot.pause()
        assert table.columns[ColumnKey("name")].width == 4
        assert lines(table) == [" NAM N▼", " cha 3", " bra 9"]

        # A column 0 wide is drawn as nothing at all, not as one unstyled space.
        table.set_column_widths({"name": 0})
        await pilot.pause()
        assert table._render_cell(0, 0, Style(), 0) == [[]]
        assert lines(table) == [" N▼", " 3", " 9"]

        table.set_column_widths({"name": 8})
        table.marked = {"bravo"}
        table.redraw()
        await pilot.pause()
        assert lines(table)[1:] == [" charlie 3", f"{MARK}bravo   9"]
