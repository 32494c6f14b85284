"""The log commands of the control API: logs.* (what is followed, and a followed source's last
lines)."""

from __future__ import annotations

from typing import Any

from engine.control import arguments as arg
from engine.control.registry import Args, Caller, Registry
from engine.control.schema import Int, Text
from engine.logwatch.service import LogWatch
from engine.model import Role


def register(registry: Registry, logwatch: LogWatch) -> None:
    @registry.command("logs.status")
    async def status(caller: Caller, args: Args) -> dict[str, Any]:
        """Followed files, jails with their failure counts and top hosts, syslog and journal."""
        return logwatch.status()

    @registry.command("logs.tail", Role.OPERATOR, args={"source": Text(4096), "limit": Int()})
    async def tail(caller: Caller, args: Args) -> dict[str, Any]:
        """The last ``limit`` lines of a followed ``source`` (a file's path, "syslog" or a
        journal source), each with the jail and host it fails."""
        return await logwatch.tail(arg.text(args, "source"), arg.limit(args, 200, 5000))
