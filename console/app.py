"""The iotsec console: a Textual app over the engine's control API, and ``run_console``, which
``iotsec console`` calls.

The first frame draws before anything touches the engine: connecting (or starting a private
engine) happens in a worker after mount, and the status bar says how it is going.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from functools import partial
from typing import Any, ClassVar

from textual import on
from textual.actions import parse as parse_action
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane
from textual.worker import Worker

from console.commands import ActionCommands, PaletteCommand
from console.engine_link import EngineEvent, EngineLink, LinkChanged, Snapshot
from console.keys import bindings_of, keymap_problems, keys_for
from console.messages import (
    OpenView,
    ScanStarted,
    SerialDevices,
    ShowFlow,
    ShowPane,
    ShowSerial,
    ShowTraffic,
)
from console.notifier import AlertNotifier, show_worker_failure
from console.panes.alert_table import AlertTable
from console.panes.alerts import AlertsPane
from console.panes.devices import DevicesPane
from console.panes.serial import SerialPane
from console.panes.traffic import TrafficPane
from console.panes.traffic_table import FlowTable
from console.screens.alert_detail import AlertDetailScreen
from console.screens.bans import BansScreen
from console.screens.device_detail import DeviceScreen
from console.screens.help import HelpScreen, KeyRow
from console.screens.logs import LogsScreen
from console.screens.packet_detail import PacketDetailScreen
from console.screens.rules import RulesScreen
from console.screens.silences import SilencesScreen
from console.screens.views import VIEWS, view_available
from console.terminal import TerminalWatch
from console.widgets.link_notice import LinkNotice
from console.widgets.status_bar import StatusBar
from engine.config import Config

# After the console missed events it reloads the alert list, at most this often.
RESYNC_SECONDS = 2.0

PANES = ("traffic", "devices", "alerts", "serial")
# Screens opened over the panes: their keys can be rebound in the keymap too.
SCREENS = (AlertDetailScreen, PacketDetailScreen, DeviceScreen, RulesScreen, BansScreen,
           LogsScreen, SilencesScreen)  # fmt: skip
# The views opened over the panes, with the name help and the palette give their keys.
VIEW_NAMES: dict[type[Screen[Any]], str] = {screen: name for name, (screen, _) in VIEWS.items()}


class IotsecApp(App[None]):
    TITLE = "iotsec"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {ActionCommands}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "1",
            "show_pane('traffic')",
            "Traffic",
            id="app.pane.traffic",
            show=False,
            tooltip="Show the Traffic pane",
        ),
        Binding(
            "2",
            "show_pane('devices')",
            "Devices",
            id="app.pane.devices",
            show=False,
            tooltip="Show the Devices pane",
        ),
        Binding(
            "3",
            "show_pane('alerts')",
            "Alerts",
            id="app.pane.alerts",
            show=False,
            tooltip="Show the Alerts pane",
        ),
        Binding(
            "4",
            "show_pane('serial')",
            "Serial",
            id="app.pane.serial",
            show=False,
            tooltip="Show the Serial pane",
        ),
        Binding(
            "R",
            "rules",
            "Rules",
            id="app.rules",
            show=False,
            tooltip="Rules: hits per rule, enable or disable one by sid, reload the rule files",
        ),
        Binding(
            "B",
            "bans",
            "Bans",
            id="app.bans",
            show=False,
            tooltip="Bans: what the firewall blocks, time left, drops; lift a ban, confirm a"
            " proposed one",
        ),
        Binding(
            "L",
            "logs",
            "Logs",
            id="app.logs",
            show=False,
            tooltip="Logs: jails and their failures, followed files, the lines behind an alert",
        ),
        Binding(
            "question_mark,f1",
            "help",
            "Help",
            id="app.help",
            tooltip="Help for the pane you are in",
        ),
        Binding(
            "ctrl+p",
            "command_palette",
            "Commands",
            id="app.palette",
            show=False,
            tooltip="Every action by name",
        ),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Quit the console (so does Ctrl+Q)"),
    ]

    def __init__(self, config: Config, *, config_path: str | None = None, spawn: bool = False,
                 label: str = "engine"):  # fmt: skip
        super().__init__()
        self.config = config
        self.keymap = dict(config.console.keymap)
        self.link = EngineLink(
            self,
            config.control.socket_path(),
            spawn=spawn,
            config_path=config_path,
            max_rows=config.console.max_rows,
            label=label,
        )
        self.notifier = AlertNotifier(self)
        self.terminal = TerminalWatch(self, before_forced_exit=self.link.stop_private)
        self.status: dict[str, Any] | None = None
        self.missed = 0
        self._resync_due = False

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield LinkNotice(id="link-notice")
        with TabbedContent(initial="alerts", id="panes"):
            with TabPane("1 Traffic", id="traffic"):
                yield TrafficPane(refresh=self.config.console.refresh, id="traffic-pane")
            with TabPane("2 Devices", id="devices"):
                yield DevicesPane(id="devices-pane")
            with TabPane("3 Alerts", id="alerts"):
                yield AlertsPane(
                    max_rows=self.config.console.max_rows,
                    refresh=self.config.console.refresh,
                    id="alerts-pane",
                )
            with TabPane("4 Serial", id="serial"):
                yield SerialPane(prefix=self.config.serial.prefix, panes=PANES, id="serial-pane")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.set_keymap(self.keymap)
        all_bindings = [b for _, _, bindings in self._binding_owners() for b in bindings]
        all_bindings += [b for screen in SCREENS for b in bindings_of(screen)]
        # A keymap mistake is an error, but one the console survives: at 3 a.m. a typo in a
        # key binding must not keep the on-call engineer from the alerts.
        source = self.config.source or "config"
        for problem in keymap_problems(self.keymap, all_bindings):
            self.notify(f"{source}: {problem}", severity="error", markup=False, timeout=15)
        if not self.is_headless:
            self.terminal.start()
        self.link.connect()

    async def on_unmount(self) -> None:
        if not self.is_headless:
            self.terminal.stop()
        await self.link.close()
        await asyncio.to_thread(self.link.stop_private)

    # -- what the panes and screens ask of the app --------------------------------------------

    def may(self, command: str) -> bool:
        """The role check panes and screens reach the engine with (see engine_access.py)."""
        return self.link.may(command)

    @property
    def alerts(self) -> AlertsPane:
        return self.query_one(AlertsPane)

    @property
    def traffic(self) -> TrafficPane:
        return self.query_one(TrafficPane)

    @property
    def devices(self) -> DevicesPane:
        return self.query_one(DevicesPane)

    @property
    def serial(self) -> SerialPane:
        return self.query_one(SerialPane)

    @on(ShowPane)
    def _show_pane(self, event: ShowPane) -> None:
        self.action_show_pane(event.pane)

    @on(ShowFlow)
    def _show_flow(self, event: ShowFlow) -> None:
        self.action_show_pane("traffic")
        self.traffic.show_flow(event.flow, event.origin)

    @on(ShowTraffic)
    def _show_traffic(self, event: ShowTraffic) -> None:
        self.action_show_pane("traffic")
        self.traffic.show_hosts(list(event.hosts))

    @on(ShowSerial)
    def _show_serial(self, event: ShowSerial) -> None:
        sid = self.serial.session_for(event.device_id)
        if sid is None:
            self.notify("No serial session is attached to this device", severity="warning")
            return
        self.action_show_pane("serial")
        self.serial.show_session(sid)

    @on(OpenView)
    def _open_view(self, event: OpenView) -> None:
        self.push_screen(VIEWS[event.view][0]())

    @on(ScanStarted)
    def _scan_started(self, event: ScanStarted) -> None:
        self.devices.await_scan(event.scan_id)

    @on(SerialDevices)
    def _serial_devices(self, event: SerialDevices) -> None:
        self.devices.serial_devices = event.devices

    # -- the engine ---------------------------------------------------------------------------

    # Engine news can still arrive while the app shuts down and its screens are being removed;
    # the handlers drop it then.

    @on(LinkChanged)
    def _link_changed(self, event: LinkChanged) -> None:
        if not self.is_running:
            return
        self.query_one(StatusBar).show_link(event.state)
        self.query_one(LinkNotice).show_link(event.state)
        connected = event.state.phase == "connected"
        self.traffic.show_link(connected)
        self.devices.show_link(connected)
        self.serial.show_link(connected)
        self.refresh_bindings()

    @on(Snapshot)
    def _snapshot(self, event: Snapshot) -> None:
        if not self.is_running:
            return
        self.alerts.load(event.alerts)
        self._show_status(event.status)

    @on(EngineEvent)
    def _engine_event(self, event: EngineEvent) -> None:
        if not self.is_running:
            return
        if event.dropped:
            self.missed += event.dropped
            if not self._resync_due:
                self._resync_due = True
                self.set_timer(RESYNC_SECONDS, self._resync)
        if event.topic == "alerts" and isinstance(event.data, list):
            self.alerts.receive(event.data)
            self.notifier.offer(event.data)
        elif event.topic == "status" and isinstance(event.data, dict):
            self._show_status(event.data)
        elif event.topic == "serial" and isinstance(event.data, dict):
            self.serial.receive(event.data)

    def _resync(self) -> None:
        self._resync_due = False
        self.link.resync()

    def _show_status(self, status: dict[str, Any]) -> None:
        self.status = status
        self.query_one(StatusBar).show_status(status, self.missed)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        show_worker_failure(self, event)

    # -- panes, help and the palette ----------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in VIEWS:
            return view_available(self, action)
        return True

    def action_rules(self) -> None:
        self.push_screen(RulesScreen())

    def action_bans(self) -> None:
        self.push_screen(BansScreen())

    def action_logs(self) -> None:
        self.push_screen(LogsScreen())

    def action_silences(self) -> None:
        self.push_screen(SilencesScreen())

    def action_show_pane(self, pane: str) -> None:
        # A pane's key in the Rules, Bans or Logs view goes back to the panes.
        while type(self.screen) in VIEW_NAMES:
            self.pop_screen()
        self.query_one(TabbedContent).active = pane

    @on(TabbedContent.TabActivated)
    def _pane_shown(self, event: TabbedContent.TabActivated) -> None:
        # However the pane was chosen (key, click, palette), its keys work at once.
        if event.pane.id == "alerts":
            self.query_one(AlertTable).focus()
        elif event.pane.id == "traffic":
            self.query_one(FlowTable).focus()
        elif event.pane.id == "devices":
            self.devices.table.focus()
        elif event.pane.id == "serial":
            self.serial.view.focus()
        # Traffic and devices are polled only while in view.
        self.traffic.in_view(event.pane.id == "traffic")
        self.devices.in_view(event.pane.id == "devices")

    def _active_pane(
        self,
    ) -> tuple[str, AlertsPane | TrafficPane | DevicesPane | SerialPane | Screen[Any]]:
        if type(self.screen) in VIEW_NAMES:
            return VIEW_NAMES[type(self.screen)], self.screen
        tab = self.query_one(TabbedContent).active or "alerts"
        pane = self.query_one(f"TabPane#{tab}").children[0]
        assert isinstance(pane, AlertsPane | TrafficPane | DevicesPane | SerialPane)
        return tab, pane

    def _binding_owners(
        self, screen: Screen[Any] | None = None
    ) -> Iterator[tuple[str, DOMNode, list[Binding]]]:
        """(pane id, node, bindings with an id) for the app, every node in every pane, and the
        Rules or Bans view if ``screen`` is one."""
        yield "", self, [b for b in bindings_of(type(self)) if b.id]
        nodes = [
            (pane, node)
            for pane in PANES
            for node in self.query_one(f"TabPane#{pane}").walk_children(with_self=False)
        ]
        if screen is not None and type(screen) in VIEW_NAMES:
            view = VIEW_NAMES[type(screen)]
            nodes += [(view, node) for node in screen.walk_children(with_self=True)]
        for pane, node in nodes:
            bindings = [b for b in bindings_of(type(node)) if b.id]
            if bindings:
                yield pane, node, bindings

    def _keys(self, binding: Binding) -> str:
        keys = keys_for(binding, self.keymap)
        return ", ".join(self.get_key_display(binding.with_key(k)) for k in keys)

    def action_help(self) -> None:
        pane_id, pane = self._active_pane()
        keys: list[KeyRow] = []
        for owner_pane, _node, bindings in self._binding_owners(self.screen):
            if owner_pane == pane_id:
                keys += [(self._keys(b), b.tooltip or b.description) for b in bindings]
        everywhere = [
            (self._keys(b), b.tooltip or b.description) for b in bindings_of(type(self)) if b.id
        ]
        self.push_screen(
            HelpScreen(
                str(pane.title),
                pane.help_text,
                keys or [("", "no keys of its own yet")],
                everywhere,
            )
        )

    def palette_commands(self, screen: Screen[Any] | None = None) -> list[PaletteCommand]:
        """Every action the operator may use now on ``screen`` (the one the palette was opened
        from), named for the command palette."""
        commands: list[PaletteCommand] = []
        for pane_id, node, bindings in self._binding_owners(screen or self.screen):
            for binding in bindings:
                _, name, params = parse_action(binding.action)
                if name == "command_palette" or node.check_action(name, params) is not True:
                    continue
                label = binding.tooltip or binding.description
                title = f"{pane_id.capitalize()}: {label}" if pane_id else label
                run = partial(self._run_in_pane, pane_id, node, binding.action)
                commands.append((title, f"key: {self._keys(binding)}", run))
        return commands

    def _run_in_pane(self, pane_id: str, node: DOMNode, action: str) -> None:
        if pane_id in PANES:
            self.action_show_pane(pane_id)
        self.call_later(node.run_action, action)


def run_console(config: Config, *, config_path: str | None, spawn: bool,
                label: str = "engine") -> int:  # fmt: skip
    """Run the console until the operator quits or the terminal goes away; the exit status.
    ``label`` names the engine in the status bar ("lab engine")."""
    app = IotsecApp(config, config_path=config_path, spawn=spawn, label=label)
    try:
        app.run()
    finally:
        # The app stops its private engine on the way out; this covers a crash in between.
        app.link.stop_private()
    if app.link.state.phase in ("failed", "refused"):
        print(f"iotsec console: {app.link.state.message}", file=sys.stderr)
    return app.return_code or 0
