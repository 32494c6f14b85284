"""The capture commands of the control API: capture.* (live capture and replay) and traffic.*
(flows, talkers, recent packets, one packet, pcap export)."""

from __future__ import annotations

from typing import Any

from engine.capture.service import CaptureService
from engine.control import arguments as arg
from engine.control.arguments import ONE_ID
from engine.control.registry import Args, Caller, Registry
from engine.control.schema import Flag, Int, Number, Text, Texts
from engine.errors import BadArgument
from engine.model import Role


def register(registry: Registry, capture: CaptureService) -> None:
    @registry.command("capture.status")
    async def status(caller: Caller, args: Args) -> dict[str, Any]:
        """Capture state, interfaces, counters, drops and rates."""
        return capture.status()

    @registry.command("capture.start", Role.OPERATOR, changes_state=True,
                      args={"interfaces": Texts(count=64, limit=15),
                            "bpf": Text(1024)})  # fmt: skip
    async def start(caller: Caller, args: Args) -> dict[str, Any]:
        """Start live capture on interfaces, with an optional BPF filter."""
        interfaces = args.get("interfaces")
        if (
            not isinstance(interfaces, list)
            or not interfaces
            or not all(isinstance(i, str) and 0 < len(i) < 16 and "/" not in i for i in interfaces)
        ):
            raise BadArgument("interfaces must be a list of interface names")
        return await capture.start(interfaces, arg.text(args, "bpf"))

    @registry.command("capture.stop", Role.OPERATOR, changes_state=True)
    async def stop(caller: Caller, args: Args) -> dict[str, Any]:
        """Stop live capture (flows in progress end and are stored)."""
        return await capture.stop()

    @registry.command("capture.replay", Role.ADMIN, changes_state=True,
                      args={"path": Text(4096), "realtime": Flag()})  # fmt: skip
    async def replay(caller: Caller, args: Args) -> dict[str, Any]:
        """Feed a pcap or pcapng file (a path on the engine's host) through the live pipeline."""
        path = arg.text(args, "path")
        if not path.startswith("/"):
            raise BadArgument("path must be absolute (it is read by the engine)")
        return await capture.replay(path, args.get("realtime") is True)

    @registry.command("traffic.flows", args={"mode": Text(32), "sort": Text(32), "limit": Int(),
                                             "filter": Text(1024)})  # fmt: skip
    async def flows(caller: Caller, args: Args) -> dict[str, Any]:
        """Open and recently ended flows, or top talkers, sorted, with an optional display
        filter."""
        return await capture.flows(arg.text(args, "mode", "flows"), arg.text(args, "sort", "bytes"),
                                   arg.limit(args), arg.text(args, "filter"))  # fmt: skip

    @registry.command("traffic.packets",
                      args={"flow": Text(), "filter": Text(1024), "limit": Int()})  # fmt: skip
    async def packets(caller: Caller, args: Args) -> list[dict[str, Any]]:
        """Recent packets of one flow, or those a display filter selects, oldest first."""
        return await capture.packets(arg.text(args, "flow"), arg.text(args, "filter"),
                                     arg.limit(args))  # fmt: skip

    @registry.command("traffic.packet", args=ONE_ID)
    async def packet(caller: Caller, args: Args) -> dict[str, Any]:
        """One recent packet in detail: scapy's layers and a hex dump."""
        return await capture.packet(arg.number(args, "id"))

    @registry.command("traffic.export", Role.OPERATOR,
                      args={"flow": Text(), "host": Text(64), "since": Number(), "until": Number(),
                            "filter": Text(1024)})  # fmt: skip
    async def export(caller: Caller, args: Args) -> dict[str, Any]:
        """Prepare a pcap of recent packets (by flow, host, time or filter) for download."""
        host = arg.address(args, "host")
        return await capture.export({**args, "host": host}, caller.operator.uid)

    @registry.command("traffic.chunk", Role.OPERATOR,
                      args={"export": Text(64), "index": Int(hi=1 << 31)})  # fmt: skip
    async def chunk(caller: Caller, args: Args) -> dict[str, Any]:
        """One base64 chunk of a prepared export."""
        return capture.chunk(arg.text(args, "export"), arg.number(args, "index"),
                             caller.operator.uid)  # fmt: skip
