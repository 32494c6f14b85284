"""The rule commands of the control API: rules.* (status, listing, reload, enable, disable)."""

from __future__ import annotations

from typing import Any

from engine.control import arguments as arg
from engine.control.registry import Args, Caller, Registry
from engine.control.schema import Int, Text
from engine.detect.service import DetectService
from engine.model import Role

ONE_SID = {"sid": Int()}


def register(registry: Registry, detect: DetectService) -> None:
    @registry.command("rules.status")
    async def status(caller: Caller, args: Args) -> dict[str, Any]:
        """Rule files with their counts, rejections, disabled sids, the last reload and its
        error."""
        return detect.status()

    @registry.command("rules.list", args={"filter": Text(1024), "limit": Int()})
    async def listing(caller: Caller, args: Args) -> dict[str, Any]:
        """Loaded rules (disabled ones too) with their hits, most hits first; ``filter`` text."""
        return detect.rules(arg.text(args, "filter"), arg.limit(args, 5000, 100_000))

    @registry.command("rules.reload", Role.OPERATOR, changes_state=True)
    async def reload(caller: Caller, args: Args) -> dict[str, Any]:
        """Read the rule files again and swap them in; on new problems the running rules stay."""
        return await detect.reload()

    @registry.command("rules.enable", Role.OPERATOR, changes_state=True, args=ONE_SID)
    async def enable(caller: Caller, args: Args) -> dict[str, Any]:
        """Run a disabled rule again (kept across restarts)."""
        return await detect.set_enabled(arg.number(args, "sid"), True, caller.operator.name)

    @registry.command("rules.disable", Role.OPERATOR, changes_state=True, args=ONE_SID)
    async def disable(caller: Caller, args: Args) -> dict[str, Any]:
        """Stop running a rule (kept across restarts)."""
        return await detect.set_enabled(arg.number(args, "sid"), False, caller.operator.name)
