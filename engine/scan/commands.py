"""The scan commands of the control API: scan.* (start, cancel, status, one scan, history)."""

from __future__ import annotations

from typing import Any

from engine.control import arguments as arg
from engine.control.arguments import ONE_ID, ONE_LIMIT
from engine.control.registry import Args, Caller, Registry
from engine.control.schema import Flag, Text, Texts
from engine.errors import BadArgument
from engine.model import Role
from engine.scan.service import ScanService


def register(registry: Registry, scans: ScanService) -> None:
    @registry.command("scan.start", Role.OPERATOR, changes_state=True,
                      args={"targets": Texts(count=256, limit=99), "profile": Text(16),
                            "ports": Text(1024), "udp": Flag(),
                            "check_default_creds": Flag()})  # fmt: skip
    async def start(caller: Caller, args: Args) -> dict[str, Any]:
        """Start a scan of ``targets`` (inside [scan] scope; empty: the whole scope) with a
        ``profile`` (quick, full) or ``ports``, ``udp`` probes and, only when asked,
        ``check_default_creds``."""
        targets = args.get("targets", [])
        if not isinstance(targets, list) or not all(isinstance(t, str) and len(t) < 100
                                                    for t in targets):  # fmt: skip
            raise BadArgument("targets must be a list of addresses, networks or ranges")
        profile = arg.text(args, "profile", "quick")
        if profile not in ("quick", "full"):
            raise BadArgument("profile must be quick or full")
        return await scans.begin(
            targets, profile=profile, ports=arg.text(args, "ports"),
            udp=args.get("udp", True) is True,
            check_default_creds=args.get("check_default_creds") is True,
            by=caller.operator.name)  # fmt: skip

    @registry.command("scan.cancel", Role.OPERATOR, changes_state=True, args=ONE_ID)
    async def cancel(caller: Caller, args: Args) -> dict[str, Any]:
        """Cancel a running scan (what it found so far is not recorded)."""
        return await scans.cancel(arg.number(args, "id"))

    @registry.command("scan.status")
    async def status(caller: Caller, args: Args) -> dict[str, Any]:
        """Running scans with their progress, recent ones, and the schedules."""
        return scans.status()

    @registry.command("scan.get", args=ONE_ID)
    async def get(caller: Caller, args: Args) -> dict[str, Any]:
        """One scan: its hosts (ports, findings) and its difference from the previous scan."""
        return await scans.get(arg.number(args, "id"))

    @registry.command("scan.list", args=ONE_LIMIT)
    async def listing(caller: Caller, args: Args) -> list[dict[str, Any]]:
        """Scans newest first, with their summaries."""
        return await scans.history(arg.limit(args, 50, 1000))
