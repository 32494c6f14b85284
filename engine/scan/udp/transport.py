"""Sending one UDP request to a target and listening for its answer (the datagrams it sends back,
or the ICMP error that says nobody will), and what every probe's result shares: its shape, the
limit on what it lists, and how an answer that cannot be read is reported."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from collections.abc import Callable
from typing import Any

from engine.scan.findings import Finding, Service

GATHER = 0.3  # seconds to go on listening for the rest of a multi-datagram answer
LIST_LIMIT = 50  # resources, records, ... kept in a service's details
# Linux's IP_RECVERR and IPV6_RECVERR, which the socket module does not name: with them an
# unconnected socket is told of an ICMP port unreachable, as a connected one always is.
_RECVERR = {4: (socket.IPPROTO_IP, 11), 6: (socket.IPPROTO_IPV6, 25)}

Result = tuple[Service, list[Finding]]


class Malformed(ValueError):
    """An answer that cannot be read; it is noted in the service's details, never raised."""


def literal(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IP address ``address`` spells (a scope id after % ignored); a name is refused."""
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address (names are not resolved)") from None


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, host: ipaddress.IPv4Address | ipaddress.IPv6Address, any_port: bool):
        self.host = host
        self.any_port = any_port
        self.datagrams: list[bytes] = []
        self.refused = False
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # A connected socket hears only the target; an unconnected one (SSDP, whose answers may
        # come from another port) keeps what comes from the target's address.
        if self.any_port:
            try:
                if ipaddress.ip_address(str(addr[0]).split("%", 1)[0]) != self.host:
                    return
            except ValueError:
                return
        self.datagrams.append(data)
        self.arrived.set()

    def error_received(self, exc: Exception) -> None:
        # An ICMP port (or host) unreachable: nobody will answer.
        self.refused = True
        self.arrived.set()


def _unconnected(version: int) -> socket.socket:
    """A socket that hears every port of the target, and on Linux its ICMP errors too."""
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if sys.platform == "linux":
            sock.setsockopt(*_RECVERR[version], 1)
        sock.bind(("::" if version == 6 else "0.0.0.0", 0))
    except OSError:
        sock.close()
        raise
    return sock


async def _until(listener: _Listener, deadline: float, done: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    while not done():
        left = deadline - loop.time()
        if left <= 0:
            return
        listener.arrived.clear()
        try:
            await asyncio.wait_for(listener.arrived.wait(), left)
        except TimeoutError:
            return


async def exchange(
    address: str,
    port: int,
    payload: bytes,
    timeout: float,
    *,
    any_port: bool = False,
    counts: Callable[[bytes], bool] = lambda _: True,
    more: Callable[[list[bytes]], bool] | None = None,
) -> list[bytes]:
    """Send ``payload`` and return what the target answers: the datagrams up to the first that
    ``counts`` as an answer, within ``timeout`` (sent once more at half time, as UDP loses
    packets), then, while ``more`` says the answer goes on, those within :data:`GATHER` seconds
    more. Empty: no answer, or the port is closed."""
    host = literal(address)
    loop = asyncio.get_running_loop()
    listener = _Listener(host, any_port)
    try:
        if any_port:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: listener, sock=_unconnected(host.version)
            )
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: listener, remote_addr=(address, port)
            )
    except OSError:
        return []

    def answered() -> bool:
        return listener.refused or any(counts(d) for d in listener.datagrams)

    def send() -> None:
        if any_port:
            transport.sendto(payload, (address, port))
        else:
            transport.sendto(payload)

    try:
        start = loop.time()
        send()
        await _until(listener, start + timeout / 2, answered)
        if not answered():
            send()
            await _until(listener, start + timeout, answered)
        if more is not None and answered() and listener.datagrams:
            await _until(listener, loop.time() + GATHER, lambda: not more(listener.datagrams))
        return list(listener.datagrams)
    finally:
        transport.close()


def _summary(data: bytes, limit: int = 48) -> str:
    """A short, printable view of raw bytes."""
    text = repr(data[:limit])[2:-1]
    return f"{text}… ({len(data)} bytes)" if len(data) > limit else text


def unknown(port: int, probe: str, data: bytes, problem: str) -> Result:
    """Something answered, but not in a form the probe reads."""
    details = {"probe": probe, "malformed": [problem]}
    return Service(port, "udp", banner=_summary(data), details=details), []
