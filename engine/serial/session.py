"""One serial session: a port kept open across unplugs, its transcript, its boot-log analysis
and the recent bytes for consoles that attach late.

A reader thread owns the port: it reads in batches (at most every ``READ_WINDOW``), writes the
transcript, feeds the analyser and hands each batch to the engine's loop. When the device goes
away it says so, keeps the session and polls for it to come back (by its ``/dev/serial/by-id``
name when it has one), reopening within ``REOPEN_POLL`` of its return. Writes come from the
loop (through a thread) and are refused, with a message, while the device is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import serial

from engine.scan.findings import Finding
from engine.serial.allow import PortRefused
from engine.serial.analyze import BootAnalyzer, split_lines
from engine.serial.ports import is_url, open_problem, short_name, stable_path
from engine.serial.settings import LineSettings
from engine.serial.transcript import TranscriptWriter

log = logging.getLogger(__name__)

READ_WINDOW = 0.01  # a batch is what arrived within this time (or 64 KiB)
READ_SIZE = 65536
REOPEN_POLL = 0.1
URL_REOPEN_POLL = 1.0
WRITE_TIMEOUT = 2.0
LINES_POLL = 0.5
MODEM_LINES = ("cts", "dsr", "cd", "ri")


class SerialProblem(Exception):
    """Something the technician can act on: the message says what and, where it can, how."""


class SerialSession:
    def __init__(
        self,
        sid: int,
        port: str,
        settings: LineSettings,
        transcript: TranscriptWriter,
        loop: asyncio.AbstractEventLoop,
        *,
        on_data: Callable[[SerialSession, int, float, bytes], None],
        on_change: Callable[[SerialSession], None],
        on_findings: Callable[[SerialSession, list[Finding]], None],
        check: Callable[[str], str],
        ring_bytes: int = 1 << 20,
        opener: Callable[..., serial.SerialBase] = serial.serial_for_url,
    ) -> None:
        self.id = sid
        self.port = port
        self.stable = stable_path(port)
        self.name = short_name(self.stable or port)
        self.settings = settings
        self.transcript = transcript
        self.analyzer = BootAnalyzer()
        self.started = time.time()
        self.state = "connecting"
        self.reason = ""
        self.rx = 0
        self.tx = 0
        self.reconnects = 0
        self.connected_since: float | None = None
        self.lines: dict[str, bool | None] = {"dtr": settings.dtr, "rts": settings.rts}
        self.lines.update(dict.fromkeys(MODEM_LINES))
        self.device: str | None = None  # the inventory device this is attached to
        self._loop = loop
        self._on_data = on_data
        self._on_change = on_change
        self._on_findings = on_findings
        self._check = check
        self._opener = opener
        self._port: serial.SerialBase | None = None
        self._stop = threading.Event()
        self._reopen_now = threading.Event()
        self._port_lock = threading.Lock()  # the port object and writes to it
        self._record_lock = threading.Lock()  # the transcript, the ring and the counters
        self._ring = bytearray()
        self._ring_start = 0
        self._ring_bytes = ring_bytes
        self._stamps: deque[tuple[int, float]] = deque()
        self._thread: threading.Thread | None = None

    # -- life cycle (blocking: call from a thread) --------------------------------------------

    def start(self, *, wait: bool = False) -> None:
        """Open the port and start reading. When it cannot be opened: raise
        :class:`SerialProblem`, or with ``wait`` start as if it had been unplugged (a port
        named in the config whose adapter is not plugged in yet). A port the policy refuses
        raises :class:`PortRefused`."""
        try:
            self._port = self._open()
        except (serial.SerialException, OSError, ValueError) as exc:
            if not wait:
                raise SerialProblem(open_problem(self.port, exc)) from None
            self.state = "reconnecting"
            self.reason = open_problem(self.port, exc)
            self.note(f"waiting for the device: {self.reason}")
        else:
            self._connected("opened")
        self._thread = threading.Thread(target=self._run, name=f"serial-{self.id}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._port_lock:
            port = self._port
            if port is not None:
                with contextlib.suppress(Exception):
                    port.cancel_read()
        if self._thread is not None:
            self._thread.join(5)
        self._drop_port()
        self.state = "closed"
        with self._record_lock:
            self.transcript.note("closed", time.time())
            self.transcript.close()

    # -- what the service asks (blocking: call from a thread) ----------------------------------

    def write(self, data: bytes) -> int:
        """Send ``data``; refused while the device is away (nothing is queued to surprise
        anyone later)."""
        with self._port_lock:
            port = self._port
            if port is None or self.state != "connected":
                raise SerialProblem(
                    f"{self.name} is {self.state}: {len(data)} bytes not sent"
                    + (f" ({self.reason})" if self.reason else "")
                )
            try:
                sent = port.write(data) or 0
            except serial.SerialTimeoutException:
                raise SerialProblem(
                    f"{self.name}: the device did not take the data within {WRITE_TIMEOUT:.0f} s"
                    " (flow control holding it?)"
                ) from None
            except (serial.SerialException, OSError) as exc:
                raise SerialProblem(f"{self.name}: write failed: {exc}; not sent") from None
        with self._record_lock:
            self.tx += sent
            self.transcript.sent(data[:sent], time.time())
            self.transcript.flush()
        return sent

    def apply(self, settings: LineSettings) -> None:
        """New settings, on the open port at once (and on every reopen after)."""
        with self._port_lock:
            port = self._port
            if port is not None:
                try:
                    port.apply_settings(settings.to_pyserial())
                except (serial.SerialException, OSError, ValueError) as exc:
                    raise SerialProblem(f"{self.name}: the port refused: {exc}") from None
            self.settings = settings
        self.note(f"settings {settings.describe()} map_out={settings.map_out}"
                  f" map_in={settings.map_in} echo={settings.echo}")  # fmt: skip
        self._changed()

    def set_line(self, name: str, action: str, pulse: float = 0.1) -> bool:
        """Set, clear, toggle or pulse DTR or RTS; returns the line's state after."""
        if name not in ("dtr", "rts"):
            raise SerialProblem(f"no line {name!r}: DTR or RTS")
        current = bool(self.lines.get(name))
        wanted = {"on": True, "off": False, "toggle": not current, "pulse": not current}
        if action not in wanted:
            raise SerialProblem(f"{action!r}: on, off, toggle or pulse")
        self._set_line(name, wanted[action])
        if action == "pulse":
            time.sleep(pulse)
            self._set_line(name, current)
        self.note(f"{name} {action}")
        self._changed()
        return bool(self.lines[name])

    def send_break(self, duration: float = 0.25) -> None:
        with self._port_lock:
            port = self._port
            if port is None or self.state != "connected":
                raise SerialProblem(f"{self.name} is {self.state}: break not sent")
            try:
                port.send_break(duration)
            except (serial.SerialException, OSError) as exc:
                raise SerialProblem(f"{self.name}: break not sent: {exc}") from None
        self.note(f"break {duration:.2f} s")

    def reconnect(self) -> None:
        """Close the port and open it again now (as after an unplug). Without the port's lock:
        a write held by flow control must not hold this up."""
        self._reopen_now.set()
        port = self._port
        if port is not None:
            with contextlib.suppress(Exception):
                port.cancel_read()

    def note(self, text: str) -> None:
        with self._record_lock:
            self.transcript.note(text, time.time())
            self.transcript.flush()

    def read(self, offset: int, limit: int) -> tuple[int, bytes, list[tuple[int, float]]]:
        """Received bytes from ``offset`` (or the oldest still kept), at most ``limit``, with
        the time each batch in them arrived."""
        with self._record_lock:
            start = max(offset, self._ring_start)
            begin = start - self._ring_start
            data = bytes(self._ring[begin : begin + limit])
            end = start + len(data)
            stamps = [(o, t) for o, t in self._stamps if o < end]
            # The batch that holds ``start`` began before it: its time applies from ``start``.
            first = [(start, t) for o, t in stamps if o <= start][-1:]
            return start, data, first + [(o, t) for o, t in stamps if o > start]

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "port": self.port,
            "path": self.stable or self.port,
            "name": self.name,
            "settings": self.settings.to_dict(),
            "describe": self.settings.describe(),
            "state": self.state,
            "reason": self.reason,
            "rx": self.rx,
            "tx": self.tx,
            "started": self.started,
            "connected_since": self.connected_since,
            "reconnects": self.reconnects,
            "lines": dict(self.lines),
            "transcript": str(self.transcript.path),
            "device": self.device,
            "findings": len(self.analyzer.report.findings),
        }

    # -- the reader thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._serve()
            except Exception as exc:  # a full disk, a closing loop: said, then tried again
                log.exception("serial %s: reader failed", self.name)
                self._lost(f"reader failed: {exc}")
                self._stop.wait(REOPEN_POLL)

    def _serve(self) -> None:
        last_poll = 0.0
        while not self._stop.is_set():
            port = self._port
            if port is None or self._reopen_now.is_set():
                self._reopen()
                continue
            try:
                data = port.read(READ_SIZE)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                # TypeError/AttributeError: pyserial reading a port closed under it.
                if not self._stop.is_set():
                    self._lost(str(exc))
                continue
            now = time.time()
            if data:
                self._received(data, now)
            with self._record_lock:
                pieces = self.transcript.pending(now)
                if pieces:
                    self.transcript.flush()
            if pieces:
                self._analyse(pieces)
            if now - last_poll >= LINES_POLL:
                last_poll = now
                self._poll_lines(port)

    def _received(self, data: bytes, now: float) -> None:
        with self._record_lock:
            offset = self.rx
            self.rx += len(data)
            self._ring += data
            self._stamps.append((offset, now))
            excess = len(self._ring) - self._ring_bytes
            if excess > 0:
                del self._ring[:excess]
                self._ring_start += excess
                while len(self._stamps) > 1 and self._stamps[1][0] <= self._ring_start:
                    self._stamps.popleft()
            lines = self.transcript.received(data, now)
            self.transcript.flush()  # a killed engine loses no whole line
        self._loop.call_soon_threadsafe(self._on_data, self, offset, now, data)
        if lines:
            self._analyse(lines)

    def _analyse(self, pieces: list[bytes]) -> None:
        found: list[Finding] = []
        try:
            for piece in pieces:
                for line in split_lines(piece, self.settings.map_in):
                    found += self.analyzer.feed_line(line)
        except Exception:  # the analyser must never stop the reading
            log.exception("serial %s: boot-log analysis failed", self.name)
        if found:
            self._loop.call_soon_threadsafe(self._on_findings, self, found)

    def _lost(self, why: str, *, reason: str = "") -> None:
        self._drop_port()
        self.state = "reconnecting"
        # pyserial's words for a device that went away mid-read.
        if "returned no data" in why or "Input/output error" in why:
            why = "unplugged or powered off"
        self.reason = reason or f"device gone: {why}"
        self.connected_since = None
        self.note(f"disconnected: {self.reason}")
        log.info("serial %s: %s", self.name, self.reason)
        self._changed()

    def _reopen(self) -> None:
        if self._reopen_now.is_set():
            self._reopen_now.clear()
            if self._port is not None:
                self._lost("", reason="reconnecting, as asked")
        path = self.stable or self.port
        if not is_url(path) and not os.path.exists(path):
            self._stop.wait(REOPEN_POLL)
            return
        try:
            port = self._open()
        except (serial.SerialException, OSError, ValueError, PortRefused) as exc:
            # Refused: the link now leads somewhere the policy does not open; said, and polled.
            reason = str(exc) if isinstance(exc, PortRefused) else open_problem(path, exc)
            if reason != self.reason and getattr(exc, "errno", None) != errno.ENOENT:
                self.reason = reason
                self._changed()
            self._stop.wait(URL_REOPEN_POLL if is_url(path) else REOPEN_POLL)
            return
        with self._port_lock:
            self._port = port
        self.reconnects += 1
        self._connected("reconnected")

    def _open(self) -> serial.SerialBase:
        # Checked at every open, and pyserial is given what was checked: a link may lead
        # elsewhere since the last open.
        path = self._check(self.stable or self.port)
        options: dict[str, Any] = {"timeout": READ_WINDOW, "write_timeout": WRITE_TIMEOUT}
        if not is_url(path):
            options["exclusive"] = True
        port = self._opener(path, do_not_open=True, **options, **self.settings.to_pyserial())
        port.dtr = bool(self.lines.get("dtr", self.settings.dtr))
        port.rts = bool(self.lines.get("rts", self.settings.rts))
        if hasattr(port, "_reset_input_buffer"):
            # pyserial's posix open flushes what is waiting; a device that has just come back
            # has started talking (its boot banner), and that is what the technician wants.
            port._reset_input_buffer = lambda: None
        port.open()
        return port

    def _connected(self, how: str) -> None:
        self.state = "connected"
        self.reason = ""
        self.connected_since = time.time()
        self.note(f"{how}: {self.stable or self.port} {self.settings.describe()}")
        self._changed()

    def _drop_port(self) -> None:
        with self._port_lock:
            port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    def _set_line(self, name: str, value: bool) -> None:
        with self._port_lock:
            port = self._port
            if port is not None:
                try:
                    setattr(port, name, value)
                except (serial.SerialException, OSError) as exc:
                    if getattr(exc, "errno", None) not in (errno.ENOTTY, errno.EINVAL):
                        raise SerialProblem(f"{self.name}: cannot set {name}: {exc}") from None
                    # A pty or a socket has no modem lines: the state is kept for a reopen.
            self.lines[name] = value

    def _poll_lines(self, port: serial.SerialBase) -> None:
        seen: dict[str, bool | None] = {}
        for name in MODEM_LINES:
            try:
                seen[name] = bool(getattr(port, name))
            except (serial.SerialException, OSError, AttributeError, NotImplementedError):
                seen[name] = None
        if any(self.lines.get(k) != v for k, v in seen.items()):
            self.lines.update(seen)
            self._changed()

    def _changed(self) -> None:
        self._loop.call_soon_threadsafe(self._on_change, self)
