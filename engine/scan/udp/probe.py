"""Probing a host's UDP ports: a well-known port gets the probe of its service, any other port
every probe, all in parallel; what answers on each port and its findings."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from engine.scan.udp.coap import coap_probe
from engine.scan.udp.mdns import mdns_probe
from engine.scan.udp.ntp import ntp_probe
from engine.scan.udp.snmp import snmp_probe
from engine.scan.udp.ssdp import ssdp_probe
from engine.scan.udp.transport import Result, literal

DEFAULT_PORTS = (5683, 1900, 161, 5353, 123)
CONCURRENCY = 32  # ports probed at once; a port outside DEFAULT_PORTS gets every probe

Probe = Callable[[str, int, float], Awaitable[Result | None]]


def _probes(community: str, try_private: bool) -> dict[int, Probe]:
    snmp = functools.partial(snmp_probe, community=community, try_private=try_private)
    return {5683: coap_probe, 1900: ssdp_probe, 161: snmp, 5353: mdns_probe, 123: ntp_probe}


async def _identify(address: str, port: int, timeout: float,
                    probes: dict[int, Probe]) -> Result | None:  # fmt: skip
    """The probe of a well-known port, or on another port every probe, the first answer read
    winning over ones that were not."""
    chosen = [probes[port]] if port in probes else list(probes.values())
    results = await asyncio.gather(*(probe(address, port, timeout) for probe in chosen))
    answered = [r for r in results if r is not None]
    return next((r for r in answered if r[0].service), answered[0] if answered else None)


async def probe_udp(
    address: str,
    ports: list[int] | None = None,
    *,
    timeout: float = 2.0,
    community: str = "public",
    try_private: bool = False,
) -> list[Result]:
    """Probe ``ports`` (:data:`DEFAULT_PORTS` if None) in parallel: for each one that answers,
    what answers there and its findings, in the order of ``ports``."""
    literal(address)  # a name is refused before anything is sent
    wanted = list(dict.fromkeys(DEFAULT_PORTS if ports is None else ports))
    for port in wanted:
        if not 0 < port < 65536:
            raise ValueError(f"UDP port {port} is outside 1-65535")
    probes = _probes(community, try_private)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(port: int) -> Result | None:
        async with limit:
            return await _identify(address, port, timeout, probes)

    results = await asyncio.gather(*(one(port) for port in wanted))
    return [r for r in results if r is not None]
