"""Clients of the control API: a blocking one for one-shot CLI commands and an asyncio one for
the console. Both introduce themselves with the operator's SSH client address, if any.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import itertools
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.control.protocol import MAX_LINE, ControlError, decode, encode


def _hello_args(client: str) -> dict[str, Any]:
    ssh = os.environ.get("SSH_CLIENT") or os.environ.get("SSH_CONNECTION") or ""
    return {"client": client, "ssh_client": ssh}


def _access_fix(path: Path) -> str:
    """What a user refused by the socket's permissions can do about it."""
    try:
        gid = path.stat().st_gid
    except OSError:
        return f"ask an admin for access to {path.parent}, or run as the engine's user"
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return (f"join the group {group} (an admin runs: usermod -aG {group} USER), or run as the"
            " engine's user")  # fmt: skip


def _no_engine(path: Path, exc: OSError) -> ControlError:
    if isinstance(exc, PermissionError):
        # "denied", not "unreachable": retrying will not help, and no second engine should start.
        return ControlError(f"{path}: permission denied; {_access_fix(path)}", "denied")
    return ControlError(
        f"no engine at {path} ({exc.strerror or exc}); start one with 'iotsec engine'"
        " or point --socket / [control] socket at it",
        "unreachable",
    )


def _result(message: dict[str, Any]) -> Any:
    if message.get("ok"):
        return message.get("result")
    raise ControlError(message.get("error", "request failed"), message.get("code", "error"))


class Client:
    """A blocking control connection; ``request`` returns the result or raises ControlError."""

    def __init__(self, path: Path | str, *, client: str = "cli", timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
        except OSError as exc:
            self._sock.close()
            raise _no_engine(self.path, exc) from None
        self._file = self._sock.makefile("rb")
        self._ids = itertools.count(1)
        self.hello = self.request("hello", _hello_args(client))

    def request(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        request_id = next(self._ids)
        # The engine may have refused us and hung up before we wrote: its reason, if it sent
        # one, is still waiting to be read below.
        with contextlib.suppress(OSError):
            self._sock.sendall(encode({"id": request_id, "cmd": cmd, "args": args or {}}))
        while True:
            message = self._read()
            if "event" not in message and message.get("id") in (request_id, None):
                return _result(message)

    def next_event(self) -> dict[str, Any]:
        """The next event after ``subscribe`` (waits up to the connection's timeout)."""
        while True:
            message = self._read()
            if "event" in message:
                return message

    def _read(self) -> dict[str, Any]:
        """The next message from the engine, whatever it is."""
        try:
            line = self._file.readline(MAX_LINE)
        except OSError as exc:
            raise ControlError(f"{self.path}: connection lost: {exc}", "unreachable") from None
        if not line:
            raise ControlError(f"{self.path}: engine closed the connection", "unreachable")
        return decode(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient:
    """An asyncio control connection with pipelined requests and an event callback."""

    def __init__(self, path: Path | str, *, client: str = "console") -> None:
        self.path = Path(path)
        self.client = client
        self.hello: dict[str, Any] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._pump: asyncio.Task[None] | None = None
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        self.on_close: Callable[[], None] | None = None

    async def connect(self) -> dict[str, Any]:
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                str(self.path), limit=MAX_LINE
            )
        except OSError as exc:
            raise _no_engine(self.path, exc) from None
        self._pump = asyncio.create_task(self._read_loop())
        self.hello = await self.request("hello", _hello_args(self.client))
        return self.hello

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def request(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        if self._writer is None or self._writer.is_closing():
            raise ControlError("not connected to the engine", "unreachable")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        # As in Client.request: the engine may have refused us and hung up before we wrote; the
        # read loop still delivers its reason (or "closed the connection") to the future.
        with contextlib.suppress(ConnectionError):
            self._writer.write(encode({"id": request_id, "cmd": cmd, "args": args or {}}))
            await self._writer.drain()
        return _result(await future)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while line := await self._reader.readline():
                message = decode(line)
                if "event" in message:
                    if self.on_event is not None:
                        self.on_event(message)
                    continue
                future = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(message)
                elif message.get("id") is None and not message.get("ok", True):
                    # The engine refused the connection itself (no role, too many clients).
                    for pending in self._pending.values():
                        pending.set_result(message)
                    self._pending.clear()
        except (ConnectionError, ValueError):
            pass
        finally:
            error = {"ok": False, "error": "engine closed the connection", "code": "unreachable"}
            for future in self._pending.values():
                if not future.done():
                    future.set_result(error)
            self._pending.clear()
            if self._writer is not None:
                self._writer.close()
            if self.on_close is not None:
                self.on_close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump


def answers(path: str | Path) -> bool:
    """Whether an engine listens on the control socket ``path`` (a connect, no request)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
