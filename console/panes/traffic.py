# Over 500 lines: three views (capture, flows, packets) that share one poll and one cursor.
"""The Traffic pane: capture state and rates at the top, flows or top talkers in the middle and
the recent packets of the one under the cursor at the bottom; Enter on a packet decodes it.

While the pane is in view the engine is polled a few times a second (``capture.status``,
``traffic.flows``, ``traffic.packets``), one poll at a time: the next is armed only when the
last has finished. Each poll updates the tables by diff, so the screen changes at the poll's
pace whatever the packet rate. Sorting, the flow limit and the display filter are the
engine's; the filter is checked as it is typed with the same parser the engine uses.

A rule alert's flow can be shown from the Alerts pane: selected in the flows when it is
listed, else its packets are listed below under its 5-tuple until the cursor moves.
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
from textual.validation import ValidationResult, Validator
from textual.widgets import DataTable, Input, Static

from console.engine_access import engine
from console.panes.capture_summary import CaptureSummary, state_line
from console.panes.polled import PolledPane
from console.panes.traffic_rows import (
    FLOW_COLUMNS,
    PACKET_COLUMNS,
    SORT_LABEL,
    SORTS,
    TALKER_COLUMNS,
    file_part,
    flow_cells,
    flow_title,
    human,
    packet_cells,
    talker_cells,
    talker_title,
)
from console.panes.traffic_table import Cells, FlowTable, PacketTable
from console.polling import Poller
from console.screens.capture_form import CaptureScreen
from console.screens.packet_detail import PacketDetailScreen
from console.screens.save_pcap import NothingToSave, SavePcapScreen, save_pcap
from console.untrusted import clean
from engine.capture.filter import FilterError, parse_filter
from engine.control.protocol import ControlError

# Polls per second stay between 2 and 5 whatever ``[console] refresh`` says.
POLL_FASTEST, POLL_SLOWEST = 0.2, 0.5
# After a failed poll (the engine busy or restarting), wait this long before the next.
RETRY_SECONDS = 2.0
FLOW_LIMIT = 200
PACKET_LIMIT = 200

# The engine command each action needs; without it the key is shown greyed out.
NEEDS = {"capture": "capture.start", "save": "traffic.export"}


class DisplayFilter(Validator):
    """A display filter as the engine will parse it; the failure says what is wrong, where."""

    def validate(self, value: str) -> ValidationResult:
        try:
            parse_filter(value)
        except FilterError as exc:
            return self.failure(str(exc))
        return self.success()


class TrafficPane(PolledPane):
    title = "Traffic"
    purpose = (
        "What talks to what on the engine's capture interfaces, right now: packet and byte "
        "rates over the last minute with kernel and queue drops, then flows (initiator first, "
        "protocol tag, MQTT/HTTP/TLS details such as username, password present, host or SNI) "
        "or top talkers by host, sorted by bytes, packets, rate or last seen. Below, the recent "
        "packets of the flow or host under the cursor; Enter on a packet decodes it (layers and "
        "hex). The display filter takes hosts, nets, ports and protocol tags joined with and, or, "
        "not: e.g. mqtt and host 10.0.0.5, port 23, not arp. Operators can start and stop "
        "capture (interfaces and a BPF filter) and save a flow or a host's packets as pcap."
    )

    DEFAULT_CSS = """
    TrafficPane {
        border-top: solid $primary;
        border-title-align: left;
    }
    TrafficPane.-paused {
        border-top: heavy $warning;
    }
    TrafficPane FlowTable {
        height: 1fr;
        min-height: 4;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
    }
    TrafficPane #packets-box {
        height: 35%;
        min-height: 4;
        border-top: solid $primary;
        border-title-align: left;
    }
    TrafficPane PacketTable {
        height: 1fr;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
    }
    TrafficPane #traffic-filter, TrafficPane #filter-error {
        display: none;
    }
    TrafficPane.-filtering #traffic-filter {
        display: block;
    }
    TrafficPane.-filtering #filter-error.-shown {
        display: block;
        color: $text-error;
        text-style: bold;
    }
    TrafficPane #traffic-filter.-invalid {
        background: $error 40%;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "slash",
            "filter",
            "Filter",
            id="traffic.filter",
            tooltip="Display filter (host, net, port, protocol tag; and/or/not); checked as you"
            " type, Enter applies it, Esc clears it",
        ),
        Binding(
            "escape",
            "clear_filter",
            "Clear",
            id="traffic.clear_filter",
            tooltip="Clear the display filter",
        ),
        Binding(
            "t",
            "toggle_mode",
            "Flows/Talkers",
            id="traffic.mode",
            tooltip="Switch between flows and top talkers (hosts)",
        ),
        Binding(
            "o",
            "sort",
            "Sort",
            id="traffic.sort",
            tooltip="Sort by the next of bytes, packets, rate and last seen (or click a column"
            " header)",
        ),
        Binding(
            "c",
            "capture",
            "Capture",
            id="traffic.capture",
            tooltip="Start or stop capture: interfaces and a BPF filter",
        ),
        Binding(
            "w",
            "save",
            "Save",
            id="traffic.save",
            tooltip="Save the recent packets of the flow or host under the cursor as a pcap file",
        ),
        Binding(
            "p",
            "pause",
            "Pause",
            id="traffic.pause",
            show=False,
            tooltip="Freeze the traffic view; press again to resume",
        ),
    ]

    def __init__(self, *, refresh: float, id: str | None = None) -> None:
        super().__init__(id=id)
        self.interval = min(POLL_SLOWEST, max(POLL_FASTEST, refresh))
        self.mode = "flows"
        self.sort = SORTS[0]
        self.filter = ""
        self.paused = False
        self.status: dict[str, Any] | None = None
        self.total = 0
        self._rows: dict[str, dict[str, Any]] = {}
        self._cells: dict[str, tuple[dict[str, Any], Cells]] = {}
        self._packets_of: str | None = None
        # (flow or host, its packet count) when its packets were last fetched.
        self._packets_fetched: tuple[str, Any] | None = None
        # A flow asked for from an alert (with where it came from), until the next poll finds
        # it listed or not.
        self._wanted_flow: tuple[dict[str, Any], str] | None = None
        # That flow when it was not listed: its packets stay below until the flows' cursor is
        # moved off the row it was on then (``_pin_anchor``).
        self._pinned: tuple[dict[str, Any], str] | None = None
        self._pin_anchor: str | None = None
        # The key of that flow until its packets have been fetched once.
        self._announce: str | None = None
        # Bumped whenever what a poll asks for changes, so that an answer to an older question
        # is not shown as the answer to the new one.
        self._generation = 0
        self._poller = Poller(self, "Traffic", self._fetch, self._failed, lambda: self._wanted,
                              lambda: self.interval, RETRY_SECONDS)  # fmt: skip
        self._title = ""
        self._packets_title = ""

    @property
    def flows(self) -> FlowTable:
        return self.query_one(FlowTable)

    @property
    def packets(self) -> PacketTable:
        return self.query_one(PacketTable)

    @property
    def help_text(self) -> str:
        if self._unsupported:
            now = self._unsupported
        elif self.status is None:
            now = "waiting for the engine's capture status"
        else:
            now = state_line(self.status).plain
        return f"{self.purpose}\n\nNow: {now}"

    def compose(self) -> ComposeResult:
        yield CaptureSummary()
        yield FlowTable(FLOW_COLUMNS, rest="info", id="flow-table")
        with Vertical(id="packets-box"):
            yield PacketTable(PACKET_COLUMNS, rest="info", id="packet-table")
        yield Input(
            placeholder="display filter, e.g. mqtt and host 10.0.0.5",
            id="traffic-filter",
            compact=True,
            validators=[DisplayFilter()],
            validate_on=["changed", "submitted"],
        )
        yield Static("", id="filter-error", markup=False)

    def on_mount(self) -> None:
        self.flows.label_sort(self.sort)
        self._update_title()
        self._title_packets()

    # -- when to poll -------------------------------------------------------------------------

    def _disconnected(self) -> None:
        self.query_one(CaptureSummary).show_problem("Not connected to the engine.")

    def _paused(self) -> bool:
        return self.paused

    async def _fetch(self) -> None:
        link = engine(self).link
        generation, packets_of = self._generation, self._packets_of
        args: dict[str, Any] = {"mode": self.mode, "sort": self.sort, "limit": FLOW_LIMIT}
        if self.filter:
            args["filter"] = self.filter
        calls = [link.request("capture.status"), link.request("traffic.flows", args)]
        # The packet list is asked for again only when its flow or host has new packets: the
        # engine searches its ring for them, and the ring may hold a great many.
        row = self._rows.get(packets_of) if packets_of is not None else None
        fetching = (packets_of, row.get("packets") if row is not None else None)
        if packets_of is not None and fetching != self._packets_fetched:
            calls.append(link.request("traffic.packets", self._packets_args(packets_of)))
        status, flows, *packets = await asyncio.gather(*calls)
        if not self.is_attached:
            return
        self.status = status
        self.query_one(CaptureSummary).show(status)
        if generation != self._generation:
            self._poller.again()
            return
        self._show_rows(flows)
        if packets and packets_of == self._packets_of:
            self._packets_fetched = fetching
            self._show_packets(packets[0])
            if packets_of == self._announce:
                self._alert_flow_packets(packets[0])

    def _failed(self, exc: ControlError) -> None:
        summary = self.query_one(CaptureSummary)
        if exc.code == "unknown_command":
            self._unsupported = f"This engine does not serve traffic ({exc})."
            summary.show_problem(self._unsupported)
        elif exc.code != "unreachable":
            # Unreachable is the link's to report (the status bar); anything else is shown here.
            summary.show_problem(f"Traffic update failed: {clean(exc, limit=300)}")

    # -- showing what came back ---------------------------------------------------------------

    def _key(self, row: dict[str, Any]) -> str:
        return str(row["key"] if self.mode == "flows" else row["host"])

    def _show_rows(self, result: dict[str, Any]) -> None:
        rows = result.get("rows") or []
        self.total = int(result.get("total") or len(rows))
        make = flow_cells if self.mode == "flows" else talker_cells
        cells: dict[str, tuple[dict[str, Any], Cells]] = {}
        for row in rows:
            key = self._key(row)
            before = self._cells.get(key)
            # Unchanged rows keep their cells: nothing to format, nothing to redraw.
            cells[key] = before if before is not None and before[0] == row else (row, make(row))
        self._cells = cells
        self._rows = {key: row for key, (row, _) in cells.items()}
        before = self.flows.key_under_cursor()
        self.flows.show({key: c for key, (_, c) in cells.items()}, list(cells))
        if self._pinned is not None and before == self._pin_anchor:
            # The table moved the cursor, not the operator: the pinned flow stays.
            self._pin_anchor = self.flows.key_under_cursor()
        self._update_title()
        if self._wanted_flow is not None:
            self._find_flow(*self._wanted_flow)
        self._follow_cursor()

    def _show_packets(self, packets: list[dict[str, Any]]) -> None:
        rows = {str(p["id"]): packet_cells(p) for p in packets}
        self.packets.show(rows, list(rows), follow=True)
        self._title_packets(len(rows))

    def _update_title(self) -> None:
        parts: list[Content | str | tuple[str, str]] = [("Traffic", "bold")]
        noun = "flows" if self.mode == "flows" else "talkers"
        shown = len(self._rows)
        parts.append(f" {noun} {shown}" + (f" of {self.total}" if self.total > shown else ""))
        parts.append(f" │ by {SORT_LABEL[self.sort]}")
        if self.filter:
            parts += [" │ filter: ", (clean(self.filter, limit=40), "bold")]
        if self.paused:
            parts += [" │ ", (" PAUSED ", "bold reverse"), " p resumes"]
        title = Content.assemble(*parts)
        if title.plain != self._title:
            self._title = title.plain
            self.border_title = title

    def _title_packets(self, count: int | None = None) -> None:
        row = self._rows.get(self._packets_of) if self._packets_of is not None else None
        pinned = self._pinned
        if pinned is not None and self._packets_of == pinned[0]["key"]:
            head = Text("Packets" + (f" {count}" if count is not None else "") + " │ ", "bold")
            head.append_text(flow_title(pinned[0]))
            head.append(f" │ {pinned[1]}, not in the flows above")
            title = Content.from_rich_text(head)
        elif row is None:
            title = Content("Packets of the flow or host under the cursor")
        else:
            subject = flow_title(row) if self.mode == "flows" else talker_title(row)
            head = Text("Packets" + (f" {count}" if count is not None else "") + " │ ", "bold")
            head.append_text(subject)
            title = Content.from_rich_text(head)
        if title.plain != self._packets_title:
            self._packets_title = title.plain
            self.query_one("#packets-box").border_title = title

    # -- the row under the cursor and its packets ---------------------------------------------

    def _follow_cursor(self) -> None:
        key = self.flows.key_under_cursor()
        if self._pinned is not None:
            if key == self._pin_anchor:
                key = str(self._pinned[0]["key"])
            else:
                self._pinned = None  # the operator moved on
        if key != self._packets_of:
            self._packets_of, self._packets_fetched = key, None
            self.packets.show({}, [])
            self._title_packets()
            if key is not None:
                self._poller.now()
        elif key is not None:
            self._title_packets(self.packets.row_count)

    def _packets_args(self, key: str) -> dict[str, Any]:
        if self.mode == "flows":
            return {"flow": key, "limit": PACKET_LIMIT}
        return {"filter": f"host {key}", "limit": PACKET_LIMIT}

    # -- a flow from an alert -----------------------------------------------------------------

    def show_flow(self, flow: dict[str, Any], origin: str) -> None:
        """Show ``flow`` (a rule alert's evidence, from ``origin``): ask the engine for the
        flows now, then select it or, when it is not listed, list its packets below."""
        if self.mode != "flows":
            self.action_toggle_mode()
        if self.paused:
            self.action_pause()
        self._wanted_flow = (flow, origin)
        self._changed()

    def show_hosts(self, addresses: list[str]) -> None:
        """Show the flows of these hosts (a device's addresses, from the Devices pane)."""
        text = " or ".join(f"host {address}" for address in addresses)
        self.query_one("#traffic-filter", Input).value = text
        self.remove_class("-filtering")
        if self.mode != "flows":
            self.action_toggle_mode()
        if self.paused:
            self.action_pause()
        self._apply_filter(text)
        self.flows.focus()

    def _find_flow(self, flow: dict[str, Any], origin: str) -> None:
        self._wanted_flow = None
        key = self._announce = str(flow["key"])
        self._packets_fetched = None  # its packets are asked for even if they are shown
        if key in self._rows:
            self.flows.move_cursor(row=self.flows.shown_keys.index(key))
            self.flows.focus()
        else:
            self._pinned = (flow, origin)
            self._pin_anchor = self.flows.key_under_cursor()

    def _alert_flow_packets(self, packets: list[dict[str, Any]]) -> None:
        """The first packets of the flow asked for from an alert are in."""
        self._announce = None
        if not packets:
            self.app.notify(
                "None of the packets of the alert's flow are left in the engine's ring buffer"
                " of recent packets",
                severity="warning",
                timeout=10,
            )
        elif self._pinned is not None:
            self.packets.focus()

    @on(DataTable.RowHighlighted, "#flow-table")
    def _flow_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._follow_cursor()

    @on(DataTable.RowSelected, "#flow-table")
    def _flow_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.packets.row_count:
            self.packets.focus()
        else:
            self.app.notify(
                "None of its packets are in the engine's ring buffer of recent packets",
                severity="warning",
            )

    @on(DataTable.RowSelected, "#packet-table")
    def _packet_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.app.push_screen(PacketDetailScreen(int(str(event.row_key.value))))

    @on(DataTable.HeaderSelected, "#flow-table")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        if column in SORTS:
            self._sort_by(column)

    # -- filter, mode, sort, pause ------------------------------------------------------------

    def action_filter(self) -> None:
        prompt = self.query_one("#traffic-filter", Input)
        prompt.value = self.filter
        self.add_class("-filtering")
        prompt.focus()
        self.refresh_bindings()

    @on(Input.Changed, "#traffic-filter")
    def _filter_typed(self, event: Input.Changed) -> None:
        event.stop()
        self._show_filter_problem(event.validation_result)

    @on(Input.Submitted, "#traffic-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.validation_result is not None and not event.validation_result.is_valid:
            self._show_filter_problem(event.validation_result)
            return
        self.remove_class("-filtering")
        self._apply_filter(event.value.strip())
        self.flows.focus()

    def _show_filter_problem(self, result: ValidationResult | None) -> None:
        problem = (
            "" if result is None or result.is_valid else "; ".join(result.failure_descriptions)
        )
        error = self.query_one("#filter-error", Static)
        error.update(Content(clean(problem, limit=300)))
        error.set_class(bool(problem), "-shown")

    def action_clear_filter(self) -> None:
        self.query_one("#traffic-filter", Input).value = ""
        self.remove_class("-filtering")
        self._apply_filter("")
        self.flows.focus()

    def _apply_filter(self, text: str) -> None:
        if text != self.filter:
            self.filter = text
            self._changed()
        self.refresh_bindings()

    def action_toggle_mode(self) -> None:
        self.mode = "talkers" if self.mode == "flows" else "flows"
        if self.mode == "flows":
            self.flows.use_columns(FLOW_COLUMNS, rest="info")
        else:
            self.flows.use_columns(TALKER_COLUMNS, rest="apps")
        self.flows.label_sort(self.sort)
        self._rows, self._cells = {}, {}
        self._changed()

    def action_sort(self) -> None:
        self._sort_by(SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)])

    def _sort_by(self, sort: str) -> None:
        if sort != self.sort:
            self.sort = sort
            self.flows.label_sort(sort)
            self._changed()

    def _changed(self) -> None:
        """What the table should show changed: say so now and ask the engine at once."""
        self._pinned = self._announce = None
        self._generation += 1
        self._update_title()
        self._follow_cursor()
        self._poller.now()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.set_class(self.paused, "-paused")
        self._update_title()
        if self.paused:
            self._poller.stop()
        else:
            self._poller.now()

    # -- capture and saving -------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in NEEDS:
            # None shows the key greyed out: the operator sees it exists but is not theirs.
            return True if engine(self).may(NEEDS[action]) else None
        if action == "clear_filter":
            return bool(self.filter) or self.has_class("-filtering")
        return True

    def action_capture(self) -> None:
        def done(status: dict[str, Any] | None) -> None:
            if status is not None:
                self.status = status
                self.query_one(CaptureSummary).show(status)
                self.app.notify(f"Capture {clean(status.get('state'))}", markup=False)
                self._poller.now()

        self.app.push_screen(CaptureScreen(self.status), done)

    def action_save(self) -> None:
        key = self.flows.key_under_cursor()
        row = self._rows.get(key) if key is not None else None
        if key is None or row is None:
            self.app.notify("No flow or host under the cursor", severity="warning")
            return
        if self.mode == "flows":
            args: dict[str, Any] = {"flow": key}
            subject = flow_title(row)
            name = "-".join(
                file_part(str(row.get(part) or ""))
                for part in ("app", "src", "sport", "dst", "dport")
            )
        else:
            args = {"host": key}
            subject = talker_title(row)
            name = "host-" + file_part(key)

        def save(path: str | None) -> None:
            if path is not None:
                self._save(args, path)

        self.app.push_screen(
            SavePcapScreen(Content.from_rich_text(subject), f"./iotsec-{name}.pcap"), save
        )

    def _save(self, args: dict[str, Any], path: str) -> None:
        async def run() -> None:
            try:
                saved = await save_pcap(engine(self).link, args, path)
            except ControlError as exc:
                self.app.notify(f"Not saved: {exc}", severity="error", markup=False, timeout=10)
            except NothingToSave as exc:
                self.app.notify(f"Not saved: {exc}", severity="warning", markup=False)
            except FileExistsError:
                self.app.notify(
                    f"Not saved: {path} already exists (files are never overwritten)",
                    severity="error",
                    markup=False,
                    timeout=10,
                )
            except OSError as exc:
                self.app.notify(
                    f"Not saved: {path}: {exc.strerror or exc}",
                    severity="error",
                    markup=False,
                    timeout=10,
                )
            else:
                self.app.notify(
                    f"Saved {saved.packets} packets ({human(saved.size)}B, {saved.format})"
                    f" to {saved.path}",
                    markup=False,
                    timeout=10,
                )

        self.app.run_worker(run(), name="Saving pcap", group="actions", exit_on_error=False)
