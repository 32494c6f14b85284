"""A syslog receiver for devices that keep no log file we can read (cameras, routers, BusyBox
boards): their RFC 3164 and RFC 5424 messages over UDP and TCP, parsed into SyslogMessage.

One file, though long: parsing, TCP framing and the sockets are one path from the wire to a
SyslogMessage, sharing its error and its limits (max_message, what was cut, what was malformed).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.logwatch import timestamps
from engine.logwatch.filters import normal_host

log = logging.getLogger("iotsec.logwatch")

WARN_EVERY = 10.0  # seconds between two warnings about malformed messages and the like
EXCERPT = 48  # bytes of a malformed message quoted in its error
READ_BATCH = 256  # datagrams read in one turn of the loop, handed over as one batch

# Linux's socket options from asm-generic/socket.h that Python's socket module does not name.
# SO_RXQ_OVFL: each datagram read comes with the count of datagrams the kernel has dropped on
# the socket so far (its receive buffer was full). SO_RCVBUFFORCE: a receive buffer larger
# than net.core.rmem_max, for a process with CAP_NET_ADMIN.
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_DROPS_SPACE = socket.CMSG_SPACE(4)  # the drop count is a 32-bit integer

_PRI = re.compile(r"<(\d{1,3})>")
# An RFC 3164 TAG as senders really write it: "sshd[1234]:", "kernel:", "postfix/smtpd[9]:",
# and "dropbear[77]" with no colon.
_TAG = re.compile(r"([^\s\[\]:]+)(?:\[([^\]]*)\]:?|:)")
_OCTET_COUNT = re.compile(rb"(\d{1,10}) ")
_TERMINATOR = re.compile(rb"[\n\x00]")
_MONTH_NAMES = tuple(name.title() for name in timestamps.MONTHS)
# rsyslog's escape ("#012" for LF), so that a message cannot forge a second line for the filters.
_ESCAPE_CONTROLS = {code: f"#{code:03o}" for code in (*range(32), 127)}


class SyslogError(ValueError):
    """A message that is not syslog; the error says what is wrong and quotes its start."""


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    """One syslog message as received from ``peer``."""

    ts: float | None  # epoch seconds the message says it was written at; None when it does not
    hostname: str
    program: str
    pid: str
    message: str
    facility: int
    severity: int
    peer: str
    received: float = field(default_factory=time.time)

    def line(self) -> str:
        """The message as a classic syslog line ("Nov 24 13:45:01 gw sshd[1234]: Failed ..."),
        the form the log filters read, with control characters escaped as rsyslog does."""
        t = time.localtime(self.received if self.ts is None else self.ts)
        stamp = (
            f"{_MONTH_NAMES[t.tm_mon - 1]} {t.tm_mday:>2} "
            f"{t.tm_hour:02}:{t.tm_min:02}:{t.tm_sec:02}"
        )
        if not self.program:
            return f"{stamp} {self.hostname} {self.message}".translate(_ESCAPE_CONTROLS)
        pid = f"[{self.pid}]" if self.pid else ""
        line = f"{stamp} {self.hostname} {self.program}{pid}: {self.message}"
        return line.translate(_ESCAPE_CONTROLS)


def parse_message(data: bytes, peer: str, now: float | None = None) -> SyslogMessage:
    """One RFC 5424 or RFC 3164 message (``data``, one frame) sent by ``peer``, received at
    ``now`` (default: the current time); SyslogError when it is not syslog."""
    received = time.time() if now is None else now
    try:
        return _parse(data, peer, received)
    except SyslogError as exc:
        excerpt = repr(data[:EXCERPT]) + ("..." if len(data) > EXCERPT else "")
        raise SyslogError(f"{exc}: {excerpt}") from None


def _parse(data: bytes, peer: str, now: float) -> SyslogMessage:
    text = data.decode("utf-8", "replace").rstrip("\r\n\x00")
    if not text:
        raise SyslogError("empty message")
    pri = _PRI.match(text)
    if pri is None:
        if text.startswith("<"):
            raise SyslogError("<PRI> is not 1 to 3 digits closed by '>'")
        raise SyslogError("no <PRI> at the start")
    value = int(pri[1])
    if value > 191:
        raise SyslogError(f"PRI {value} is out of range (0 to 191)")
    rest = text[pri.end() :]
    if rest.startswith("1 "):
        ts, hostname, program, pid, message = _rfc5424(rest[2:])
    else:
        ts, hostname, program, pid, message = _rfc3164(rest, now)
    return SyslogMessage(
        ts=ts,
        hostname=hostname or peer,
        program=program,
        pid=pid,
        message=message.removeprefix("\ufeff"),
        facility=value >> 3,
        severity=value & 7,
        peer=peer,
        received=now,
    )


def _rfc5424(rest: str) -> tuple[float | None, str, str, str, str]:
    fields = rest.split(" ", 5)
    if len(fields) < 6:
        raise SyslogError(
            f"RFC 5424 header has {len(fields)} of its 6 fields after the version "
            "(TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA)"
        )
    stamp, hostname, app, procid, _msgid, tail = fields
    ts = None
    if stamp != "-":
        try:
            ts, after = timestamps.parse(stamp + " ")
        except timestamps.NoTime:
            after = stamp
        if after:
            raise SyslogError(f"RFC 5424 TIMESTAMP {stamp!r} is not a date and time")
    message = tail[_structured_data_end(tail) :].removeprefix(" ")
    return ts, _nil(hostname), _nil(app), _nil(procid), message


def _nil(value: str) -> str:
    return "" if value == "-" else value


def _structured_data_end(text: str) -> int:
    """The index just past the STRUCTURED-DATA at the start of ``text``."""
    if text.startswith("-"):
        return 1
    if not text.startswith("["):
        raise SyslogError("RFC 5424 STRUCTURED-DATA is neither '-' nor '[...]'")
    i = 0
    while i < len(text) and text[i] == "[":
        i += 1
        quoted = False
        while True:
            if i >= len(text):
                raise SyslogError("RFC 5424 STRUCTURED-DATA element is not closed by ']'")
            c = text[i]
            if quoted and c == "\\":
                i += 1  # \" \\ \] inside a PARAM-VALUE
            elif c == '"':
                quoted = not quoted
            elif c == "]" and not quoted:
                i += 1
                break
            i += 1
    return i


def _rfc3164(rest: str, now: float) -> tuple[float | None, str, str, str, str]:
    try:
        ts, rest = timestamps.parse(rest, now)
    except timestamps.NoTime:
        ts = None
    hostname = ""
    if ts is not None:
        head, _, tail = rest.partition(" ")
        # BusyBox syslogd and dropbear send no HOSTNAME: the TAG follows the time.
        if not _TAG.fullmatch(head):
            hostname, rest = head, tail
    tag = _TAG.match(rest)
    if tag is None:
        return ts, hostname, "", "", rest
    return ts, hostname, tag[1], tag[2] or "", rest[tag.end() :].removeprefix(" ")


class _Framer:
    """Splits a TCP stream into messages as RFC 6587 says: "LEN SP MSG" (octet counting) when a
    frame starts with a digit, otherwise one message per line, ended by LF or NUL. A frame
    longer than ``max_message`` is cut there and the rest of it skipped."""

    def __init__(self, max_message: int) -> None:
        self._max = max_message
        self._buffer = bytearray()
        self._skip = 0  # bytes still to come of an octet-counted frame that was cut
        self._dropping_line = False  # the rest of a line that was cut is still to come
        self._counted: tuple[int, int] | None = None  # (length, header) of a frame being read

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        """The frames that ``data`` completes, and how many of them were cut."""
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        cut = 0
        while buffer:
            if self._skip:
                skipped = min(self._skip, len(buffer))
                del buffer[:skipped]
                self._skip -= skipped
                continue
            if self._dropping_line:
                end = _TERMINATOR.search(buffer)
                if end is None:
                    buffer.clear()
                    break
                del buffer[: end.end()]
                self._dropping_line = False
                continue
            counted = _OCTET_COUNT.match(buffer)
            if counted:
                length = int(counted[1])
                take = min(length, self._max)
                if len(buffer) < counted.end() + take:
                    self._counted = (length, counted.end())
                    break
                self._counted = None
                frames.append(bytes(buffer[counted.end() : counted.end() + take]))
                del buffer[: counted.end() + take]
                if length > take:
                    self._skip = length - take
                    cut += 1
                continue
            if len(buffer) <= 10 and buffer.isdigit():
                break  # the rest of an octet count is still to come
            end = _TERMINATOR.search(buffer)
            if end is None:
                if len(buffer) <= self._max:
                    break
                frames.append(bytes(buffer[: self._max]))
                buffer.clear()
                self._dropping_line = True
                cut += 1
                break
            if end.start() > self._max:
                cut += 1
            frames.append(bytes(buffer[: min(end.start(), self._max)]))
            del buffer[: end.end()]
        return [frame for frame in frames if frame.strip(b" \t\r\n\x00")], cut

    @property
    def held(self) -> int:
        """Bytes of an unfinished message held (at most ``max_message`` and a count)."""
        return len(self._buffer)

    def end(self) -> bytes:
        """The last message when the sender closes without ending it with LF; SyslogError when
        it closed inside an octet-counted frame."""
        if self._counted is not None:
            length, header = self._counted
            raise SyslogError(
                f"connection closed {len(self._buffer) - header} bytes into a frame of {length}"
            )
        if self._skip or self._dropping_line or not self._buffer.strip(b" \t\r\n\x00"):
            return b""
        return bytes(self._buffer)


class SyslogReceiver:
    """Listens for syslog over UDP (a message per datagram) and TCP (RFC 6587 framing) and
    passes the parsed messages to ``handler`` on the event loop, a list per turn of reading
    (up to READ_BATCH datagrams) or per chunk read from a connection.

    ``received`` counts every message that arrived, ``malformed`` those that were not syslog
    (``last_error`` says from whom and why), ``cut`` those longer than ``max_message``, which
    are cut there. A malformed message never stops the receiver.

    What it holds is bounded: ``udp_dropped`` is the kernel's count of datagrams that found
    the receive buffer (``udp_buffer`` bytes) full; at most ``max_connections`` TCP
    connections are open (``refused`` counts those closed at once for being one too many),
    each holding at most ``max_message`` bytes of an unfinished message, and one that sends
    nothing for ``idle_timeout`` seconds is closed (``timed_out``).
    """

    def __init__(
        self,
        handler: Callable[[list[SyslogMessage]], None],
        address: str = "127.0.0.1",
        port: int = 5514,
        udp: bool = True,
        tcp: bool = True,
        max_message: int = 8192,
        udp_buffer: int = 0,
        max_connections: int = 100,
        idle_timeout: float = 300.0,
    ) -> None:
        """``udp_buffer``: the receive buffer to ask the kernel for (0: the system's)."""
        if not (udp or tcp):
            raise ValueError("a syslog receiver needs UDP, TCP or both")
        self.handler = handler
        self.address = address
        self.port = port
        self.udp = udp
        self.tcp = tcp
        self.max_message = max_message
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.udp_port: int | None = None
        self.tcp_port: int | None = None
        # Once bound, as the kernel reports it: twice what was asked, for its bookkeeping.
        self.udp_buffer: int | None = None
        self.received = 0
        self.malformed = 0
        self.cut = 0
        self.udp_dropped = 0
        self.refused = 0
        self.timed_out = 0
        self.last_error: str | None = None
        self.connections: set[_StreamProtocol] = set()
        self._asked_buffer = udp_buffer
        self._datagrams: _DatagramReader | None = None
        self._server: asyncio.Server | None = None
        self._warned: dict[str, tuple[float, int]] = {}  # kind -> (logged at, unlogged since)

    async def start(self) -> None:
        """Bind the UDP and TCP sockets; OSError naming the address and port when one cannot."""
        loop = asyncio.get_running_loop()
        if self.udp:
            try:
                sock = self._udp_socket()
            except OSError as exc:
                raise self._bind_error("UDP", exc) from exc
            self._datagrams = _DatagramReader(self, sock)
            self.udp_port = sock.getsockname()[1]
            self.udp_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if self.tcp:
            try:
                self._server = await loop.create_server(
                    lambda: _StreamProtocol(self), self.address, self.port
                )
            except OSError as exc:
                await self.stop()
                raise self._bind_error("TCP", exc) from exc
            self.tcp_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close both sockets and every TCP connection; returns once they are closed, so that
        the ports can be bound again."""
        if self._datagrams is not None:
            self._datagrams.close()
            self._datagrams = None
        if self._server is not None:
            self._server.close()
            # Server.close leaves accepted connections open (before Python 3.13).
            closing = list(self.connections)
            for connection in closing:
                connection.close()
            await self._server.wait_closed()
            self._server = None
            await asyncio.gather(*(connection.closed for connection in closing))

    def _udp_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            if self._asked_buffer:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self._asked_buffer)
                except PermissionError:  # no CAP_NET_ADMIN: the kernel caps it at rmem_max
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._asked_buffer)
            sock.bind((self.address, self.port))
        except OSError:
            sock.close()
            raise
        return sock

    def _bind_error(self, transport: str, exc: OSError) -> OSError:
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else str(exc)
        if exc.errno == errno.EACCES and self.port < 1024:
            reason += " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        where = f"[{self.address}]" if ":" in self.address else self.address
        message = f"cannot listen for syslog on {transport} {where} port {self.port}: {reason}"
        return OSError(exc.errno, message)

    def _deliver(self, frames: list[tuple[bytes, str]]) -> None:
        """Parse ``frames`` (each with its sender) and hand the messages over as one batch."""
        now = time.time()
        batch: list[SyslogMessage] = []
        for frame, peer in frames:
            self.received += 1
            try:
                batch.append(parse_message(frame, peer, now))
            except SyslogError as exc:
                self._malformed(peer, str(exc))
        if not batch:
            return
        # asyncio closes a transport whose callback raises: a bug in one consumer would stop
        # all syslog reception, so it is logged instead.
        try:
            self.handler(batch)
        except Exception:
            log.exception("syslog handler failed on %d messages", len(batch))

    def _malformed(self, peer: str, problem: str) -> None:
        self.malformed += 1
        self.last_error = f"malformed syslog message from {peer}: {problem}"
        self._warn("malformed", self.last_error)

    def _cut(self, peer: str, count: int) -> None:
        self.cut += count
        self._warn("cut", f"syslog message from {peer} longer than {self.max_message} bytes: cut")

    def _warn(self, kind: str, problem: str) -> None:
        """Log ``problem``, unless one of its ``kind`` was logged less than WARN_EVERY ago: a
        flood of junk does not flood the log (the counters say how many)."""
        now = time.monotonic()
        logged, unlogged = self._warned.get(kind, (-math.inf, 0))
        if now - logged < WARN_EVERY:
            self._warned[kind] = (logged, unlogged + 1)
            return
        more = f" ({unlogged} more since the last warning)" if unlogged else ""
        log.warning("%s%s", problem, more)
        self._warned[kind] = (now, 0)


def _peer(address: tuple) -> str:
    # A dual-stack socket reports IPv4 senders as ::ffff:a.b.c.d; jails and bans want a.b.c.d.
    return normal_host(address[0])


class _DatagramReader:
    """The UDP socket, read with recvmsg when the loop finds it readable (asyncio's datagram
    transport cannot give the ancillary data the kernel's drop count comes in)."""

    def __init__(self, receiver: SyslogReceiver, sock: socket.socket) -> None:
        self._receiver = receiver
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._read)

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _read(self) -> None:
        receiver = self._receiver
        frames: list[tuple[bytes, str]] = []
        # A bounded turn: a flood of datagrams still leaves the loop its other work.
        for _ in range(READ_BATCH):
            try:
                data, ancillary, flags, address = self._sock.recvmsg(
                    receiver.max_message, _DROPS_SPACE
                )
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                receiver._warn("udp", f"syslog: reading UDP failed: {exc}")
                break
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL:
                    # Cumulative since the socket was made (and only sent once it is not 0).
                    receiver.udp_dropped = int.from_bytes(value[:4], sys.byteorder)
            peer = _peer(address)
            if flags & socket.MSG_TRUNC:
                receiver._cut(peer, 1)
            frames.append((data, peer))
        if frames:
            receiver._deliver(frames)


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self._receiver = receiver
        self._framer = _Framer(receiver.max_message)
        self._peer = ""
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()  # when it last sent something
        self._idle: asyncio.TimerHandle | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.closed = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._peer = _peer(transport.get_extra_info("peername"))
        receiver = self._receiver
        if len(receiver.connections) >= receiver.max_connections:
            receiver.refused += 1
            receiver._warn(
                "refused",
                f"syslog: TCP connection from {self._peer} closed: {receiver.max_connections}"
                " are open already (logwatch.syslog.max_connections)",
            )
            self.close()
            return
        receiver.connections.add(self)
        self._idle = self._loop.call_later(receiver.idle_timeout, self._check_idle)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _check_idle(self) -> None:
        # One timer a connection, moved on when it fires, instead of one set per read.
        timeout = self._receiver.idle_timeout
        quiet = self._loop.time() - self._last
        if quiet < timeout:
            self._idle = self._loop.call_later(timeout - quiet, self._check_idle)
            return
        self._receiver.timed_out += 1
        held = self._framer.held
        dropped = f" ({held} bytes of an unfinished message dropped)" if held else ""
        self._receiver._warn(
            "idle",
            f"syslog: TCP connection from {self._peer} closed: nothing sent for {timeout:g} s"
            f" (logwatch.syslog.idle_timeout){dropped}",
        )
        self.close()

    def data_received(self, data: bytes) -> None:
        self._last = self._loop.time()
        frames, cut = self._framer.feed(data)
        if cut:
            self._receiver._cut(self._peer, cut)
        if frames:
            self._receiver._deliver([(frame, self._peer) for frame in frames])

    def eof_received(self) -> bool:
        try:
            last = self._framer.end()
        except SyslogError as exc:
            self._receiver.received += 1
            self._receiver._malformed(self._peer, str(exc))
            return False
        if last:
            self._receiver._deliver([(last, self._peer)])
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._receiver.connections.discard(self)
        self.closed.set_result(None)
