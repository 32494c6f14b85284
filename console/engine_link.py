"""The console's one connection to the engine: find it (or start a private one), subscribe,
take a first snapshot, pass events on as messages, and reconnect when it drops.

A private engine starts only on the first attempt, when the console is launched and no engine
answers. An engine that goes away later is waited for on the same socket: a second engine
started in its place would hold its database and stop it from coming back.

Everything here runs on the app's asyncio loop; the only blocking step, starting a private
engine, runs in a thread. Reconnecting re-arms a one-shot timer after each failed attempt, so
attempts never overlap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from textual.app import App
from textual.message import Message
from textual.timer import Timer

from console.private_engine import PrivateEngine
from engine.control.client import AsyncClient
from engine.control.protocol import PROTOCOL_VERSION, ControlError

# Reconnecting backs off from the first delay to the longest, which is short enough that every
# console is back within a couple of seconds of its engine.
RETRY_FIRST = 0.1
RETRY_LONGEST = 1.0
# A refusal (no role, no permission on the socket, another protocol) needs someone to change
# something first: retried this slowly, with the reason on screen meanwhile.
REFUSED_RETRY_SECONDS = 10.0
REFUSALS = frozenset({"unauthorized", "denied", "version", "busy"})
START_TIMEOUT = 10.0
TOPICS = ("alerts", "status", "serial")

# disconnected: no engine answers (and none was started); gone: the engine this console was
# attached to went away; refused: the engine (or the socket's permissions) turned it away.
Phase = Literal["connecting", "starting", "connected", "disconnected", "gone", "refused", "failed"]


@dataclass(frozen=True)
class LinkState:
    """Where the connection stands, as the status bar shows it."""

    phase: Phase
    message: str = ""
    private_pid: int | None = None
    label: str = "engine"  # which engine: "engine", "lab engine"
    operator: str = ""
    role: str = ""
    commands: frozenset[str] = field(default_factory=frozenset)


class LinkChanged(Message):
    def __init__(self, state: LinkState) -> None:
        super().__init__()
        self.state = state


class EngineEvent(Message):
    """One event from the engine's stream; ``dropped`` counts events lost before it."""

    def __init__(self, topic: str, data: Any, dropped: int) -> None:
        super().__init__()
        self.topic = topic
        self.data = data
        self.dropped = dropped


class Snapshot(Message):
    """The alerts and status right after (re)connecting or a resync: the whole picture."""

    def __init__(self, alerts: list[dict[str, Any]], status: dict[str, Any]) -> None:
        super().__init__()
        self.alerts = alerts
        self.status = status


class EngineLink:
    def __init__(
        self,
        app: App[Any],
        socket_path: Path,
        *,
        spawn: bool,
        config_path: str | None,
        max_rows: int,
        topics: tuple[str, ...] = TOPICS,
        label: str = "engine",
    ) -> None:
        self.app = app
        self.label = label
        self.topics = topics
        self.socket_path = socket_path
        self.spawn = spawn
        self.config_path = config_path
        self.max_rows = max_rows
        self.private: PrivateEngine | None = None
        self.state = LinkState("connecting", label=label)
        self._client: AsyncClient | None = None
        self._retry: Timer | None = None
        self._delay = RETRY_FIRST
        self._first = True
        self._attached = False
        self._closing = False

    # -- what the app uses --------------------------------------------------------------------

    def connect(self) -> None:
        """Start a connection attempt in the background."""
        self._retry = None
        self.app.run_worker(
            self._connect(),
            name="Connecting to the engine",
            group="engine",
            exclusive=True,
            exit_on_error=False,
        )

    def may(self, command: str) -> bool:
        """Whether this operator may run ``command`` on the engine right now."""
        return self.state.phase == "connected" and command in self.state.commands

    async def request(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        if self._client is None:
            raise ControlError("not connected to the engine", "unreachable")
        return await self._client.request(cmd, args)

    def resync(self) -> None:
        """Fetch the whole picture again (after missed events); reconnecting does it anyway."""
        if self._client is None:
            return
        self.app.run_worker(
            self._snapshot(),
            name="Reloading alerts",
            group="resync",
            exclusive=True,
            exit_on_error=False,
        )

    async def close(self) -> None:
        self._closing = True
        if self._client is not None:
            await self._client.close()
            self._client = None

    def stop_private(self) -> None:
        """Stop the private engine, if this console started one (blocks up to a few seconds)."""
        if self.private is not None:
            self.private.stop()

    # -- connecting ---------------------------------------------------------------------------

    def _set(self, state: LinkState) -> None:
        state = dataclasses.replace(state, label=self.label)
        self.state = state
        self.app.post_message(LinkChanged(state))

    @property
    def _private_pid(self) -> int | None:
        return self.private.pid if self.private is not None else None

    @property
    def _path(self) -> Path:
        return self.private.socket if self.private is not None else self.socket_path

    async def _connect(self) -> None:
        # While retrying, the reason it is not connected stays on screen.
        if self.state.phase not in ("disconnected", "gone", "refused"):
            self._set(LinkState("connecting", private_pid=self._private_pid))
        try:
            client = await self._open()
            hello = client.hello
            if (protocol := hello.get("protocol", PROTOCOL_VERSION)) != PROTOCOL_VERSION:
                await client.close()
                raise ControlError(
                    f"the engine at {self._path} speaks control protocol {protocol}, this console"
                    f" {PROTOCOL_VERSION}: run the same iotsec version for both",
                    "version",
                )
            client.on_event = self._on_event
            client.on_close = self._on_close
            self._client = client
            self._attached = True
            self._delay = RETRY_FIRST
            await client.request("subscribe", {"topics": list(self.topics)})
            self._set(
                LinkState(
                    "connected",
                    private_pid=self._private_pid,
                    operator=str(hello.get("operator", "")),
                    role=str(hello.get("role", "")),
                    commands=frozenset(hello.get("commands", ())),
                )
            )
            await self._snapshot()
        except ControlError as exc:
            self._failed(exc)

    def _failed(self, exc: ControlError) -> None:
        if self._closing:
            return
        pid = self._private_pid
        if exc.code == "unreachable" and (exited := self._private_exited()):
            self._set(LinkState("failed", exited, pid))
            return
        if exc.code == "unreachable" and self._attached:
            state = LinkState("gone", f"{self.label} gone: {self._path}; reconnecting", pid)
            delay = self._delay
        elif exc.code == "unreachable":
            state = LinkState("disconnected", str(exc), pid)
            delay = self._delay
        elif exc.code in REFUSALS:
            state, delay = LinkState("refused", str(exc), pid), REFUSED_RETRY_SECONDS
        else:
            self._set(LinkState("failed", str(exc), pid))
            return
        self._set(state)
        # A drop seen both by a failing request and by the read loop retries once.
        if self._retry is None:
            self._retry = self.app.set_timer(delay, self.connect)
            self._delay = min(self._delay * 2, RETRY_LONGEST)

    async def _open(self) -> AsyncClient:
        first, self._first = self._first, False
        try:
            return await _dial(self._path)
        except ControlError as exc:
            # Only at launch: an engine that was here and went away is waited for instead.
            if exc.code != "unreachable" or not (first and self.spawn):
                raise
        return await self._start_private()

    async def _start_private(self) -> AsyncClient:
        private = self.private = PrivateEngine(self.config_path)
        self._set(LinkState("starting"))
        await asyncio.to_thread(private.start)
        self._set(LinkState("starting", private_pid=private.pid))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if exited := self._private_exited():
                raise ControlError(exited, "exited")
            try:
                return await _dial(private.socket)
            except ControlError as exc:
                if exc.code != "unreachable":
                    raise
            if time.monotonic() > deadline:
                tail = private.log_tail()
                await asyncio.to_thread(private.stop)
                raise ControlError(
                    f"private engine did not start within {START_TIMEOUT:.0f} s"
                    + (f": {tail}" if tail else ""),
                    "timeout",
                )
            await asyncio.sleep(0.05)

    def _private_exited(self) -> str:
        """Why the private engine is gone (with the end of its log), or "" if it is not."""
        private = self.private
        if private is None or (status := private.exit_status()) is None:
            return ""
        tail = private.log_tail()
        return f"private engine exited with status {status}" + (f": {tail}" if tail else "")

    async def _snapshot(self) -> None:
        alerts = await self.request("alerts.list", {"limit": self.max_rows})
        status = await self.request("status")
        self.app.post_message(Snapshot(alerts, status))

    # -- callbacks from the client's read loop ------------------------------------------------

    def _on_event(self, message: dict[str, Any]) -> None:
        dropped = int(message.get("dropped") or 0)
        self.app.post_message(EngineEvent(str(message.get("event")), message.get("data"), dropped))

    def _on_close(self) -> None:
        self._client = None
        if not self._closing:
            self._failed(ControlError("the engine closed the connection", "unreachable"))


async def _dial(path: Path) -> AsyncClient:
    client = AsyncClient(path, client="console")
    try:
        await client.connect()
    except BaseException:
        await client.close()
        raise
    return client
