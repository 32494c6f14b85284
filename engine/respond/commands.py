"""The ban commands of the control API: bans.* (list, preview, ban, unban, flush, and the
proposals the policy made)."""

from __future__ import annotations

from typing import Any

from engine.control import arguments as arg
from engine.control.arguments import ONE_ID
from engine.control.registry import Args, Caller, Registry
from engine.control.schema import Duration, Flag, Text, Texts
from engine.durations import parse_duration
from engine.errors import BadArgument
from engine.model import Role
from engine.respond.manager import BanManager

# One request line is at most 1 MiB: 20,000 of the longest network texts fit.
MAX_BANS = 20_000
LISTED_BANS = 100


def register(registry: Registry, respond: BanManager) -> None:
    @registry.command("bans.list")
    async def listing(caller: Caller, args: Args) -> dict[str, Any]:
        """Active bans with time left and the firewall's drop counters, and the backend's
        state."""
        return {**respond.status(), "bans": respond.bans(), "proposed": respond.proposals()}

    @registry.command("bans.preview", args={"address": Text(64)})
    async def preview(caller: Caller, args: Args) -> dict[str, Any]:
        """How long a ban of ``address`` at the configured bantime would last (longer for a
        repeat offender), with the bantime, factor, maxtime and previous bans it comes from."""
        return await respond.preview(arg.text(args, "address"))

    @registry.command("bans.ban", Role.OPERATOR, changes_state=True,
                      args={"address": Text(64), "addresses": Texts(count=MAX_BANS, limit=64),
                            "for": Duration(), "permanent": Flag(), "reason": Text(1024),
                            "local_ok": Flag()})  # fmt: skip
    async def ban(caller: Caller, args: Args) -> dict[str, Any]:
        """Ban an address or network (or ``addresses``, a list, as one decision) ``for`` a
        duration, else the configured bantime, escalating for repeat offenders, or
        ``permanent``; refused for the allow-list and your own SSH client, and for a device of
        the inventory without ``local_ok`` (the operator's second confirmation)."""
        duration = args.get("for")
        seconds = None
        if duration not in (None, ""):
            try:
                seconds = parse_duration(duration)
            except ValueError as exc:
                raise BadArgument(f"for: {exc}") from None
            if seconds <= 0:
                raise BadArgument("for: must be longer than zero")
        operator = caller.operator
        options = {"duration": seconds, "permanent": args.get("permanent") is True,
                   "reason": arg.text(args, "reason"), "source": "operator", "by": operator.name,
                   "protect": operator.ssh_client or caller.claimed_ssh_client,
                   "local_ok": args.get("local_ok") is True}  # fmt: skip
        many = args.get("addresses")
        if many is None:
            return await respond.ban(arg.text(args, "address"), **options)
        if not isinstance(many, list) or not all(isinstance(a, str) for a in many):
            raise BadArgument("addresses must be a list of strings")
        if len(many) > MAX_BANS:
            raise BadArgument(f"at most {MAX_BANS} addresses in one decision")
        bans = await respond.ban_many(many, **options)
        # A reply must fit in one message: many bans are summed up, not listed.
        return {
            "count": len(bans), "ids": [bans[0]["id"], bans[-1]["id"]],
            "enforced": bans[0]["enforced"], "backend": bans[0]["backend"],
            "problem": bans[0]["problem"], "bans": bans if len(bans) <= LISTED_BANS else [],
        }  # fmt: skip

    @registry.command("bans.unban", Role.OPERATOR, changes_state=True, args={"address": Text(64)})
    async def unban(caller: Caller, args: Args) -> dict[str, Any]:
        """Lift the ban of an address or network."""
        return await respond.unban(arg.text(args, "address"), caller.operator.name)

    @registry.command("bans.flush", Role.OPERATOR, changes_state=True)
    async def flush(caller: Caller, args: Args) -> dict[str, Any]:
        """Lift every ban and remove our table from the firewall."""
        return await respond.flush(caller.operator.name)

    @registry.command("bans.confirm", Role.OPERATOR, changes_state=True, args=ONE_ID)
    async def confirm(caller: Caller, args: Args) -> dict[str, Any]:
        """Make a ban the policy proposed (it asks the allow-list again)."""
        return await respond.confirm(arg.number(args, "id"), caller.operator.name)

    @registry.command("bans.reject", Role.OPERATOR, changes_state=True, args=ONE_ID)
    async def reject(caller: Caller, args: Args) -> dict[str, Any]:
        """Drop a ban the policy proposed."""
        return await respond.reject(arg.number(args, "id"), caller.operator.name)
