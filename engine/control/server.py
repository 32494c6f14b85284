"""The control server: a Unix socket (mode 0660) where each connection is one operator.

The peer's uid names the operator and the config gives the role; each command declares the
least role it needs. Requests on one connection run concurrently (responses carry the request
id), so a client may pipeline many; every state-changing command lands in the audit chain. The
commands themselves are the parts' (see :mod:`engine.control.registry`); the server owns the
socket, identity, roles, audit and dispatch, and turns the parts' errors into replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from engine.config import ControlConfig
from engine.control import arguments as arg
from engine.control import endpoint, identity, replies
from engine.control.auth import peer_credentials, role_for, user_name
from engine.control.protocol import (
    MAX_LINE,
    PROTOCOL_VERSION,
    ControlError,
    decode_request,
    encode,
)
from engine.control.registry import Registry
from engine.control.schema import Text, Texts, validate
from engine.control.sessions import HelloWatchdog, Session, hang_up
from engine.events import TOPICS, EventBus
from engine.model import Operator, Role
from engine.text import printable

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 1024


class Host(Protocol):
    """What the server needs of the engine it serves."""

    version: str
    bus: EventBus

    async def audit(self, operator: Operator, command: str, args: dict[str, Any],
                    result: str) -> None: ...  # fmt: skip

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...


class ControlServer:
    def __init__(self, host: Host, config: ControlConfig) -> None:
        self.host = host
        self.config = config
        self.path = config.socket_path()
        # The server's own commands; the daemon adds the parts' before the socket opens.
        self.registry = registry = Registry()
        self.sessions: set[Session] = set()
        self.refused = 0
        self.cut_off = 0  # clients disconnected for not reading their replies
        self._refusals_logged: dict[tuple[int, str], tuple[float, int]] = {}
        self._server: asyncio.base_events.Server | None = None
        registry.command("hello", args={"client": Text(), "ssh_client": Text()})(self._hello)
        registry.command("subscribe", args={"topics": Texts(count=64, limit=32)})(self._subscribe)

    async def claim(self) -> None:
        """Make sure the socket path is ours to take (before the engine opens anything else)."""
        await endpoint.claim(self.path, self.config.group)

    async def start(self) -> None:
        await self.claim()
        sock = endpoint.bind(self.path, self.config.group)
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

    def status(self) -> dict[str, Any]:
        return {"socket": str(self.path), "clients": len(self.sessions), "refused": self.refused,
                "cut_off": self.cut_off}  # fmt: skip

    def ssh_clients(self) -> list[tuple[str, str]]:
        """(operator, verified SSH client address) of every console or CLI connected now."""
        return [(s.operator.name, s.operator.ssh_client) for s in list(self.sessions)
                if s.operator.ssh_client]  # fmt: skip

    # -- connections ------------------------------------------------------------------------

    def _refusal(self, uid: int, name: str, role: Role | None) -> tuple[str, str] | None:
        """Why a new connection of ``uid`` is refused (reason, code), or None."""
        config = self.config
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
        role = role_for(uid, self.config.roles)
        refusal = self._refusal(uid, name, role)
        if refusal is not None:
            self.refused += 1
            reason, code = refusal
            self._log_refusal(uid, reason)
            writer.write(encode(replies.error(None, reason, code)))
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(hang_up(reader, writer), 1)
            writer.close()
            return
        assert role is not None
        session = Session(Operator(uid, name, role), writer, self.config.max_pending_bytes, pid,
                          self._count_cut_off)  # fmt: skip
        self.sessions.add(session)
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        watchdog = HelloWatchdog(session, self.config.hello_timeout)
        try:
            # Requests still buffered from a client that is gone are not worth answering.
            while not session.over_bound() and not writer.is_closing():
                try:
                    line = await reader.readline()
                except ValueError:
                    await session.send(
                        replies.error(None, "request longer than 1 MiB", "bad_request")
                    )
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
                self.host.bus.unsubscribe(session.subscriber)
            if session.forwarder is not None:
                session.forwarder.cancel()
            self.sessions.discard(session)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()

    # -- requests ---------------------------------------------------------------------------

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
        except Exception as exc:
            code = replies.wire_code(exc)
            if code is None:
                log.exception("control command failed")
                response = replies.error(request_id, f"internal error: {exc}", "internal")
            else:
                response = replies.error(request_id, str(exc), code)
        # The slot is freed only once the reply is out: a client that does not read cannot
        # make the engine hold more than MAX_IN_FLIGHT replies.
        try:
            await session.send(response)
        finally:
            in_flight.release()

    async def _dispatch(self, session: Session, request: dict[str, Any]) -> Any:
        name = request.get("cmd")
        args = request.get("args") or {}
        cmd = self.registry.get(name) if isinstance(name, str) else None
        if cmd is None:
            raise ControlError(f"unknown command {name!r}", "unknown_command")
        if not isinstance(args, dict):
            raise ControlError("args must be a JSON object", "bad_request")
        validate(cmd.name, cmd.args, args)
        operator = session.operator
        if operator.role < cmd.role:
            reason = (
                f"{cmd.name} needs the {cmd.role.label} role;"
                f" {operator.name} is a {operator.role.label}"
            )
            if cmd.changes_state:
                await self.host.audit(operator, cmd.name, args, f"refused: {reason}")
            raise ControlError(reason, "forbidden")
        if not cmd.changes_state:
            return await cmd.handler(session, args)
        try:
            result = await cmd.handler(session, args)
        except Exception as exc:
            await self.host.audit(operator, cmd.name, args, f"failed: {exc}")
            raise
        await self.host.audit(operator, cmd.name, args, replies.summary(result))
        return result

    # -- the server's own commands ----------------------------------------------------------

    async def _hello(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        """Introduce the client; answers who the engine thinks you are. ``ssh_client`` (the
        client's SSH_CLIENT) protects that address from bans only once the engine verified it."""
        session.client = arg.text(args, "client", "unknown")[:64]
        op = session.operator
        reply: dict[str, Any] = {}
        claim = arg.text(args, "ssh_client")
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
            "engine": {"pid": os.getpid(), "version": self.host.version},
            "protocol": PROTOCOL_VERSION,
            "commands": self.registry.names(op.role),
            **reply,
        }

    async def _subscribe(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        """Start receiving events on the given topics (default: all)."""
        topics = args.get("topics") or sorted(TOPICS)
        if not isinstance(topics, list) or not all(isinstance(t, str) and t in TOPICS
                                                   for t in topics):  # fmt: skip
            raise ControlError(f"topics must be a list from {sorted(TOPICS)}", "bad_request")
        bus = self.host.bus
        if session.subscriber is not None:
            bus.unsubscribe(session.subscriber)
        sub = bus.subscribe(f"{session.operator.name}/{session.client}/{id(session):x}", topics)
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
        session.forwarder = self.host.background(forward())
        return {"topics": sorted(topics)}
