"""The inventory commands of the control API: devices.* (the list, one device) and findings.*
(open and resolved findings over all devices)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.control import arguments as arg
from engine.control.registry import Args, Caller, Registry
from engine.control.schema import Int, Text
from engine.devices import views
from engine.devices.inventory import Inventory
from engine.devices.model import Device
from engine.errors import BadArgument, NotFound
from engine.model import Severity

if TYPE_CHECKING:
    from engine.capture.service import CaptureService
    from engine.store.db import Reader


def register(registry: Registry, inventory: Inventory, capture: CaptureService,
             read: Reader) -> None:  # fmt: skip
    def named(args: Args) -> Device:
        key = arg.text(args, "device").strip()
        device = inventory.find(key) if key else None
        if device is None:
            raise NotFound(f"no device {key!r} (give its id, MAC or an address)")
        return device

    @registry.command("devices.list", args={"state": Text(16), "limit": Int()})
    async def listing(caller: Caller, args: Args) -> list[dict[str, Any]]:
        """The inventory, riskiest first: optionally only ``state`` present or gone."""
        state = arg.text(args, "state")
        if state not in ("", "present", "gone"):
            raise BadArgument("state must be present or gone")
        return inventory.listing(state)[: arg.limit(args, 5000, 100_000)]

    @registry.command("devices.get", args={"device": Text()})
    async def get(caller: Caller, args: Args) -> dict[str, Any]:
        """One device: addresses, vendor, type, services, TLS, open and resolved findings, its
        recent flows (live and stored) and alerts."""
        return await views.device_detail(named(args), capture, read)

    @registry.command("findings.list", args={"state": Text(16), "severity": Text(32),
                                             "device": Text(), "limit": Int()})  # fmt: skip
    async def findings(caller: Caller, args: Args) -> list[dict[str, Any]]:
        """Open findings over all devices, worst first (``state`` resolved or all for
        history), at least ``severity``, of one ``device``."""
        state = arg.text(args, "state", "open")
        if state not in ("open", "resolved", "all"):
            raise BadArgument("state must be open, resolved or all")
        try:
            least = Severity.parse(arg.text(args, "severity", "info"))
        except ValueError as exc:
            raise BadArgument(str(exc)) from None
        one = bool(args.get("device"))
        devices = [named(args)] if one else list(inventory.devices.values())
        rows = await views.findings(devices, read, state=state, least=least, one_device=one,
                                    limit=arg.limit(args))  # fmt: skip
        return rows[: arg.limit(args, 5000, 100_000)]
