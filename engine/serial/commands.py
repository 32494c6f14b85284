"""The serial commands of the control API: serial.* (ports, open sessions and what they
received, writing, settings, modem lines, break, macros, attaching, the login check)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import TYPE_CHECKING, Any

from engine.control import arguments as arg
from engine.control.arguments import ONE_ID, ONE_LIMIT
from engine.control.registry import Args, Caller, Registry
from engine.control.schema import Int, Object, Text
from engine.errors import BadArgument
from engine.model import Role
from engine.serial import ports
from engine.serial.service import SerialService, query_sessions

if TYPE_CHECKING:
    from engine.store.db import Reader


def register(registry: Registry, serial: SerialService, read: Reader) -> None:
    @registry.command("serial.ports")
    async def available(caller: Caller, args: Args) -> list[dict[str, Any]]:
        """Serial ports the engine's machine lists (ptys are not listed; any path can be
        opened)."""
        found = await asyncio.to_thread(ports.available)
        return [dataclasses.asdict(p) for p in found]

    @registry.command("serial.list")
    async def listing(caller: Caller, args: Args) -> list[dict[str, Any]]:
        """Open serial sessions: port, settings, state, counters, line states, transcript."""
        return serial.listing()

    @registry.command("serial.sessions", args=ONE_LIMIT)
    async def sessions(caller: Caller, args: Args) -> list[dict[str, Any]]:
        """Recorded sessions, newest first, with their transcripts and boot-log reports."""
        limit = arg.limit(args, 50, 1000)
        return await read(lambda conn: query_sessions(conn, limit))

    @registry.command("serial.get", args={"id": Int(), "tail": Int()})
    async def get(caller: Caller, args: Args) -> dict[str, Any]:
        """One session, its boot-log report and its last ``tail`` received bytes (base64)."""
        return serial.get(arg.number(args, "id"), arg.limit(args, 65536, 1 << 20, "tail"))

    @registry.command("serial.read", args={"id": Int(), "offset": Int(), "limit": Int()})
    async def received(caller: Caller, args: Args) -> dict[str, Any]:
        """Received bytes from ``offset`` (what a console missed), as far as they are kept."""
        return serial.read(arg.number(args, "id"), arg.number(args, "offset"),
                           arg.limit(args, 1 << 20, 1 << 20))  # fmt: skip

    @registry.command("serial.open", Role.OPERATOR, changes_state=True,
                      args={"port": Text(4096), "settings": Object(),
                            "device": Text()})  # fmt: skip
    async def open_port(caller: Caller, args: Args) -> dict[str, Any]:
        """Open ``port`` (a path or a pyserial URL) with ``settings`` (baud, data_bits, parity,
        stop_bits, flow, dtr, rts, map_in, map_out, echo; the config's for the rest), attached
        to ``device`` when given."""
        settings = arg.mapping(args, "settings")
        return await serial.open(arg.text(args, "port"), settings=settings,
                                 device=arg.text(args, "device"),
                                 by=caller.operator.name)  # fmt: skip

    @registry.command("serial.close", Role.OPERATOR, changes_state=True, args=ONE_ID)
    async def close(caller: Caller, args: Args) -> dict[str, Any]:
        """Close a session (its transcript is closed and its summary saved)."""
        return await serial.close(arg.number(args, "id"))

    @registry.command("serial.write", Role.OPERATOR,
                      args={"id": Int(), "data": Text(700_000), "text": Text(65536)})  # fmt: skip
    async def write(caller: Caller, args: Args) -> dict[str, Any]:
        """Send ``data`` (base64, raw) or ``text`` (newlines mapped as map_out says); refused
        while the device is away. What is sent is in the transcript, not the audit log."""
        sid = arg.number(args, "id")
        if "data" in args:
            try:
                data = base64.b64decode(arg.text(args, "data"), validate=True)
            except ValueError:
                raise BadArgument("data must be base64") from None
            return {"sent": await serial.write(sid, data)}
        return {"sent": await serial.send_text(sid, arg.text(args, "text"))}

    @registry.command("serial.set", Role.OPERATOR, changes_state=True,
                      args={"id": Int(), "settings": Object()})  # fmt: skip
    async def configure(caller: Caller, args: Args) -> dict[str, Any]:
        """Change settings of an open session (``settings``: any of serial.open's)."""
        settings = arg.mapping(args, "settings")
        return await serial.configure(arg.number(args, "id"), settings)

    @registry.command("serial.line", Role.OPERATOR, changes_state=True,
                      args={"id": Int(), "line": Text(16), "action": Text(16),
                            "ms": Int()})  # fmt: skip
    async def line(caller: Caller, args: Args) -> dict[str, Any]:
        """Set DTR or RTS (``line``) ``on``, ``off``, ``toggle`` or ``pulse`` (for ``ms``)."""
        ms = arg.limit(args, 100, 10_000, "ms")
        return await serial.line(arg.number(args, "id"), arg.text(args, "line"),
                                 arg.text(args, "action", "toggle"), ms / 1000)  # fmt: skip

    @registry.command("serial.break", Role.OPERATOR, changes_state=True,
                      args={"id": Int(), "ms": Int()})  # fmt: skip
    async def send_break(caller: Caller, args: Args) -> dict[str, Any]:
        """Send a break (``ms`` long, 250 by default)."""
        ms = arg.limit(args, 250, 10_000, "ms")
        await serial.send_break(arg.number(args, "id"), ms / 1000)
        return {"ok": True}

    @registry.command("serial.macro", Role.OPERATOR, changes_state=True,
                      args={"id": Int(), "name": Text()})  # fmt: skip
    async def macro(caller: Caller, args: Args) -> dict[str, Any]:
        """Send the macro ``name`` from [serial.macros]."""
        return {"sent": await serial.macro(arg.number(args, "id"), arg.text(args, "name"))}

    @registry.command("serial.macros")
    async def macros(caller: Caller, args: Args) -> dict[str, str]:
        """The macros of [serial.macros], by name."""
        return dict(serial.config.macros)

    @registry.command("serial.reconnect", Role.OPERATOR, changes_state=True, args=ONE_ID)
    async def reconnect(caller: Caller, args: Args) -> dict[str, Any]:
        """Close the port and open it again now."""
        return await serial.reconnect(arg.number(args, "id"))

    @registry.command("serial.attach", Role.OPERATOR, changes_state=True,
                      args={"id": Int(), "device": Text()})  # fmt: skip
    async def attach(caller: Caller, args: Args) -> dict[str, Any]:
        """Attach a session to an inventory ``device`` (id, MAC or address): its boot-log
        findings go on that device."""
        return serial.attach(arg.number(args, "id"), arg.text(args, "device"))

    @registry.command("serial.login", Role.OPERATOR, changes_state=True, args=ONE_ID)
    async def login(caller: Caller, args: Args) -> dict[str, Any]:
        """Try the shipped default credentials at the session's login prompt (capped by
        [serial] creds_max_attempts); a pair that works is a critical finding and is logged
        out at once."""
        return await serial.login(arg.number(args, "id"))
