"""The engine's own commands of the control API: its status and the audit log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.audit import AuditTrail
from engine.control import arguments as arg
from engine.control.arguments import ONE_LIMIT
from engine.control.registry import Args, Caller, Registry
from engine.model import Role


def register(registry: Registry, status: Callable[[], Awaitable[dict[str, Any]]],
             trail: AuditTrail) -> None:  # fmt: skip
    @registry.command("status")
    async def engine_status(caller: Caller, args: Args) -> dict[str, Any]:
        """Engine health: uptime, parts, queues, drops, database and socket."""
        return await status()

    @registry.command("audit.list", args=ONE_LIMIT)
    async def audit_list(caller: Caller, args: Args) -> list[dict[str, Any]]:
        """The newest audit entries."""
        limit = max(1, arg.limit(args, 100, 10_000))
        return await trail.newest(limit)

    @registry.command("audit.verify", Role.ADMIN)
    async def audit_verify(caller: Caller, args: Args) -> dict[str, Any]:
        """Check the audit chain for edited or deleted rows."""
        return await trail.verify()
