"""The capture dialog: start capture on the interfaces and with the BPF filter the operator
chooses, or stop it. It sends ``capture.start``/``capture.stop`` itself so that what the engine
refuses (no CAP_NET_RAW, a filter that does not compile, an unknown interface) is shown right
here, where it can be corrected; it closes with the new capture status once the engine agrees.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Button, Input, Static

from console.engine_access import engine
from console.panes.capture_summary import state_line
from console.screens.prompts import Dialog
from console.untrusted import clean
from engine.control.protocol import ControlError

# What the engine's error codes mean for the operator, ahead of the engine's own message.
ERROR_HEADING = {
    "capture_unavailable": "Capture is not available",
    "bad_filter": "The BPF filter does not compile",
    "bad_request": "The engine refused this",
    "forbidden": "Not allowed",
}


def interface_names(text: str) -> list[str]:
    """``eth0, wlan0`` or ``eth0 wlan0`` as a list of names."""
    return [name for name in text.replace(",", " ").split() if name]


class CaptureScreen(Dialog[dict[str, Any] | None]):
    DEFAULT_CSS = """
    CaptureScreen .label {
        margin-top: 1;
    }
    CaptureScreen #local-interfaces {
        color: $text-muted;
    }
    CaptureScreen #error {
        color: $text-error;
        text-style: bold;
    }
    """

    def __init__(self, status: dict[str, Any] | None) -> None:
        super().__init__()
        self.status = status or {}

    @property
    def running(self) -> bool:
        return self.status.get("state") == "running"

    def compose(self) -> ComposeResult:
        interfaces = [clean(i) for i in self.status.get("interfaces") or []]
        with Vertical(id="dialog"):
            yield Static("Capture", classes="heading", markup=False)
            yield Static(state_line(self.status) if self.status else "", id="now")
            yield Static("Interfaces (one or more, separated by commas)", classes="label")
            yield Input(", ".join(interfaces), id="interfaces", compact=True)
            yield Static("", id="local-interfaces", markup=False)
            yield Static(
                "BPF filter (optional, e.g. udp port 53 or not port 22)",
                classes="label",
                markup=False,
            )
            yield Input(clean(self.status.get("bpf")), id="bpf", max_length=1000, compact=True)
            yield Static("", id="error", markup=False)
            with Horizontal():
                yield Button(
                    "Restart (Enter)" if self.running else "Start (Enter)",
                    id="start",
                    variant="primary",
                )
                yield Button("Stop", id="stop", variant="warning", disabled=not self.running)
                yield Button("Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#interfaces", Input).focus()
        self.app.run_worker(self._list_interfaces(), name="Listing interfaces", exit_on_error=False)

    async def _list_interfaces(self) -> None:
        names = [name for _, name in await asyncio.to_thread(socket.if_nameindex)]
        if not self.is_attached:
            return
        self.query_one("#local-interfaces", Static).update(
            "on the console's host: " + ", ".join(clean(n) for n in names)
        )

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._start()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self._start()
        elif event.button.id == "stop":
            self._send("capture.stop", {})
        else:
            self.dismiss(None)

    def _start(self) -> None:
        interfaces = interface_names(self.query_one("#interfaces", Input).value)
        if not interfaces:
            self._error("Name at least one interface to capture on.")
            self.query_one("#interfaces", Input).focus()
            return
        bpf = self.query_one("#bpf", Input).value.strip()
        self._send("capture.start", {"interfaces": interfaces, "bpf": bpf})

    def _send(self, cmd: str, args: dict[str, Any]) -> None:
        self._error("")
        for button in self.query(Button):
            button.disabled = True

        async def call() -> None:
            try:
                status = await engine(self).link.request(cmd, args)
            except ControlError as exc:
                if self.is_current:
                    heading = ERROR_HEADING.get(exc.code, "The engine said no")
                    self._error(f"{heading}: {exc}")
                    self._enable_buttons()
                return
            if self.is_current:
                self.dismiss(status)

        self.app.run_worker(call(), name=f"{cmd} on the engine", exit_on_error=False)

    def _enable_buttons(self) -> None:
        for button in self.query(Button):
            button.disabled = button.id == "stop" and not self.running

    def _error(self, message: str) -> None:
        self.query_one("#error", Static).update(Content(clean(message, limit=600)))
