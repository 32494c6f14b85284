"""The control server: a Unix socket (mode 0660) where each connection is one operator.

The peer's uid names the operator and the config gives the role; each command declares the
least role it needs. Requests on one connection run concurrently (responses carry the request
id), so a client may pipeline many; every state-changing command lands in the audit chain.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import ipaddress
import logging
import os
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.alerts.manager import (
    AlertError,
    fetch_alert,
    fetch_history,
    query_alerts,
    silence_counts,
)
from engine.control import identity
from engine.control.auth import peer_credentials, role_for, user_name
from engine.control.protocol import (
    MAX_LINE,
    PROTOCOL_VERSION,
    ControlError,
    decode_request,
    encode,
)
from engine.control.schema import Duration, Flag, Int, Number, Object, Schema, Text, Texts, validate
from engine.devices.model import query_findings
from engine.durations import parse_duration
from engine.events import TOPICS, Subscriber
from engine.fileperms import PermissionProblem, private_dir, usable_group
from engine.model import AlertEvent, AlertState, Operator, Role, Severity
from engine.serial import ports as serial_ports
from engine.serial.service import query_sessions
from engine.text import printable

if TYPE_CHECKING:
    from engine.daemon import Engine

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 1024
Handler = Callable[["Session", dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Command:
    handler: Handler
    role: Role
    changes_state: bool
    help: str
    args: Schema


COMMANDS: dict[str, Command] = {}


def command(name: str, role: Role = Role.VIEWER, *, changes_state: bool = False, help: str = "",
            args: Schema | None = None):  # fmt: skip
    """Register a command with the least role it needs and the arguments it takes."""

    def register(fn: Handler) -> Handler:
        COMMANDS[name] = Command(fn, role, changes_state, help or (fn.__doc__ or "").strip(),
                                args or {})  # fmt: skip
        return fn

    return register


class Session:
    """One client connection: who it is, its subscription, its writer."""

    def __init__(self, engine: Engine, operator: Operator, writer: asyncio.StreamWriter,
                 pid: int = 0, on_cut_off: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.engine = engine
        self.on_cut_off = on_cut_off
        self.operator = operator
        self.writer = writer
        self.pid = pid
        self.client = "unknown"
        self.greeted = False
        # The address the client says its SSH session comes from, verified or not: it keeps
        # this client's own bans off it (only a verified one protects it from everyone's).
        self.claimed_ssh_client = ""
        self.cut_off = False  # disconnected for not reading its replies
        self.subscriber: Subscriber | None = None
        self.forwarder: asyncio.Task[None] | None = None
        self._events = asyncio.Lock()

    def pending(self) -> int:
        """Bytes written for this client that it has not read yet."""
        transport = self.writer.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def over_bound(self, extra: int = 0) -> bool:
        """Whether ``extra`` more bytes would pass [control] max_pending_bytes; if so the
        client is disconnected (once, with one log line)."""
        bound = self.engine.config.control.max_pending_bytes
        waiting = self.pending()
        if waiting + extra <= bound:
            return False
        if not self.writer.is_closing():
            log.warning("disconnected %s (pid %s, %s): %d bytes of replies wait unread, over"
                        " [control] max_pending_bytes (%d)", self.operator.name, self.pid,
                        printable(self.client), waiting + extra, bound)  # fmt: skip
            self.cut_off = True
            self.writer.transport.abort()  # drops what waits: the memory comes back now
            if self.on_cut_off is not None:
                self.on_cut_off()
        return True

    async def send(self, message: dict[str, Any]) -> None:
        """A reply, written at once (replies never wait behind each other)."""
        if self.writer.is_closing():
            return
        data = encode(message)
        if not self.over_bound(len(data)):
            self.writer.write(data)

    async def send_event(self, line: bytes) -> None:
        """An event (one JSON line as the bus encoded it, once for every subscriber): waits
        while the client is behind, so the subscriber's bounded queue (which drops and
        counts) takes up the slack instead of the socket's buffer."""
        async with self._events:
            if self.writer.is_closing():
                raise ConnectionError("closed")
            await self.writer.drain()
            if not self.writer.is_closing() and not self.over_bound(len(line)):
                self.writer.write(line)


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Send what is written, then read what the client sent until it hangs up too: a Unix socket
    closed with unread input resets the connection, and the client could lose the reason."""
    await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
    while await reader.read(1 << 16):
        pass


class _HelloWatchdog:
    """Closes a connection that sits idle for ``idle`` seconds without having said hello (it
    would hold a connection slot for nothing). One timer per connection, re-armed from the
    time of the last request, so a busy connection costs nothing per request."""

    def __init__(self, session: Session, idle: float) -> None:
        self.session = session
        self.idle = idle
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self._timer = self.loop.call_at(self.last + idle, self._check)

    def _check(self) -> None:
        session = self.session
        if session.greeted or session.writer.is_closing():
            return
        due = self.last + self.idle
        if self.loop.time() < due:
            self._timer = self.loop.call_at(due, self._check)
            return
        log.warning("closed a control connection of %s (pid %s): idle without a hello"
                    " ([control] hello_timeout)", session.operator.name, session.pid)  # fmt: skip
        session.writer.close()

    def cancel(self) -> None:
        self._timer.cancel()


class ControlServer:
    def __init__(self, engine: Engine, path: Path, group: str = "iotsec") -> None:
        self.engine = engine
        self.path = Path(path)
        self.group = group
        self.sessions: set[Session] = set()
        self.refused = 0
        self.cut_off = 0  # clients disconnected for not reading their replies
        self._refusals_logged: dict[tuple[int, str], tuple[float, int]] = {}
        self._server: asyncio.base_events.Server | None = None

    async def claim(self) -> None:
        """Make sure the socket path is ours to take: a private directory, and nothing there
        but a stale socket (which is removed). Called before the engine opens anything else."""
        try:
            private_dir(self.path.parent, self.group)
        except PermissionProblem as exc:
            raise ControlError(str(exc), "unusable") from None
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ControlError(
                    f"{self.path}: exists and is not a socket; refusing to replace it",
                    "unusable",
                )
            if await _socket_alive(self.path):
                raise ControlError(
                    f"{self.path}: another engine is already listening here; stop it or set"
                    " [control] socket to another path",
                    "in_use",
                )
            self.path.unlink()

    async def start(self) -> None:
        """Listen on the socket, whose mode (0660) and group are set before anyone can reach
        it: it is bound under a temporary name, made so, then renamed into place."""
        await self.claim()
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(staging))
        finally:
            os.umask(old)
        # 0660 as the issue asks; the directory (0700, or 0750 with the group) is what keeps
        # others out when there is no iotsec group.
        gid = usable_group(self.group)
        if gid is not None:
            os.chown(staging, -1, gid)
        os.chmod(staging, 0o660)
        os.rename(staging, self.path)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for session in list(self.sessions):
                session.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _refusal(self, uid: int, name: str, role: Role | None) -> tuple[str, str] | None:
        """Why a new connection of ``uid`` is refused (reason, code), or None."""
        config = self.engine.config.control
        if role is None:
            return (f"user {name} (uid {uid}) has no role on this engine; an admin can add them"
                    " to [control.roles] in the config", "unauthorized")  # fmt: skip
        if len(self.sessions) >= config.max_clients:
            return f"too many clients connected ({config.max_clients})", "busy"
        if role >= Role.ADMIN:
            return None
        if len(self.sessions) >= config.max_clients - config.admin_reserve:
            return (f"too many clients connected (the last {config.admin_reserve} of"
                    f" {config.max_clients} are kept for admins)", "busy")  # fmt: skip
        mine = sum(1 for s in self.sessions if s.operator.uid == uid)
        if mine >= config.max_clients_per_user:
            return (f"user {name} has {mine} connections open already"
                    " ([control] max_clients_per_user)", "busy")  # fmt: skip
        return None

    def _count_cut_off(self) -> None:
        self.cut_off += 1

    def _log_refusal(self, uid: int, reason: str) -> None:
        """One log line per user and reason every 10 s: a client retrying in a loop must not
        fill the log."""
        now = time.monotonic()
        key = (uid, reason)
        last, quiet = self._refusals_logged.get(key, (0.0, 0))
        if now - last < 10:
            self._refusals_logged[key] = (last, quiet + 1)
            return
        more = f" ({quiet} more since the last)" if quiet else ""
        log.warning("refused control connection: %s%s", reason, more)
        self._refusals_logged[key] = (now, 0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock: socket.socket = writer.get_extra_info("socket")
        pid, uid, _gid = peer_credentials(sock)
        name = user_name(uid)
        role = role_for(uid, self.engine.config.control.roles)
        refusal = self._refusal(uid, name, role)
        if refusal is not None:
            self.refused += 1
            reason, code = refusal
            self._log_refusal(uid, reason)
            writer.write(encode({"id": None, "ok": False, "error": reason, "code": code}))
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(_hang_up(reader, writer), 1)
            writer.close()
            return
        assert role is not None
        session = Session(self.engine, Operator(uid, name, role), writer, pid, self._count_cut_off)
        self.sessions.add(session)
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        watchdog = _HelloWatchdog(session, self.engine.config.control.hello_timeout)
        try:
            # Requests still buffered from a client that is gone are not worth answering.
            while not session.over_bound() and not writer.is_closing():
                try:
                    line = await reader.readline()
                except ValueError:
                    await session.send(_error(None, "request longer than 1 MiB", "bad_request"))
                    break
                if not line:
                    break
                watchdog.last = watchdog.loop.time()
                await in_flight.acquire()
                task = asyncio.create_task(self._handle(session, line, in_flight))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            watchdog.cancel()
            if session.subscriber is not None:
                self.engine.bus.unsubscribe(session.subscriber)
            if session.forwarder is not None:
                session.forwarder.cancel()
            self.sessions.discard(session)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()

    async def _handle(self, session: Session, line: bytes, in_flight: asyncio.Semaphore) -> None:
        request_id = None
        try:
            request = decode_request(line)
            request_id = request.get("id")
            response = {
                "id": request_id,
                "ok": True,
                "result": await self._dispatch(session, request),
            }
        except ControlError as exc:
            response = _error(request_id, str(exc), exc.code)
        except (AlertError, ValueError) as exc:
            response = _error(request_id, str(exc), "invalid")
        except Exception as exc:
            log.exception("control command failed")
            response = _error(request_id, f"internal error: {exc}", "internal")
        # The slot is freed only once the reply is out: a client that does not read cannot
        # make the engine hold more than MAX_IN_FLIGHT replies.
        try:
            await session.send(response)
        finally:
            in_flight.release()

    async def _dispatch(self, session: Session, request: dict[str, Any]) -> Any:
        name = request.get("cmd")
        args = request.get("args") or {}
        if not isinstance(name, str) or name not in COMMANDS:
            raise ControlError(f"unknown command {name!r}", "unknown_command")
        if not isinstance(args, dict):
            raise ControlError("args must be a JSON object", "bad_request")
        cmd = COMMANDS[name]
        validate(name, cmd.args, args)
        operator = session.operator
        if operator.role < cmd.role:
            reason = (
                f"{name} needs the {cmd.role.label} role;"
                f" {operator.name} is a {operator.role.label}"
            )
            if cmd.changes_state:
                await self.engine.audit(operator, name, args, f"refused: {reason}")
            raise ControlError(reason, "forbidden")
        if not cmd.changes_state:
            return await cmd.handler(session, args)
        try:
            result = await cmd.handler(session, args)
        except Exception as exc:
            await self.engine.audit(operator, name, args, f"failed: {exc}")
            raise
        await self.engine.audit(operator, name, args, _summary(result))
        return result


async def _socket_alive(path: Path) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _error(request_id: Any, message: str, code: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": message, "code": code}


def _summary(result: Any) -> str:
    if isinstance(result, dict) and "id" in result:
        return f"ok: id {result['id']}"
    return "ok"


# -- argument helpers ------------------------------------------------------------------------


def _int(args: dict[str, Any], key: str) -> int:
    """A whole-number argument (its type and bounds already checked by the schema)."""
    value = args.get(key)
    if value is None:
        raise ControlError(f"{key}: an integer is needed", "bad_request")
    return int(value)


def _limit(args: dict[str, Any], default: int = 200, most: int = 5000, key: str = "limit") -> int:
    value = args.get(key)
    return min(default if value is None else int(value), most)


# The arguments of the commands that take only an id, a limit, or an alert's id and note.
ONE_ID: Schema = {"id": Int()}
ONE_LIMIT: Schema = {"limit": Int()}
NOTE_ARGS: Schema = {"id": Int(), "note": Text(4096)}


def _str(args: dict[str, Any], key: str, default: str = "") -> str:
    value = args.get(key, default)
    return default if value is None else value


def _address(args: dict[str, Any], key: str) -> str:
    value = _str(args, key).strip()
    if not value:
        return ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ControlError(
            f"{key}: {value!r} is not an IPv4 or IPv6 address", "bad_request"
        ) from None


# -- commands --------------------------------------------------------------------------------


@command("hello", args={"client": Text(), "ssh_client": Text()})
async def _hello(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Introduce the client; answers who the engine thinks you are. ``ssh_client`` (the
    client's SSH_CLIENT) protects that address from bans only once the engine verified it."""
    session.client = _str(args, "client", "unknown")[:64]
    op = session.operator
    reply: dict[str, Any] = {}
    claim = _str(args, "ssh_client")
    if claim.strip():
        checked = await asyncio.to_thread(identity.verify, claim, session.pid, op.name)
        session.claimed_ssh_client = checked.claimed
        op = session.operator = Operator(op.uid, op.name, op.role, checked.address or "")
        reply = {"ssh_client": checked.address, "ssh_client_note": checked.note}
        if checked.address is None:
            log.warning("%s (pid %s): SSH client %s", op.name, session.pid,
                        printable(checked.note))  # fmt: skip
    session.greeted = True
    return {
        "operator": op.name,
        "uid": op.uid,
        "role": op.role.label,
        "engine": {"pid": os.getpid(), "version": session.engine.version},
        "protocol": PROTOCOL_VERSION,
        "commands": sorted(n for n, c in COMMANDS.items() if c.role <= op.role),
        **reply,
    }


@command("status")
async def _status(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Engine health: uptime, parts, queues, drops, database and socket."""
    return await session.engine.status()


@command("subscribe", args={"topics": Texts(count=64, limit=32)})
async def _subscribe(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Start receiving events on the given topics (default: all)."""
    topics = args.get("topics") or sorted(TOPICS)
    if not isinstance(topics, list) or not all(isinstance(t, str) and t in TOPICS for t in topics):
        raise ControlError(f"topics must be a list from {sorted(TOPICS)}", "bad_request")
    engine = session.engine
    if session.subscriber is not None:
        engine.bus.unsubscribe(session.subscriber)
    sub = engine.bus.subscribe(f"{session.operator.name}/{session.client}/{id(session):x}", topics)
    session.subscriber = sub

    async def forward() -> None:
        while session.subscriber is sub:
            event = await sub.get()
            try:
                await session.send_event(event.line)
            except (ConnectionError, RuntimeError):
                return

    if session.forwarder is not None:
        session.forwarder.cancel()
    session.forwarder = engine.background(forward())
    return {"topics": sorted(topics)}


@command(
    "alerts.list",
    args={
        "state": Texts(count=8, limit=32, one=True),
        "severity": Text(32),
        "source": Text(),
        "limit": Int(),
    },
)
async def _alerts_list(session: Session, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Alerts newest first; ``state`` (one or a list), ``severity`` (minimum), ``source``
    (rules, logwatch, ...), ``limit``."""
    states = args.get("state") or []
    if isinstance(states, str):
        states = [states]
    if not isinstance(states, list) or not all(isinstance(s, str) for s in states):
        raise ControlError("state must be a state name or a list of them", "bad_request")
    states = [AlertState.parse(s).value for s in states]
    severity = Severity.parse(_str(args, "severity", "info"))
    source = _str(args, "source")
    limit = max(1, _limit(args, 1000, 100_000))
    alerts = await session.engine.read(
        lambda conn: query_alerts(
            conn, states=states, min_severity=int(severity), limit=limit, source=source
        )
    )
    return [a.to_json() for a in alerts]


@command("alerts.get", args={"id": Int()})
async def _alerts_get(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """One alert with its evidence and history."""
    alert_id = _int(args, "id")

    def read(conn):
        return fetch_alert(conn, alert_id), fetch_history(conn, alert_id)

    alert, history = await session.engine.read(read)
    if alert is None:
        raise ControlError(f"no alert with id {alert_id}", "not_found")
    return {**alert.to_json(), "history": history}


async def _transition(session: Session, args: dict[str, Any], action: str) -> dict[str, Any]:
    alert = await session.engine.alerts.transition(
        _int(args, "id"), action, session.operator.name, _str(args, "note")
    )
    return alert.to_json()


@command("alerts.ack", Role.OPERATOR, changes_state=True, args=NOTE_ARGS)
async def _alerts_ack(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Acknowledge an alert with a note: you are on it."""
    return await _transition(session, args, "ack")


@command("alerts.resolve", Role.OPERATOR, changes_state=True, args=NOTE_ARGS)
async def _alerts_resolve(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Resolve an alert; the next identical event opens a new one."""
    return await _transition(session, args, "resolve")


@command("alerts.reopen", Role.OPERATOR, changes_state=True, args=NOTE_ARGS)
async def _alerts_reopen(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Open an acknowledged or resolved alert again."""
    return await _transition(session, args, "reopen")


@command(
    "alerts.silence",
    Role.OPERATOR,
    changes_state=True,
    args={
        "duration": Duration(),
        "rule": Text(),
        "src": Text(64),
        "dst": Text(64),
        "device": Text(),
        "comment": Text(1024),
    },
)
async def _alerts_silence(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Silence alerts matching rule/src/dst/device for a duration."""
    duration = args.get("duration")
    duration = "1h" if duration is None else duration
    silence, hidden = await session.engine.alerts.add_silence(
        rule=_str(args, "rule"),
        src=_address(args, "src"),
        dst=_address(args, "dst"),
        device=_str(args, "device"),
        duration=parse_duration(duration),
        operator=session.operator.name,
        comment=_str(args, "comment"),
    )
    return {**silence.to_json(), "silenced": hidden}


@command("alerts.unsilence", Role.OPERATOR, changes_state=True, args=ONE_ID)
async def _alerts_unsilence(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """End a silence now; the alerts it hid open again."""
    silence_id = _int(args, "id")
    reopened = await session.engine.alerts.end_silence(silence_id, session.operator.name)
    return {"id": silence_id, "reopened": reopened}


@command(
    "silences.extend",
    Role.OPERATOR,
    changes_state=True,
    args={"id": Int(), "duration": Duration()},
)
async def _silences_extend(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Let a silence in force run ``duration`` longer (default 1h)."""
    duration = args.get("duration")
    silence = await session.engine.alerts.extend_silence(
        _int(args, "id"),
        parse_duration("1h" if duration is None else duration),
        session.operator.name,
    )
    return silence.to_json()


@command("silences.list")
async def _silences_list(session: Session, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Silences in force, soonest made first, each with how many alerts it hides now."""
    hidden = await session.engine.read(silence_counts)
    return [{**s.to_json(), "hidden": hidden.get(s.id, 0)} for s in session.engine.alerts.silences]


@command(
    "alerts.inject",
    Role.ADMIN,
    changes_state=True,
    args={
        "title": Text(1024),
        "evidence": Object(),
        "severity": Text(32),
        "rule": Text(),
        "src": Text(64),
        "dst": Text(64),
        "device": Text(),
    },
)
async def _alerts_inject(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Raise an alert through the engine like a detecting part would."""
    title = _str(args, "title").strip()
    if not title:
        raise ControlError("an injected alert needs a title", "bad_request")
    evidence = args.get("evidence") or {}
    if not isinstance(evidence, dict):
        raise ControlError("evidence must be a JSON object", "bad_request")
    event = AlertEvent(
        severity=Severity.parse(_str(args, "severity", "medium")),
        source="inject",
        rule=_str(args, "rule", "inject").strip() or "inject",
        title=title,
        src=_address(args, "src"),
        dst=_address(args, "dst"),
        device=_str(args, "device"),
        evidence={**evidence, "injected_by": session.operator.name},
    )
    alert = await session.engine.raise_alert(event)
    return {"id": alert.id, "count": alert.count, "state": alert.state.value}


@command("audit.list", args=ONE_LIMIT)
async def _audit_list(session: Session, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The newest audit entries."""
    limit = max(1, _limit(args, 100, 10_000))

    def read(conn):
        cur = conn.execute(
            "SELECT id, ts, operator, uid, role, command, args, result FROM audit"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = [c[0] for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    return await session.engine.read(read)


@command("audit.verify", Role.ADMIN)
async def _audit_verify(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Check the audit chain for edited or deleted rows."""
    return await session.engine.verify_audit()


# -- traffic ---------------------------------------------------------------------------------


@command("capture.status")
async def _capture_status(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Capture state, interfaces, counters, drops and rates."""
    return session.engine.capture.status()


@command(
    "capture.start",
    Role.OPERATOR,
    changes_state=True,
    args={"interfaces": Texts(count=64, limit=15), "bpf": Text(1024)},
)
async def _capture_start(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Start live capture on interfaces, with an optional BPF filter."""
    interfaces = args.get("interfaces")
    if (
        not isinstance(interfaces, list)
        or not interfaces
        or not all(isinstance(i, str) and 0 < len(i) < 16 and "/" not in i for i in interfaces)
    ):
        raise ControlError("interfaces must be a list of interface names", "bad_request")
    return await session.engine.capture.start(interfaces, _str(args, "bpf"))


@command("capture.stop", Role.OPERATOR, changes_state=True)
async def _capture_stop(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Stop live capture (flows in progress end and are stored)."""
    return await session.engine.capture.stop()


@command(
    "capture.replay", Role.ADMIN, changes_state=True, args={"path": Text(4096), "realtime": Flag()}
)
async def _capture_replay(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Feed a pcap or pcapng file (a path on the engine's host) through the live pipeline."""
    path = _str(args, "path")
    if not path.startswith("/"):
        raise ControlError("path must be absolute (it is read by the engine)", "bad_request")
    return await session.engine.capture.replay(path, args.get("realtime") is True)


@command(
    "traffic.flows", args={"mode": Text(32), "sort": Text(32), "limit": Int(), "filter": Text(1024)}
)
async def _traffic_flows(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Open and recently ended flows, or top talkers, sorted, with an optional display filter."""
    return await session.engine.capture.flows(
        _str(args, "mode", "flows"), _str(args, "sort", "bytes"), _limit(args),
        _str(args, "filter"),
    )  # fmt: skip


@command("traffic.packets", args={"flow": Text(), "filter": Text(1024), "limit": Int()})
async def _traffic_packets(session: Session, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Recent packets of one flow, or those a display filter selects, oldest first."""
    return await session.engine.capture.packets(_str(args, "flow"), _str(args, "filter"),
                                                _limit(args))  # fmt: skip


@command("traffic.packet", args=ONE_ID)
async def _traffic_packet(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """One recent packet in detail: scapy's layers and a hex dump."""
    return await session.engine.capture.packet(_int(args, "id"))


@command(
    "traffic.export",
    Role.OPERATOR,
    args={
        "flow": Text(),
        "host": Text(64),
        "since": Number(),
        "until": Number(),
        "filter": Text(1024),
    },
)
async def _traffic_export(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Prepare a pcap of recent packets (by flow, host, time or filter) for download."""
    host = _address(args, "host")
    return await session.engine.capture.export({**args, "host": host}, session.operator.uid)


@command("traffic.chunk", Role.OPERATOR, args={"export": Text(64), "index": Int(hi=1 << 31)})
async def _traffic_chunk(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """One base64 chunk of a prepared export."""
    return session.engine.capture.chunk(
        _str(args, "export"), _int(args, "index"), session.operator.uid
    )


# -- rules -----------------------------------------------------------------------------------


@command("rules.status")
async def _rules_status(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Rule files with their counts, rejections, disabled sids, the last reload and its error."""
    return session.engine.detect.status()


@command("rules.list", args={"filter": Text(1024), "limit": Int()})
async def _rules_list(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Loaded rules (disabled ones too) with their hits, most hits first; ``filter`` text."""
    return session.engine.detect.rules(_str(args, "filter"), _limit(args, 5000, 100_000))


@command("rules.reload", Role.OPERATOR, changes_state=True)
async def _rules_reload(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Read the rule files again and swap them in; on new problems the running rules stay."""
    return await session.engine.detect.reload()


@command("rules.enable", Role.OPERATOR, changes_state=True, args={"sid": Int()})
async def _rules_enable(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Run a disabled rule again (kept across restarts)."""
    return await session.engine.detect.set_enabled(_int(args, "sid"), True, session.operator.name)


@command("rules.disable", Role.OPERATOR, changes_state=True, args={"sid": Int()})
async def _rules_disable(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Stop running a rule (kept across restarts)."""
    return await session.engine.detect.set_enabled(_int(args, "sid"), False,
                                                   session.operator.name)  # fmt: skip


@command("bans.list")
async def _bans_list(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Active bans with time left and the firewall's drop counters, and the backend's state."""
    respond = session.engine.respond
    return {**respond.status(), "bans": respond.bans(), "proposed": respond.proposals()}


@command("bans.preview", args={"address": Text(64)})
async def _bans_preview(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """How long a ban of ``address`` at the configured bantime would last (longer for a
    repeat offender), with the bantime, factor, maxtime and previous bans it comes from."""
    return await session.engine.respond.preview(_str(args, "address"))


# One request line is at most 1 MiB: 20,000 of the longest network texts fit.
MAX_BANS = 20_000
LISTED_BANS = 100


@command(
    "bans.ban",
    Role.OPERATOR,
    changes_state=True,
    args={
        "address": Text(64),
        "addresses": Texts(count=MAX_BANS, limit=64),
        "for": Duration(),
        "permanent": Flag(),
        "reason": Text(1024),
        "local_ok": Flag(),
    },
)
async def _bans_ban(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Ban an address or network (or ``addresses``, a list, as one decision) ``for`` a duration,
    else the configured bantime, escalating for repeat offenders, or ``permanent``; refused for
    the allow-list and your own SSH client, and for a device of the inventory without
    ``local_ok`` (the operator's second confirmation)."""
    duration = args.get("for")
    seconds = None
    if duration not in (None, ""):
        try:
            seconds = parse_duration(duration)
        except ValueError as exc:
            raise ControlError(f"for: {exc}", "bad_request") from None
        if seconds <= 0:
            raise ControlError("for: must be longer than zero", "bad_request")
    operator = session.operator
    options = {"duration": seconds, "permanent": args.get("permanent") is True,
               "reason": _str(args, "reason"), "source": "operator", "by": operator.name,
               "protect": operator.ssh_client or session.claimed_ssh_client,
               "local_ok": args.get("local_ok") is True}  # fmt: skip
    many = args.get("addresses")
    if many is None:
        return await session.engine.respond.ban(_str(args, "address"), **options)
    if not isinstance(many, list) or not all(isinstance(a, str) for a in many):
        raise ControlError("addresses must be a list of strings", "bad_request")
    if len(many) > MAX_BANS:
        raise ControlError(f"at most {MAX_BANS} addresses in one decision", "bad_request")
    bans = await session.engine.respond.ban_many(many, **options)
    # A reply must fit in one message: many bans are summed up, not listed.
    return {
        "count": len(bans), "ids": [bans[0]["id"], bans[-1]["id"]],
        "enforced": bans[0]["enforced"], "backend": bans[0]["backend"],
        "problem": bans[0]["problem"], "bans": bans if len(bans) <= LISTED_BANS else [],
    }  # fmt: skip


@command("bans.unban", Role.OPERATOR, changes_state=True, args={"address": Text(64)})
async def _bans_unban(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Lift the ban of an address or network."""
    return await session.engine.respond.unban(_str(args, "address"), session.operator.name)


@command("bans.flush", Role.OPERATOR, changes_state=True)
async def _bans_flush(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Lift every ban and remove our table from the firewall."""
    return await session.engine.respond.flush(session.operator.name)


@command("bans.confirm", Role.OPERATOR, changes_state=True, args=ONE_ID)
async def _bans_confirm(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Make a ban the policy proposed (it asks the allow-list again)."""
    return await session.engine.respond.confirm(_int(args, "id"), session.operator.name)


@command("bans.reject", Role.OPERATOR, changes_state=True, args=ONE_ID)
async def _bans_reject(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Drop a ban the policy proposed."""
    return await session.engine.respond.reject(_int(args, "id"), session.operator.name)


# -- logs ------------------------------------------------------------------------------------


@command("logs.status")
async def _logs_status(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Followed files, jails with their failure counts and top hosts, syslog and journal."""
    return session.engine.logwatch.status()


@command("logs.tail", Role.OPERATOR, args={"source": Text(4096), "limit": Int()})
async def _logs_tail(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """The last ``lines`` lines of a followed ``source`` (a file's path, "syslog" or a
    journal source), each with the jail and host it fails."""
    try:
        return await session.engine.logwatch.tail(_str(args, "source"), _limit(args, 200, 5000))
    except KeyError as exc:
        raise ControlError(str(exc.args[0]), "not_found") from None


# -- devices, findings and scans ---------------------------------------------------------------


def _device(session: Session, args: dict[str, Any]) -> Any:
    key = _str(args, "device").strip()
    device = session.engine.devices.find(key) if key else None
    if device is None:
        raise ControlError(f"no device {key!r} (give its id, MAC or an address)", "not_found")
    return device


@command("devices.list", args={"state": Text(16), "limit": Int()})
async def _devices_list(session: Session, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The inventory, riskiest first: optionally only ``state`` present or gone."""
    state = _str(args, "state")
    if state not in ("", "present", "gone"):
        raise ControlError("state must be present or gone", "bad_request")
    return session.engine.devices.listing(state)[: _limit(args, 5000, 100_000)]


@command("devices.get", args={"device": Text()})
async def _devices_get(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """One device: addresses, vendor, type, services, TLS, open and resolved findings, its
    recent flows (live and stored) and alerts."""
    device = _device(session, args)
    addresses = list(device.addresses)
    host_filter = " or ".join(f"host {a}" for a in addresses)
    live = (await session.engine.capture.flows("flows", "last", 20, host_filter))["rows"] \
        if addresses else []  # fmt: skip

    def read(conn):
        marks = ",".join("?" * len(addresses)) or "''"
        flows = conn.execute(
            "SELECT start, last, proto, src, sport, dst, dport, packets, bytes, app FROM flows"
            f" WHERE src IN ({marks}) OR dst IN ({marks}) ORDER BY last DESC LIMIT 20",
            (*addresses, *addresses),
        ).fetchall()  # fmt: skip
        alerts = query_alerts(conn, hosts=addresses, device=device.mac or device.ip, limit=30)
        resolved = query_findings(conn, state="resolved", device_id=device.id, limit=30)
        return flows, alerts, resolved

    flows, alerts, resolved = await session.engine.read(read)
    flow_keys = ("start", "last", "proto", "src", "sport", "dst", "dport", "packets", "bytes",
                 "app")  # fmt: skip
    return {
        **device.to_json(),
        "live_flows": live,
        "flows": [dict(zip(flow_keys, row, strict=True)) for row in flows],
        "alerts": [alert.to_json() for alert in alerts],
        "resolved_findings": [finding.to_json() for finding in resolved],
    }


@command(
    "findings.list",
    args={"state": Text(16), "severity": Text(32), "device": Text(), "limit": Int()},
)
async def _findings_list(session: Session, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Open findings over all devices, worst first (``state`` resolved or all for history),
    at least ``severity``, of one ``device``."""
    state = _str(args, "state", "open")
    if state not in ("open", "resolved", "all"):
        raise ControlError("state must be open, resolved or all", "bad_request")
    try:
        least = Severity.parse(_str(args, "severity", "info"))
    except ValueError as exc:
        raise ControlError(str(exc), "bad_request") from None
    inventory = session.engine.devices
    devices = [_device(session, args)] if args.get("device") else list(inventory.devices.values())
    rows: list[dict[str, Any]] = []
    if state in ("open", "all"):
        rows += [{**f.to_json(), "address": d.ip, "mac": d.mac or "", "hostname": d.hostname}
                 for d in devices for f in d.findings.values() if f.severity >= least]  # fmt: skip
    if state in ("resolved", "all"):
        by_id = {d.id: d for d in devices}
        device_id = devices[0].id if args.get("device") else None
        limit = _limit(args)
        resolved = await session.engine.read(
            lambda conn: query_findings(
                conn, state="resolved", least=int(least), device_id=device_id, limit=limit
            )
        )
        for finding in resolved:
            device = by_id.get(finding.device_id)
            if device is not None:
                rows.append({**finding.to_json(), "address": device.ip, "mac": device.mac or "",
                             "hostname": device.hostname})  # fmt: skip
    rows.sort(key=lambda r: (r["state"] != "open", -Severity.parse(r["severity"]),
                             r["address"], r["kind"]))  # fmt: skip
    return rows[: _limit(args, 5000, 100_000)]


@command(
    "scan.start",
    Role.OPERATOR,
    changes_state=True,
    args={
        "targets": Texts(count=256, limit=99),
        "profile": Text(16),
        "ports": Text(1024),
        "udp": Flag(),
        "check_default_creds": Flag(),
    },
)
async def _scan_start(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Start a scan of ``targets`` (inside [scan] scope; empty: the whole scope) with a
    ``profile`` (quick, full) or ``ports``, ``udp`` probes and, only when asked,
    ``check_default_creds``."""
    targets = args.get("targets", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) and len(t) < 100
                                                for t in targets):  # fmt: skip
        raise ControlError("targets must be a list of addresses, networks or ranges",
                           "bad_request")  # fmt: skip
    profile = _str(args, "profile", "quick")
    if profile not in ("quick", "full"):
        raise ControlError("profile must be quick or full", "bad_request")
    return await session.engine.scans.begin(
        targets, profile=profile, ports=_str(args, "ports"), udp=args.get("udp", True) is True,
        check_default_creds=args.get("check_default_creds") is True,
        by=session.operator.name)  # fmt: skip


@command("scan.cancel", Role.OPERATOR, changes_state=True, args=ONE_ID)
async def _scan_cancel(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Cancel a running scan (what it found so far is not recorded)."""
    return await session.engine.scans.cancel(_int(args, "id"))


@command("scan.status")
async def _scan_status(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Running scans with their progress, recent ones, and the schedules."""
    return session.engine.scans.status()


@command("scan.get", args=ONE_ID)
async def _scan_get(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """One scan: its hosts (ports, findings) and its difference from the previous scan."""
    return await session.engine.scans.get(_int(args, "id"))


@command("scan.list", args=ONE_LIMIT)
async def _scan_list(session: Session, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Scans newest first, with their summaries."""
    return await session.engine.scans.history(_limit(args, 50, 1000))


# -- serial sessions ---------------------------------------------------------------------------


@command("serial.ports")
async def _serial_ports(session: Session, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Serial ports the engine's machine lists (ptys are not listed; any path can be opened)."""
    found = await asyncio.to_thread(serial_ports.available)
    return [dataclasses.asdict(p) for p in found]


@command("serial.list")
async def _serial_list(session: Session, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Open serial sessions: port, settings, state, counters, line states, transcript."""
    return session.engine.serial.listing()


@command("serial.sessions", args=ONE_LIMIT)
async def _serial_sessions(session: Session, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Recorded sessions, newest first, with their transcripts and boot-log reports."""
    limit = _limit(args, 50, 1000)
    return await session.engine.read(lambda conn: query_sessions(conn, limit))


@command("serial.get", args={"id": Int(), "tail": Int()})
async def _serial_get(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """One session, its boot-log report and its last ``tail`` received bytes (base64)."""
    return session.engine.serial.get(_int(args, "id"), _limit(args, 65536, 1 << 20, "tail"))


@command("serial.read", args={"id": Int(), "offset": Int(), "limit": Int()})
async def _serial_read(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Received bytes from ``offset`` (what a console missed), as far as they are kept."""
    return session.engine.serial.read(
        _int(args, "id"), _int(args, "offset"), _limit(args, 1 << 20, 1 << 20)
    )


@command(
    "serial.open",
    Role.OPERATOR,
    changes_state=True,
    args={"port": Text(4096), "settings": Object(), "device": Text()},
)
async def _serial_open(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Open ``port`` (a path or a pyserial URL) with ``settings`` (baud, data_bits, parity,
    stop_bits, flow, dtr, rts, map_in, map_out, echo; the config's for the rest), attached to
    ``device`` when given."""
    settings = args.get("settings") or {}
    if not isinstance(settings, dict):
        raise ControlError("settings must be an object", "bad_request")
    return await session.engine.serial.open(
        _str(args, "port"), settings=settings, device=_str(args, "device"),
        by=session.operator.name)  # fmt: skip


@command("serial.close", Role.OPERATOR, changes_state=True, args=ONE_ID)
async def _serial_close(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Close a session (its transcript is closed and its summary saved)."""
    return await session.engine.serial.close(_int(args, "id"))


@command(
    "serial.write", Role.OPERATOR, args={"id": Int(), "data": Text(700_000), "text": Text(65536)}
)
async def _serial_write(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Send ``data`` (base64, raw) or ``text`` (newlines mapped as map_out says); refused while
    the device is away. What is sent is in the transcript, not the audit log."""
    sid = _int(args, "id")
    if "data" in args:
        try:
            data = base64.b64decode(_str(args, "data"), validate=True)
        except ValueError:
            raise ControlError("data must be base64", "bad_request") from None
        return {"sent": await session.engine.serial.write(sid, data)}
    return {"sent": await session.engine.serial.send_text(sid, _str(args, "text"))}


@command("serial.set", Role.OPERATOR, changes_state=True, args={"id": Int(), "settings": Object()})
async def _serial_set(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Change settings of an open session (``settings``: any of serial.open's)."""
    settings = args.get("settings") or {}
    if not isinstance(settings, dict):
        raise ControlError("settings must be an object", "bad_request")
    return await session.engine.serial.configure(_int(args, "id"), settings)


@command(
    "serial.line",
    Role.OPERATOR,
    changes_state=True,
    args={"id": Int(), "line": Text(16), "action": Text(16), "ms": Int()},
)
async def _serial_line(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Set DTR or RTS (``line``) ``on``, ``off``, ``toggle`` or ``pulse`` (for ``ms``)."""
    ms = _limit(args, 100, 10_000, "ms")
    return await session.engine.serial.line(
        _int(args, "id"), _str(args, "line"), _str(args, "action", "toggle"), ms / 1000
    )


@command("serial.break", Role.OPERATOR, changes_state=True, args={"id": Int(), "ms": Int()})
async def _serial_break(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Send a break (``ms`` long, 250 by default)."""
    ms = _limit(args, 250, 10_000, "ms")
    await session.engine.serial.send_break(_int(args, "id"), ms / 1000)
    return {"ok": True}


@command("serial.macro", Role.OPERATOR, changes_state=True, args={"id": Int(), "name": Text()})
async def _serial_macro(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Send the macro ``name`` from [serial.macros]."""
    return {"sent": await session.engine.serial.macro(_int(args, "id"), _str(args, "name"))}


@command("serial.macros")
async def _serial_macros(session: Session, args: dict[str, Any]) -> dict[str, str]:
    """The macros of [serial.macros], by name."""
    return dict(session.engine.config.serial.macros)


@command("serial.reconnect", Role.OPERATOR, changes_state=True, args=ONE_ID)
async def _serial_reconnect(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Close the port and open it again now."""
    return await session.engine.serial.reconnect(_int(args, "id"))


@command("serial.attach", Role.OPERATOR, changes_state=True, args={"id": Int(), "device": Text()})
async def _serial_attach(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Attach a session to an inventory ``device`` (id, MAC or address): its boot-log findings
    go on that device."""
    return session.engine.serial.attach(_int(args, "id"), _str(args, "device"))


@command("serial.login", Role.OPERATOR, changes_state=True, args=ONE_ID)
async def _serial_login(session: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Try the shipped default credentials at the session's login prompt (capped by [serial]
    creds_max_attempts); a pair that works is a critical finding and is logged out at once."""
    return await session.engine.serial.login(_int(args, "id"))
