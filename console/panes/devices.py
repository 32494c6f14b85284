"""The Devices pane: the engine's device inventory (built from traffic and scans), sortable and
filterable, new and gone devices marked, and the scans running now with their progress.

While the pane is in view and the engine connected, ``devices.list`` and ``scan.status`` are
polled every two seconds, one poll at a time, and the table is updated by diff. Enter opens the
device's detail; s scans it, b bans it, t shows its traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.widgets import DataTable, Static

from console.engine_access import engine
from console.panes.device_actions import (
    ban_device,
    scan_device,
    scan_outcome,
    scan_scope,
    show_serial,
    show_traffic,
)
from console.panes.device_rows import (
    DESCENDING,
    DEVICE_COLUMNS,
    SORT_LABEL,
    SORTS,
    describe,
    device_cells,
    is_new,
    matches,
    sort_key,
)
from console.panes.polled import PolledPane
from console.panes.traffic_table import TrafficTable
from console.polling import Poller
from console.screens.device_detail import DeviceScreen
from console.untrusted import clean
from console.widgets.filter_prompt import Filtering, filter_prompt
from engine.control.protocol import ControlError

POLL_SECONDS = 2.0
EMPTY = (
    "No devices yet. They appear as the engine captures traffic (c in the Traffic pane)"
    " and as scans run: 'iotsec scan NETWORK', or s here on a device."
)


class DevicesPane(Filtering, PolledPane):
    title = "Devices"
    purpose = (
        "The devices on the network, riskiest first: built from what the capture sees (ARP, "
        "DHCP names and vendor classes, mDNS and SSDP announcements, every MAC and address) and "
        "from scans (open ports, services, TLS, findings). NEW marks a device first seen in the "
        "last hour, gone one not seen for [devices] gone_after. TYPE is a guess; the line below "
        "the table says why. RISK (0-100) weighs the open findings. Enter shows a device's "
        "addresses, services, TLS, findings with evidence and fix, flows and alerts; s scans it "
        "now (the running scans show in the title, x cancels), b bans it, t shows its traffic, "
        "o sorts, / filters by text."
    )

    DEFAULT_CSS = """
    DevicesPane {
        border-top: solid $primary;
        border-title-align: left;
    }
    DevicesPane #device-table {
        height: 1fr;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
    }
    DevicesPane #device-detail {
        height: 2;
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    DevicesPane .alarm {
        display: none;
        padding: 0 1;
        color: $text-error;
        text-style: bold;
    }
    DevicesPane .alarm.-shown {
        display: block;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "s",
            "scan",
            "Scan",
            id="devices.scan",
            tooltip="Scan the device under the cursor now (top IoT ports and UDP probes)",
        ),
        Binding(
            "b",
            "ban",
            "Ban",
            id="devices.ban",
            tooltip="Ban the device under the cursor in the firewall (asks how long)",
        ),
        Binding(
            "t",
            "traffic",
            "Traffic",
            id="devices.traffic",
            tooltip="Show the traffic of the device under the cursor",
        ),
        Binding(
            "c",
            "serial",
            "Serial",
            id="devices.serial",
            tooltip="Go to the serial console session attached to the device under the cursor",
        ),
        Binding(
            "S",
            "scan_scope",
            "Scan all",
            id="devices.scan_scope",
            show=False,
            tooltip="Scan every network of [scan] scope now (discovery, then each live host)",
        ),
        Binding(
            "x",
            "cancel_scan",
            "Cancel scan",
            id="devices.cancel_scan",
            tooltip="Cancel the newest running scan",
        ),
        Binding(
            "o",
            "sort",
            "Sort",
            id="devices.sort",
            tooltip="Sort by the next of risk, address, last seen, first seen, type and"
            " vendor (or click a column header)",
        ),
        Binding(
            "slash",
            "filter",
            "Filter",
            id="devices.filter",
            tooltip="Filter by text in the address, MAC, vendor, name, type, ports or"
            " state; Enter keeps it, Esc clears it",
        ),
        Binding(
            "escape",
            "clear_filter",
            "Clear",
            id="devices.clear_filter",
            show=False,
            tooltip="Clear the filter",
        ),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = self.title
        self.sort = SORTS[0]
        self.filter = ""
        self.devices: dict[str, dict[str, Any]] = {}
        self.scans: dict[str, Any] | None = None
        # Scans seen running or started here, whose end is yet to be told.
        self._awaited: set[int] = set()
        # The devices a serial session is attached to (the Serial pane says when they change).
        self.serial_devices: frozenset[str] = frozenset()
        self.loaded = False
        # The clock "new" and "seen" are counted from (a test stops it).
        self.clock: Callable[[], float] = time.time
        self._poller = Poller(
            self, "Devices", self._fetch, self._failed, lambda: self._wanted, lambda: POLL_SECONDS
        )

    @property
    def table(self) -> TrafficTable:
        return self.query_one("#device-table", TrafficTable)

    @property
    def help_text(self) -> str:
        return self.purpose + (f"\n\nNow: {self._unsupported}" if self._unsupported else "")

    def compose(self) -> ComposeResult:
        yield Static("", id="device-problem", classes="alarm", markup=False)
        yield TrafficTable(DEVICE_COLUMNS, rest="ports", id="device-table")
        yield Static("", id="device-detail", markup=False)
        yield filter_prompt("filter: text in the address, MAC, vendor, name, type or ports")

    def on_mount(self) -> None:
        self.table.label_sort(self.sort, descending=self.sort in DESCENDING)
        self._update_title()

    # -- when to poll -------------------------------------------------------------------------

    def _disconnected(self) -> None:
        self._show_problem("Not connected to the engine.")

    async def _fetch(self) -> None:
        link = engine(self).link
        devices, scans = await asyncio.gather(
            link.request("devices.list"), link.request("scan.status")
        )
        if not self.is_attached:
            return
        self._show_problem("")
        self.show(devices, scans)

    def _failed(self, exc: ControlError) -> None:
        if not self.is_attached:
            return
        if exc.code == "unknown_command":
            self._unsupported = f"This engine does not keep a device inventory ({exc})."
            self._show_problem(self._unsupported)
        elif exc.code != "unreachable":
            self._show_problem(f"Devices update failed: {exc}")

    def _show_problem(self, text: str) -> None:
        problem = self.query_one("#device-problem", Static)
        problem.update(Content(clean(text, limit=300)))
        problem.set_class(bool(text), "-shown")

    # -- showing what came back ---------------------------------------------------------------

    def show(self, devices: list[dict[str, Any]], scans: dict[str, Any] | None) -> None:
        self.devices = {str(d["id"]): d for d in devices}
        self.scans = scans
        self.loaded = True
        self._show_rows()
        self._scans_ended(scans or {})

    def await_scan(self, scan_id: int) -> None:
        """Say when scan ``scan_id`` (started here) ends, and what it found."""
        self._awaited.add(scan_id)
        self._poller.now()

    def _scans_ended(self, scans: dict[str, Any]) -> None:
        """A toast for each scan seen running (or started here) that has ended since."""
        self._awaited |= {int(r["id"]) for r in scans.get("running") or [] if "id" in r}
        for run in scans.get("recent") or []:
            scan_id = int(run.get("id") or 0)
            if scan_id in self._awaited and run.get("state") != "running":
                self._awaited.discard(scan_id)
                text, severity = scan_outcome(run)
                self.app.notify(text, title="Scan ended", severity=severity, markup=False)

    def _show_rows(self) -> None:
        now = self.clock()
        terms = tuple(self.filter.casefold().split())
        shown = [d for d in self.devices.values() if not terms or matches(d, terms)]
        shown.sort(key=sort_key(self.sort), reverse=self.sort in DESCENDING)
        order = [str(d["id"]) for d in shown]
        self.table.show({str(d["id"]): device_cells(d, now) for d in shown}, order)
        self._update_title()
        self._cursor_moved()

    def _update_title(self) -> None:
        now = self.clock()
        values = self.devices.values()
        gone = sum(1 for d in values if d.get("state") == "gone")
        new = sum(1 for d in values if is_new(d, now))
        parts: list[Content | str | tuple[str, str]] = [
            ("Devices", "bold"),
            f" {len(self.devices) - gone} present",
        ]
        if new:
            parts += [", ", (f"{new} new", "bold green")]
        if gone:
            parts.append(f", {gone} gone")
        parts.append(f" │ by {SORT_LABEL[self.sort]}")
        if self.filter:
            parts += [
                f" │ {len(self.table.shown_keys)} shown, filter: ",
                (clean(self.filter, limit=30), "bold"),
            ]
        for run in (self.scans or {}).get("running", []):
            total = int(run.get("total") or 0)
            percent = 100 * int(run.get("done") or 0) // total if total else 0
            targets = clean(" ".join(run.get("targets") or []), limit=30)
            parts += [
                " │ ",
                (
                    f"scan #{run['id']} {targets} {clean(run.get('phase'))} {percent}%",
                    "bold yellow",
                ),
            ]
        self.border_title = Content.assemble(*parts)

    def under_cursor(self) -> dict[str, Any] | None:
        key = self.table.key_under_cursor()
        return self.devices.get(key) if key is not None else None

    @on(DataTable.RowHighlighted, "#device-table")
    def _cursor_moved(self) -> None:
        device = self.under_cursor()
        detail = self.query_one("#device-detail", Static)
        if device is not None:
            detail.update(describe(device, self.clock()))
        elif self.loaded:
            detail.update(Content(EMPTY if not self.devices else "No device matches the filter."))
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#device-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        device = self.under_cursor()
        if device is not None:
            self.app.push_screen(DeviceScreen(device))

    @on(DataTable.HeaderSelected, "#device-table")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        if column in SORTS:
            self._sort_by(column)

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        device = self.under_cursor()
        if action == "scan":
            return True if device is not None and engine(self).may("scan.start") else None
        if action == "ban":
            return True if device is not None and engine(self).may("bans.ban") else None
        if action == "traffic":
            return True if device is not None else None
        if action == "serial":
            attached = device is not None and str(device["id"]) in self.serial_devices
            return True if attached else None
        if action == "scan_scope":
            return True if engine(self).may("scan.start") else None
        if action == "cancel_scan":
            running = (self.scans or {}).get("running")
            return bool(running) and engine(self).may("scan.cancel")
        return True

    def action_scan(self) -> None:
        if (device := self.under_cursor()) is not None:
            scan_device(self.app, device)
            self._poller.now()

    def action_scan_scope(self) -> None:
        scan_scope(self.app)

    def action_ban(self) -> None:
        if (device := self.under_cursor()) is not None:
            ban_device(self.app, device)

    def action_traffic(self) -> None:
        if (device := self.under_cursor()) is not None:
            show_traffic(self.app, device)

    def action_serial(self) -> None:
        if (device := self.under_cursor()) is not None:
            show_serial(self.app, device)

    def action_cancel_scan(self) -> None:
        running = (self.scans or {}).get("running") or []
        if not running:
            return
        scan_id = max(int(r["id"]) for r in running)

        async def call() -> None:
            await engine(self).link.request("scan.cancel", {"id": scan_id})
            self.app.notify(f"Scan #{scan_id} cancelled: nothing it found is recorded")
            self._poller.now()

        self.app.run_worker(
            call(), name=f"Cancel scan {scan_id}", group="actions", exit_on_error=False
        )

    def action_sort(self) -> None:
        self._sort_by(SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)])

    def _sort_by(self, column: str) -> None:
        self.sort = column
        self.table.label_sort(column, descending=column in DESCENDING)
        self._show_rows()

    def action_clear_filter(self) -> None:
        self.clear_filter()

    def _filter_changed(self) -> None:
        self._show_rows()

    def _focus_view(self) -> None:
        self.table.focus()
