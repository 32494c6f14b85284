"""``iotsec serial PORT``: the Serial pane alone, full-screen, as the quick bench tool.

It reaches the engine as the console does (the running one, else a private one of its own),
opens the port there (or shows the session that already has it) and closes what it opened when
the technician quits with the prefix and ``q``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.worker import Worker

from console.engine_link import EngineEvent, EngineLink, LinkChanged
from console.notifier import show_worker_failure
from console.panes.serial import SerialPane
from console.terminal import TerminalWatch
from engine.config import Config
from engine.control.protocol import ControlError


class SerialApp(App[None]):
    TITLE = "iotsec serial"
    CSS = "SerialPane { border-top: none; }"

    def __init__(
        self,
        config: Config,
        port: str,
        settings: dict[str, Any],
        *,
        config_path: str | None = None,
        spawn: bool = True,
    ) -> None:
        super().__init__()
        self.config = config
        self.port = port
        self.settings = settings
        self.link = EngineLink(
            self,
            config.control.socket_path(),
            spawn=spawn,
            config_path=config_path,
            max_rows=1,
            topics=("serial",),
        )
        self.terminal = TerminalWatch(self, before_forced_exit=self.link.stop_private)
        self.opened: int | None = None
        self.problem = ""

    def compose(self) -> ComposeResult:
        yield SerialPane(prefix=self.config.serial.prefix, id="serial-pane")

    @property
    def serial(self) -> SerialPane:
        return self.query_one(SerialPane)

    def may(self, command: str) -> bool:
        return self.link.may(command)

    def on_mount(self) -> None:
        if not self.is_headless:
            self.terminal.start()
        self.serial.view.focus()
        self.link.connect()

    async def on_unmount(self) -> None:
        if not self.is_headless:
            self.terminal.stop()
        if self.opened is not None:
            # If the engine went first, its sessions closed with it.
            with contextlib.suppress(ControlError):
                await self.link.request("serial.close", {"id": self.opened})
        await self.link.close()
        await asyncio.to_thread(self.link.stop_private)

    @on(LinkChanged)
    def _link_changed(self, event: LinkChanged) -> None:
        if not self.is_running:
            return
        connected = event.state.phase == "connected"
        self.serial.show_link(connected)
        if connected and self.opened is None:
            self.run_worker(self._open(), group="serial-open", exit_on_error=False)
        elif event.state.phase == "failed":
            self.problem = event.state.message
            self.serial.query_one("#serial-status").update(f"engine: {event.state.message}")

    async def _open(self) -> None:
        shown = await self.serial.open_port(self.port, self.settings).wait()
        if shown is not None and shown[1]:
            self.opened = shown[0]

    @on(EngineEvent)
    def _engine_event(self, event: EngineEvent) -> None:
        if self.is_running and event.topic == "serial" and isinstance(event.data, dict):
            self.serial.receive(event.data)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        show_worker_failure(self, event)


def run_serial(
    config: Config, port: str, settings: dict[str, Any], *, config_path: str | None
) -> int:
    app = SerialApp(config, port, settings, config_path=config_path)
    try:
        app.run()
    finally:
        app.link.stop_private()
    if app.problem:
        print(f"iotsec serial: {app.problem}")
        return 1
    return app.return_code or 0
