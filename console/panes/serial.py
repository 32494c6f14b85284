# Over 500 lines: ~30 prefix commands carried out; their parsing and streams are in serial/
"""The Serial pane: the engine's serial sessions, one shown at a time in a terminal view, with
a status line (port, state, settings, RX/TX, line states: what does not fit is left out, the
least useful first) and the boot-log findings beside it.

Keys typed in the view go to the device; console commands follow the prefix key (Ctrl-T, as in
tio; ``[serial] prefix``), and ``prefix ?`` lists them. Received bytes arrive as events on the
``serial`` topic; a gap (events the console missed) is filled from the engine's scrollback.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from console.engine_access import engine
from console.messages import SerialDevices, ShowPane
from console.panes.traffic_rows import human
from console.screens.help import HelpScreen
from console.screens.prompts import NoteScreen
from console.serial.prefix import PrefixCommands
from console.serial.status import (
    findings_content,
    fit_status,
    hint_content,
    login_result,
    status_pieces,
)
from console.serial.stream import Session
from console.serial.view import STAMP_MODES, SerialView
from console.untrusted import clean
from engine.control.protocol import ControlError

ATTACH_TAIL = 256 * 1024
SEND_CHUNK = 4096
MAPS_OUT = ("cr", "lf", "crlf")
MAPS_IN = ("lf", "cr", "crlf")
WIDE = 100  # the findings column shows from this width up
STATUS_EVERY = 0.25  # the RX counter is redrawn at most this often


class SerialPane(Vertical):
    DEFAULT_CSS = """
    SerialPane {
        border-top: solid $primary;
        border-title-align: left;
    }
    SerialPane #serial-tabs { height: 1; color: $text-muted; }
    SerialPane #serial-body { height: 1fr; }
    SerialPane #serial-findings {
        width: 34;
        border-left: solid $primary-darken-2;
        padding: 0 1;
    }
    SerialPane #serial-findings.hidden { display: none; }
    SerialPane #serial-status { height: 1; background: $boost; }
    SerialPane #serial-hint { height: auto; color: $text-muted; padding: 0 1; }
    SerialPane #serial-hint.hidden { display: none; }
    """

    def __init__(
        self, *, prefix: str = "ctrl+t", panes: tuple[str, ...] = (), id: str | None = None
    ) -> None:
        """``panes`` are the app's panes, which the prefix and a digit show (the console's)."""
        super().__init__(id=id)
        self.border_title = "Serial"
        self.commands = PrefixCommands(prefix, panes)
        self.prefix = self.commands.prefix
        self.sessions: dict[int, Session] = {}
        self.current: int | None = None
        self.ports: list[dict[str, Any]] = []
        self.show_findings: bool | None = None  # None: by the width
        self.connected = False
        self._typed = bytearray()
        self._sending = False
        self._shown_rx = -1
        self._devices: frozenset[str] = frozenset()

    @property
    def title(self) -> str:
        return "Serial"

    @property
    def help_text(self) -> str:
        return (
            "A serial console to a device on the bench (tio's keys behind the prefix), with the"
            f" findings its boot log reveals. Keys go to the device; {self._prefix_name()} then"
            " ? lists the console's commands and q quits. Long lines wrap"
            f" ({self._prefix_name()} w cuts them). Shift+PgUp/PgDn scroll back."
        )

    def compose(self) -> ComposeResult:
        yield Static("", id="serial-tabs", markup=False)
        yield Static("", id="serial-hint")
        with Horizontal(id="serial-body"):
            yield SerialView(self.prefix, id="serial-view")
            with VerticalScroll(id="serial-findings"):
                yield Static("", id="serial-findings-text")
        yield Static("", id="serial-status")

    def on_mount(self) -> None:
        self._show_hint()
        self._show_status()
        self.set_interval(STATUS_EVERY, self._tick)

    @property
    def view(self) -> SerialView:
        return self.query_one(SerialView)

    def on_resize(self) -> None:
        self._layout_findings()
        self._show_status()

    # -- the engine ----------------------------------------------------------------------------

    def show_link(self, connected: bool) -> None:
        self.connected = connected
        if connected:
            self._take_up_all()
        self._show_status()

    @work(group="serial-attach", exclusive=True, exit_on_error=False)
    async def _take_up_all(self) -> None:
        """Take up every open session (after connecting, or reconnecting)."""
        link = engine(self).link
        listing = await link.request("serial.list")
        seen = set()
        for info in listing:
            seen.add(info["id"])
            await self._take_up(info["id"])
        for sid in set(self.sessions) - seen:
            del self.sessions[sid]
        self._note_devices()
        if self.current not in self.sessions:
            self.current = next(iter(self.sessions), None)
            self._show_current()
        try:
            self.ports = await link.request("serial.ports")
        except ControlError:
            self.ports = []
        self._show_hint()

    async def _take_up(self, sid: int) -> None:
        link = engine(self).link
        got = await link.request("serial.get", {"id": sid, "tail": ATTACH_TAIL})
        self.sessions[sid] = Session.attached(got)
        self._note_devices()
        if self.current is None or self.current == sid:
            self.current = sid
            self._show_current()

    def receive(self, event: dict[str, Any]) -> None:
        """One event of the serial topic."""
        sid = event.get("session")
        kind = event.get("kind")
        if not isinstance(sid, int):
            return
        session = self.sessions.get(sid)
        if kind == "opened" and session is None:
            self._take_up_one(sid)
            return
        if session is None:
            return
        if kind == "rx":
            data = base64.b64decode(event["data"])
            if session.received(int(event["offset"]), float(event["ts"]), data):
                self._fill_gap(sid)
        elif kind == "tx":
            session.sent(float(event["ts"]), base64.b64decode(event["data"]))
        elif kind == "state":
            session.changed(event["info"])
            self._note_devices()
        elif kind == "findings":
            session.report = event.get("report") or session.report
            self._show_findings()
        elif kind == "closed":
            del self.sessions[sid]
            self._note_devices()
            if self.current == sid:
                self.current = next(iter(self.sessions), None)
                self._show_current()
        if kind == "rx":
            return  # the counters follow in the status line's own time (see _tick)
        if sid == self.current:
            self._show_status()
        self._show_tabs()

    def _tick(self) -> None:
        session = self._current()
        if session is not None and session.buffer.end != self._shown_rx:
            self._shown_rx = session.buffer.end
            self._show_status()

    @work(group="serial-attach", exit_on_error=False)
    async def _take_up_one(self, sid: int) -> None:
        await self._take_up(sid)
        self._show_tabs()

    @work(group="serial-gap", exit_on_error=False)
    async def _fill_gap(self, sid: int) -> None:
        """Fetch what the events missed from the engine's scrollback (the session feeds what
        came meanwhile); again while a gap remains."""
        link = engine(self).link
        while (session := self.sessions.get(sid)) is not None and session.fetching:
            try:
                got = await link.request("serial.read", {"id": sid, "offset": session.gap_start})
            except ControlError:
                session.fill_failed()
                return
            session.fill(got)

    # -- typing --------------------------------------------------------------------------------

    @on(SerialView.Typed)
    def _typed_key(self, event: SerialView.Typed) -> None:
        event.stop()
        self.send(event.data)

    def send(self, data: bytes) -> None:
        """Queue bytes for the device; one request at a time keeps their order."""
        session = self._current()
        if session is None:
            self.app.notify("No serial session: Ctrl-T o opens a port.", severity="warning")
            return
        if session.info["state"] != "connected":
            self.app.notify(
                f"{clean(session.info['name'])} is {session.info['state']}:"
                f" {len(data)} bytes not sent.",
                severity="error",
                markup=False,
            )
            return
        self._typed += data
        if not self._sending:
            self._sending = True
            self._flush_typed(session.info["id"])

    @work(group="serial-send", exit_on_error=False)
    async def _flush_typed(self, sid: int) -> None:
        link = engine(self).link
        try:
            while self._typed:
                data = bytes(self._typed)
                self._typed.clear()
                try:
                    await link.request(
                        "serial.write", {"id": sid, "data": base64.b64encode(data).decode()}
                    )
                except ControlError as exc:
                    self._typed.clear()
                    self.app.notify(str(exc), severity="error", markup=False)
        finally:
            self._sending = False

    # -- prefix commands -----------------------------------------------------------------------

    @on(SerialView.Command)
    def _command(self, event: SerialView.Command) -> None:
        event.stop()
        resolved = self.commands.resolve(event.key)
        if resolved.kind == "prompt":
            self._show_status(resolved.value)
            return
        self._show_status()
        if resolved.kind == "pane":
            self.post_message(ShowPane(resolved.value))
        elif resolved.kind == "unknown":
            self.app.notify(resolved.value, severity="warning", markup=False)
        else:
            getattr(self, f"_cmd_{resolved.value}")()

    def _cmd_question_mark(self) -> None:
        rows = self.commands.listing()
        self.app.push_screen(HelpScreen("Serial commands", self.help_text, rows, []))

    def _cmd_h(self) -> None:
        self.view.set_mode("text" if self.view.mode == "hex" else "hex")
        self._show_status()

    def _cmd_w(self) -> None:
        self.view.set_wrap(not self.view.wrap)
        self._show_status()

    def _cmd_left(self) -> None:
        self._sideways(-1)

    def _cmd_right(self) -> None:
        self._sideways(1)

    def _sideways(self, direction: int) -> None:
        if self.view.wrap and self.view.mode == "text":
            self.app.notify(
                f"Long lines wrap: {self._prefix_name()} w cuts them, then they scroll sideways.",
                markup=False,
            )
            return
        self.view.scroll_sideways(direction * max(self.view.size.width // 2, 1))

    def _cmd_t(self) -> None:
        modes = STAMP_MODES
        self.view.set_stamps(modes[(modes.index(self.view.stamps) + 1) % len(modes)])
        self._show_status()

    def _cmd_l(self) -> None:
        if (session := self._current()) is not None:
            session.buffer.clear_view()
            self.view.show(session.buffer, session.info["started"])

    def _cmd_i(self) -> None:
        self.show_findings = not self._findings_shown()
        self._layout_findings()

    def _cmd_s(self) -> None:
        ids = list(self.sessions)
        if ids and self.current in ids:
            self.current = ids[(ids.index(self.current) + 1) % len(ids)]
            self._show_current()

    def _cmd_q(self) -> None:
        self.app.exit()

    def _cmd_f(self) -> None:
        if (session := self._current()) is not None:
            self.app.notify(
                f"Transcript: {clean(session.info['transcript'])}", markup=False, timeout=10
            )

    def _cmd_m(self) -> None:
        self._cycle("map_out", MAPS_OUT)

    def _cmd_M(self) -> None:
        self._cycle("map_in", MAPS_IN)

    def _cmd_e(self) -> None:
        if (session := self._current()) is not None:
            self._set({"echo": not session.info["settings"]["echo"]})

    def _cmd_b(self) -> None:
        self._ask_engine("serial.break", {}, "Break sent")

    def _cmd_d(self) -> None:
        self._ask_engine("serial.line", {"line": "dtr", "action": "toggle"}, "")

    def _cmd_r(self) -> None:
        self._ask_engine("serial.line", {"line": "rts", "action": "toggle"}, "")

    def _cmd_p(self) -> None:
        self._ask_engine("serial.line", {"line": "dtr", "action": "pulse", "ms": 250}, "DTR pulsed")

    def _cmd_R(self) -> None:
        self._ask_engine("serial.reconnect", {}, "Reconnecting")

    def _cmd_a(self) -> None:
        self._ask_engine("serial.login", {}, "", describe=login_result)

    def _cmd_c(self) -> None:
        self._ask_engine("serial.close", {}, "Session closed")

    def _cmd_n(self) -> None:
        if not self.view.find(older=True):
            self.app.notify("No older match.", markup=False)

    def _cmd_N(self) -> None:
        if not self.view.find(older=False):
            self.app.notify("No newer match.", markup=False)

    def _cmd_slash(self) -> None:
        def search(text: str | None) -> None:
            if text is None:
                return
            self.view.set_search(text)
            if text and not self.view.find(older=True):
                self.app.notify(f"{text!r} not found in the scrollback.", markup=False)
            self.view.focus()

        self.app.push_screen(NoteScreen("Search the scrollback", Content("Text to find:")), search)

    def _cmd_B(self) -> None:
        def baud(text: str | None) -> None:
            if text:
                self._set({"baud": text.strip()})

        self.app.push_screen(
            NoteScreen("Baud rate", Content("Any whole number, e.g. 115200:")), baud
        )

    def _cmd_x(self) -> None:
        self._macros()

    def _cmd_F(self) -> None:
        def chosen(text: str | None) -> None:
            if text:
                self._send_file(Path(text).expanduser())

        self.app.push_screen(NoteScreen("Send a file, raw", Content("Path of the file:")), chosen)

    def _cmd_o(self) -> None:
        found = ", ".join(p["by_id"] or p["device"] for p in self.ports) or "none listed"
        subject = Content(f"A path or URL, and optionally a baud rate (ports found: {found}):")

        def chosen(text: str | None) -> None:
            if text:
                port, _, baud = text.strip().partition(" ")
                self.open_port(port, {"baud": baud.strip()} if baud.strip() else {})

        self.app.push_screen(
            NoteScreen("Open a serial port", subject, placeholder="/dev/ttyUSB0 115200"), chosen
        )

    # -- what the commands ask of the engine ---------------------------------------------------

    @work(group="serial-open", exclusive=True, exit_on_error=False)
    async def open_port(self, port: str, settings: dict[str, Any]) -> tuple[int, bool] | None:
        """Open ``port`` in the engine and show it; a port already open is shown instead.
        The session's id, and whether this opened it."""
        link = engine(self).link
        try:
            info = await link.request("serial.open", {"port": port, "settings": settings})
        except ControlError as exc:
            if exc.code == "busy" and (sid := await self._session_of(port)) is not None:
                if sid not in self.sessions:
                    await self._take_up(sid)
                self.current = sid
                self._show_current()
                name = clean(self.sessions[sid].info["name"])
                self.app.notify(f"{name} is already open: shown in its tab ({sid}).", markup=False)
                return sid, False
            self.app.notify(str(exc), severity="error", markup=False, timeout=15)
            self._show_hint(str(exc))
            return None
        if info["id"] not in self.sessions:
            await self._take_up(info["id"])
        self.current = info["id"]
        self._show_current()
        return self.current, True

    async def _session_of(self, port: str) -> int | None:
        listing = await engine(self).link.request("serial.list")
        return next((i["id"] for i in listing if port in (i["port"], i["path"])), None)

    @work(group="serial-command", exit_on_error=False)
    async def _ask_engine(
        self, cmd: str, args: dict[str, Any], done: str, describe: Any = None
    ) -> None:
        session = self._current()
        if session is None:
            self.app.notify("No serial session.", severity="warning")
            return
        link = engine(self).link
        try:
            result = await link.request(cmd, {"id": session.info["id"], **args})
        except ControlError as exc:
            self.app.notify(str(exc), severity="error", markup=False, timeout=10)
            return
        if isinstance(result, dict) and "state" in result and cmd != "serial.close":
            session.info = {**session.info, **result}
            self._note_devices()
            self._show_status()
        message = describe(result) if describe else done
        if message:
            self.app.notify(message, markup=False)

    def _set(self, changes: dict[str, Any]) -> None:
        self._ask_engine("serial.set", {"settings": changes}, "")

    def _cycle(self, key: str, choices: tuple[str, ...]) -> None:
        session = self._current()
        if session is not None:
            now = session.info["settings"][key]
            self._set({key: choices[(choices.index(now) + 1) % len(choices)]})

    @work(group="serial-command", exit_on_error=False)
    async def _macros(self) -> None:
        macros = await engine(self).link.request("serial.macros")
        if not macros:
            self.app.notify("No macros: add them to [serial.macros] in the config.", markup=False)
            return
        names = ", ".join(sorted(macros))

        def chosen(name: str | None) -> None:
            if name:
                self._ask_engine("serial.macro", {"name": name.strip()}, f"Sent macro {name}")

        self.app.push_screen(NoteScreen("Send a macro", Content(f"Macro name ({names}):")), chosen)

    @work(group="serial-command", exit_on_error=False)
    async def _send_file(self, path: Path) -> None:
        session = self._current()
        if session is None:
            return
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.app.notify(f"{path}: {exc.strerror}", severity="error", markup=False)
            return
        link = engine(self).link
        for start in range(0, len(data), SEND_CHUNK):
            chunk = base64.b64encode(data[start : start + SEND_CHUNK]).decode()
            try:
                await link.request("serial.write", {"id": session.info["id"], "data": chunk})
            except ControlError as exc:
                self.app.notify(
                    f"{path}: stopped after {start} bytes: {exc}", severity="error", markup=False
                )
                return
        self.app.notify(f"Sent {path} ({human(len(data))}B)", markup=False)

    def session_for(self, device_id: int | str) -> int | None:
        """The open session attached to an inventory device, if there is one."""
        return next(
            (sid for sid, s in self.sessions.items() if s.info.get("device") == str(device_id)),
            None,
        )

    def show_session(self, sid: int) -> None:
        if sid in self.sessions:
            self.current = sid
            self._show_current()
            self.view.focus()

    # -- drawing -------------------------------------------------------------------------------

    def _current(self) -> Session | None:
        return self.sessions.get(self.current) if self.current is not None else None

    def _prefix_name(self) -> str:
        return self.commands.name

    def _note_devices(self) -> None:
        """Tell the app when the devices a session is attached to change."""
        devices = frozenset(d for s in self.sessions.values() if (d := s.device) is not None)
        if devices != self._devices:
            self._devices = devices
            self.post_message(SerialDevices(devices))

    def _show_current(self) -> None:
        session = self._current()
        if session is not None:
            self.view.show(session.buffer, session.info["started"])
            self.view.enter = session.enter
        self._show_tabs()
        self._show_status()
        self._show_findings()
        self._show_hint()

    def _show_tabs(self) -> None:
        parts: list[Content | str] = []
        for sid, session in self.sessions.items():
            marker = "●" if session.info["state"] == "connected" else "○"
            label = f" {marker} {sid} {clean(session.info['name'], limit=24)} "
            parts.append(Content.styled(label, "reverse") if sid == self.current else label)
        self.query_one("#serial-tabs", Static).update(Content.assemble(*parts))

    def _show_hint(self, problem: str = "") -> None:
        hint = self.query_one("#serial-hint", Static)
        if self.sessions and not problem:
            hint.add_class("hidden")
            return
        hint.remove_class("hidden")
        hint.update(hint_content(self.ports, self._prefix_name(), problem))

    def _show_status(self, note: str = "") -> None:
        status = self.query_one("#serial-status", Static)
        session = self._current()
        if session is None:
            status.update(
                Content(note or ("" if self.connected else "Not connected to the engine."))
            )
            return
        width = status.size.width or self.app.size.width
        view = self.view
        pieces = status_pieces(session, note, mode=view.mode, wrap=view.wrap, stamps=view.stamps,
                               prefix_name=self._prefix_name())  # fmt: skip
        status.update(fit_status(pieces, width))

    def _findings_shown(self) -> bool:
        if self.show_findings is not None:
            return self.show_findings
        return self.size.width >= WIDE

    def _layout_findings(self) -> None:
        self.query_one("#serial-findings").set_class(not self._findings_shown(), "hidden")

    def _show_findings(self) -> None:
        self._layout_findings()
        session = self._current()
        report = session.report if session else {}
        self.query_one("#serial-findings-text", Static).update(findings_content(report))
