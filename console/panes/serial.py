"""The Serial pane: the engine's serial sessions, one shown at a time in a terminal view, with
a status line (port, state, settings, RX/TX, line states: what does not fit is left out, the
least useful first) and the boot-log findings beside it.

Keys typed in the view go to the device; console commands follow the prefix key (Ctrl-T, as in
tio; ``[serial] prefix``), and ``prefix ?`` lists them. Received bytes arrive as events on the
``serial`` topic; a gap (events the console missed) is filled from the engine's scrollback.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from console import severity
from console.panes.traffic_rows import human
from console.screens.help import HelpScreen
from console.screens.prompts import NoteScreen
from console.serial.buffer import SerialBuffer
from console.serial.render import stamp
from console.serial.view import STAMP_MODES, SerialView
from console.untrusted import clean
from engine.control.protocol import ControlError

ATTACH_TAIL = 256 * 1024
SEND_CHUNK = 4096
MAPS_OUT = ("cr", "lf", "crlf")
MAPS_IN = ("lf", "cr", "crlf")
WIDE = 100  # the findings column shows from this width up
STATUS_EVERY = 0.25  # the RX counter is redrawn at most this often

# The prefix commands: key, what it does (``prefix ?`` lists them in this order).
COMMANDS: list[tuple[str, str, str]] = [
    ("?", "question_mark", "list these commands"),
    ("B", "B", "change the baud rate"),
    ("m", "m", "line ending sent for Enter: CR, LF, CR LF"),
    ("M", "M", "line ending received: LF, CR, CR LF"),
    ("e", "e", "local echo on/off"),
    ("h", "h", "hex view on/off"),
    ("w", "w", "long lines: wrap them, or cut them (then ←/→ scroll sideways)"),
    ("←/→", "left", "scroll cut lines sideways"),
    ("t", "t", "timestamps: off, absolute, relative, delta"),
    ("b", "b", "send a break"),
    ("d", "d", "toggle DTR"),
    ("r", "r", "toggle RTS"),
    ("p", "p", "pulse DTR (reset many boards)"),
    ("x", "x", "send a macro ([serial.macros])"),
    ("F", "F", "send a file, raw"),
    ("f", "f", "log file: where this session's transcript is"),
    ("a", "a", "try default credentials at a login prompt (opt-in)"),
    ("/", "slash", "search the scrollback"),
    ("n", "n", "next (older) match; N: newer"),
    ("l", "l", "clear the view"),
    ("R", "R", "reconnect now"),
    ("o", "o", "open another port"),
    ("s", "s", "switch to the next session"),
    ("c", "c", "close this session"),
    ("i", "i", "findings column on/off"),
    ("1-3", "1", "show the Traffic, Devices or Alerts pane (in the console)"),
    ("q", "q", "quit"),
]
PANES = ("traffic", "devices", "alerts", "serial")


@dataclass
class Session:
    info: dict[str, Any]
    buffer: SerialBuffer
    report: dict[str, Any] = field(default_factory=dict)
    pending: list[tuple[int, float, bytes]] = field(default_factory=list)
    fetching: bool = False


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

    def __init__(self, *, prefix: str = "ctrl+t", id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Serial"
        self.prefix = prefix.strip().lower()
        self.sessions: dict[int, Session] = {}
        self.current: int | None = None
        self.ports: list[dict[str, Any]] = []
        self.show_findings: bool | None = None  # None: by the width
        self.connected = False
        self._typed = bytearray()
        self._sending = False
        self._shown_rx = -1

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
        link = self.app.link  # type: ignore[attr-defined]
        listing = await link.request("serial.list")
        seen = set()
        for info in listing:
            seen.add(info["id"])
            await self._take_up(info["id"])
        for sid in set(self.sessions) - seen:
            del self.sessions[sid]
        if self.current not in self.sessions:
            self.current = next(iter(self.sessions), None)
            self._show_current()
        try:
            self.ports = await link.request("serial.ports")
        except ControlError:
            self.ports = []
        self._show_hint()

    async def _take_up(self, sid: int) -> None:
        link = self.app.link  # type: ignore[attr-defined]
        got = await link.request("serial.get", {"id": sid, "tail": ATTACH_TAIL})
        buffer = SerialBuffer(map_in=got["settings"]["map_in"])
        buffer.reset(got["offset"])
        _feed_stamped(buffer, got["offset"], base64.b64decode(got["data"]), got["stamps"])
        session = Session(got, buffer, got.get("report") or {})
        self.sessions[sid] = session
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
            self._feed(sid, session, int(event["offset"]), float(event["ts"]), data)
        elif kind == "tx":
            typed = base64.b64decode(event["data"])
            session.info["tx"] = session.info.get("tx", 0) + len(typed)
            if session.info["settings"].get("echo"):
                session.buffer.local(float(event["ts"]), typed)
        elif kind == "state":
            before = session.info["state"]
            session.info = {**session.info, **event["info"]}
            session.buffer.set_map_in(session.info["settings"]["map_in"])
            if (marker := _marker(before, session.info)) is not None:
                session.buffer.mark(time.time(), marker)
        elif kind == "findings":
            session.report = event.get("report") or session.report
            self._show_findings()
        elif kind == "closed":
            del self.sessions[sid]
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

    def _feed(self, sid: int, session: Session, offset: int, ts: float, data: bytes) -> None:
        if session.fetching:
            session.pending.append((offset, ts, data))
            return
        if session.buffer.feed(offset, ts, data):
            session.fetching = True
            session.pending.append((offset, ts, data))
            self._fill_gap(sid)

    @work(group="serial-gap", exit_on_error=False)
    async def _fill_gap(self, sid: int) -> None:
        """Fetch what the events missed from the engine's scrollback, then feed what came
        meanwhile; again while a gap remains."""
        link = self.app.link  # type: ignore[attr-defined]
        while (session := self.sessions.get(sid)) is not None and session.fetching:
            try:
                got = await link.request("serial.read", {"id": sid, "offset": session.buffer.end})
            except ControlError:
                session.fetching = False
                session.pending.clear()
                return
            if got["offset"] > session.buffer.end:  # older than the engine keeps
                session.buffer.skip_to(got["offset"])
            _feed_stamped(
                session.buffer, got["offset"], base64.b64decode(got["data"]), got["stamps"]
            )
            pending, session.pending = session.pending, []
            session.fetching = False
            for n, (offset, ts, data) in enumerate(pending):
                if session.buffer.feed(offset, ts, data):
                    session.fetching = True  # still a hole: fetch again, keep the rest
                    session.pending = pending[n:] + session.pending
                    break

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
        link = self.app.link  # type: ignore[attr-defined]
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
        key = event.key
        if key == self.prefix:
            self._show_status(f"{self._prefix_name()}: command? (? lists them)")
            return
        self._show_status()
        if key in "1234" and len(key) == 1 and hasattr(self.app, "action_show_pane"):
            self.app.action_show_pane(PANES[int(key) - 1])
            return
        handler = getattr(self, f"_cmd_{key}", None)
        if handler is None:
            self.app.notify(
                f"{self._prefix_name()} {key}: no such command (? lists them)",
                severity="warning",
                markup=False,
            )
            return
        handler()

    def _cmd_question_mark(self) -> None:
        rows = [(f"{self._prefix_name()} {shown}", what) for shown, _key, what in COMMANDS]
        rows.append((f"{self._prefix_name()} {self._prefix_name()}", "send the prefix key itself"))
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
        self._ask_engine("serial.login", {}, "", describe=_login_result)

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
        link = self.app.link  # type: ignore[attr-defined]
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
        listing = await self.app.link.request("serial.list")  # type: ignore[attr-defined]
        return next((i["id"] for i in listing if port in (i["port"], i["path"])), None)

    @work(group="serial-command", exit_on_error=False)
    async def _ask_engine(
        self, cmd: str, args: dict[str, Any], done: str, describe: Any = None
    ) -> None:
        session = self._current()
        if session is None:
            self.app.notify("No serial session.", severity="warning")
            return
        link = self.app.link  # type: ignore[attr-defined]
        try:
            result = await link.request(cmd, {"id": session.info["id"], **args})
        except ControlError as exc:
            self.app.notify(str(exc), severity="error", markup=False, timeout=10)
            return
        if isinstance(result, dict) and "state" in result and cmd != "serial.close":
            session.info = {**session.info, **result}
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
        macros = await self.app.link.request("serial.macros")  # type: ignore[attr-defined]
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
        link = self.app.link  # type: ignore[attr-defined]
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
        return self.prefix.replace("ctrl+", "Ctrl-").title().replace("Ctrl-", "Ctrl-")

    def _show_current(self) -> None:
        session = self._current()
        if session is not None:
            self.view.show(session.buffer, session.info["started"])
            self.view.enter = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}[
                session.info["settings"]["map_out"]
            ]
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
        # Our own lines are joined with real newlines; only the port names and the engine's
        # problem came from elsewhere, so only they are escaped.
        found = ", ".join(clean(p["by_id"] or p["device"]) for p in self.ports) or "none listed"
        lines = [
            f"No serial session. {self._prefix_name()} o opens a port by path or URL"
            " (ptys are not listed: type their path).",
            f"Ports found: {found}",
        ]
        if problem:
            lines.insert(0, clean(problem, limit=300))
        hint.update(Content("\n".join(lines)))

    def _show_status(self, note: str = "") -> None:
        status = self.query_one("#serial-status", Static)
        session = self._current()
        if session is None:
            status.update(
                Content(note or ("" if self.connected else "Not connected to the engine."))
            )
            return
        width = status.size.width or self.app.size.width
        status.update(fit_status(self._status_pieces(session, note), width))

    def _status_pieces(self, session: Session, note: str) -> list[tuple[int, Content]]:
        """The status line's pieces in the order shown, each with its rank: when the line is
        too wide, the highest ranks are left out first."""
        info = session.info
        state = info["state"]
        style = {"connected": "green", "reconnecting": "bold red"}.get(state, "yellow")
        pieces = []
        if note:
            pieces.append((0, Content.styled(note, "bold")))
        name = Content.styled(clean(info["name"], limit=24), "bold")
        pieces.append((0, Content.assemble(name, " ", Content.styled(state, style))))
        if state != "connected" and info.get("reason"):
            pieces.append((1, Content.styled(clean(info["reason"], limit=80), "red")))
        pieces.append((2, Content(info["describe"])))
        pieces.append((3, Content(f"RX {human(session.buffer.end)}B TX {human(info['tx'])}B")))
        lines = [
            Content.styled(line.upper(), "bold" if value else "dim strike")
            for line, value in info["lines"].items()
            if value is not None
        ]
        if lines:
            pieces.append((6, Content(" ").join(lines)))
        settings = info["settings"]
        flags = [f"{settings['map_out']}/{settings['map_in']}"]
        if settings.get("echo"):
            flags.append("echo")
        if self.view.mode == "hex":
            flags.append("hex")
        elif not self.view.wrap:
            flags.append("cut")
        if self.view.stamps != "off":
            flags.append(f"ts:{self.view.stamps}")
        pieces.append((5, Content(" ".join(flags))))
        pieces.append((4, Content.styled(f"{self._prefix_name()} ? commands", "dim")))
        return pieces

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
        findings = sorted(
            report.get("findings", []), key=lambda f: -severity.RANK.get(f["severity"], 0)
        )
        parts: list[Content | str] = [Content.styled("Boot log\n", "bold")]
        for label, value in _facts(report):
            parts.append(
                Content.assemble(Content.styled(f"{label} ", "dim"), clean(value, limit=60), "\n")
            )
        if findings:
            parts.append(Content.styled("\nFindings\n", "bold"))
        for f in findings:
            parts.append(
                Content.assemble(
                    Content.styled(severity.LABEL[f["severity"]], severity.STYLE[f["severity"]]),
                    " ",
                    clean(f["title"], limit=120),
                    "\n",
                )
            )
        if not findings and not _facts(report):
            parts.append(Content.styled("Nothing yet: findings appear as the device boots.", "dim"))
        self.query_one("#serial-findings-text", Static).update(Content.assemble(*parts))


def fit_status(pieces: list[tuple[int, Content]], width: int) -> Content:
    """The pieces joined, leaving out the highest ranks until they fit in ``width``; a piece
    still too long for what is left (a long reason) is cut at a word, with an ellipsis."""
    kept = list(pieces)

    def length() -> int:
        return sum(p.cell_length for _, p in kept) + 2 * (len(kept) - 1)

    while length() > width and (worst := max(rank for rank, _ in kept)) > 0:
        at = max(n for n, (rank, _) in enumerate(kept) if rank == worst)
        if worst == 1 and len(kept) > 1:
            piece = kept[at][1]
            room = width - (length() - piece.cell_length)
            if room >= 12:
                kept[at] = (0, _shorten(piece, room))
                continue
        del kept[at]
    return Content("  ").join(p for _, p in kept)


def _shorten(piece: Content, room: int) -> Content:
    """``piece`` cut to ``room`` cells at the last space that fits, with an ellipsis."""
    text = piece.plain
    cut = text.rfind(" ", 0, room)
    return piece[: cut if cut > 0 else room - 1] + "…"


def _marker(before: str, info: dict[str, Any]) -> str | None:
    """The line the view gets when a session's state changes: unplugged, or back."""
    after = info["state"]
    if before == "connected" and after == "reconnecting":
        at = stamp("absolute", time.time(), 0, None).strip()
        reason = f" {clean(info['reason'], limit=120)}" if info.get("reason") else ""
        return f"[disconnected {at}]{reason}"
    if before == "reconnecting" and after == "connected":
        since = info.get("connected_since") or time.time()
        return f"[reconnected {stamp('absolute', since, 0, None).strip()}]"
    return None


def _facts(report: dict[str, Any]) -> list[tuple[str, str]]:
    facts = []
    loader = report.get("bootloader") or {}
    if loader.get("name"):
        facts.append(("Loader", f"{loader['name']} {loader.get('version') or ''}".strip()))
    if (kernel := report.get("kernel") or {}).get("version"):
        facts.append(("Linux", kernel["version"]))
    if (busybox := report.get("busybox") or {}).get("version"):
        facts.append(("BusyBox", busybox["version"]))
    if report.get("mtd"):
        facts.append(("MTD", ", ".join(p["name"] for p in report["mtd"])))
    if (identity := report.get("identity") or {}).get("mac"):
        facts.append(("MAC", identity["mac"]))
    return facts


def _feed_stamped(buffer: SerialBuffer, offset: int, data: bytes, stamps: list[Any]) -> None:
    """Feed fetched bytes batch by batch, so each keeps the time it arrived."""
    edges = [(int(o), float(t)) for o, t in stamps] or [(offset, time.time())]
    for n, (start, ts) in enumerate(edges):
        end = edges[n + 1][0] if n + 1 < len(edges) else offset + len(data)
        buffer.feed(start, ts, data[start - offset : end - offset])


def _login_result(result: dict[str, Any]) -> str:
    if result.get("works"):
        works = result["works"]
        return f"Default login works: {works['user']} / {works['password'] or '(empty)'}"
    return f"No default login worked: {result.get('reason', '')} ({result.get('tried', 0)} tried)"
