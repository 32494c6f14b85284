"""Host discovery: which of the target addresses answer, and for those on a directly connected
Ethernet segment their MAC and its vendor. ARP and ICMP echo need CAP_NET_RAW; without it a
TCP connect to a few common ports finds the hosts that answer with a SYN-ACK or a RST.

Only the addresses given are ever probed (the caller has checked them against the scope), and
addresses are never resolved as names.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from engine.capture.live import can_capture
from engine.scan import oui
from engine.scan.ports import connect
from engine.scan.scope import Address

T = TypeVar("T")

TCP_PORTS = (80, 443, 22, 23, 554, 8080, 1883)
TCP_TIMEOUT = 1.0
TCP_CONCURRENCY = 256
ARP_TIMEOUT, ARP_RETRIES = 1.5, 1
ICMP_TIMEOUT = 1.5
ARPHRD_ETHER = 1
ICMP_ECHO, ICMP_ECHO_REPLY = 8, 0
ICMP6_ECHO, ICMP6_ECHO_REPLY = 128, 129
ICMP_RCVBUF = 1 << 20  # every ICMP packet the host receives lands in the raw socket

GRANT_HINT = (
    "host discovery by {how} needs CAP_NET_RAW: run the engine as root, give the service "
    "AmbientCapabilities=CAP_NET_RAW (see iotsec.service), or grant the interpreter: sudo "
    "setcap cap_net_raw+eip $(readlink -f .venv/bin/python); without it, discovery falls back "
    "to TCP connects"
)


@dataclass(frozen=True)
class Host:
    """One address that answered, and how: "arp", "icmp" or "tcp"."""

    address: str
    how: str
    mac: str = ""  # only from ARP: the segment's own hosts
    vendor: str = ""  # from the MAC's OUI; "" when unknown or randomised
    rtt: float | None = None  # seconds from the probe to its answer


def can_send_raw() -> bool:
    """Whether this process may send ARP and ICMP itself (it has CAP_NET_RAW)."""
    return can_capture()[0]


async def _together(*steps: Awaitable[T]) -> list[T]:
    """The results of ``steps`` run at once; when one fails the others are cancelled, where
    asyncio.gather would leave them running."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


def _sockaddr(address: Address, port: int = 0) -> tuple:
    """The socket address of ``address``; AI_NUMERICHOST makes sure nothing is resolved."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    found = socket.getaddrinfo(str(address), port, family, socket.SOCK_DGRAM, 0,
                               socket.AI_NUMERICHOST)  # fmt: skip
    return found[0][4]


def _is_ethernet(iface: str) -> bool:
    try:
        return int(Path(f"/sys/class/net/{iface}/type").read_text()) == ARPHRD_ETHER
    except (OSError, ValueError):
        return False


def on_link(targets: Iterable[Address], iface: str | None = None) -> dict[str, list[Address]]:
    """The IPv4 targets to ask by ARP, by interface: those the routing table reaches directly
    (no gateway) over Ethernet, other than this host's own addresses. With ``iface``, every
    IPv4 target, on that interface: the caller knows they are on its segment."""
    v4 = [t for t in targets if t.version == 4]
    if iface is not None:
        return {iface: v4} if v4 else {}
    import scapy.route  # noqa: F401 - its import fills in conf.route
    from scapy.config import conf

    conf.route.resync()  # the table read at import may be stale in a long-running engine
    by_iface: dict[str, list[Address]] = {}
    for target in v4:
        dev, source, gateway = conf.route.route(str(target))
        if gateway == "0.0.0.0" and source != str(target) and _is_ethernet(dev):
            by_iface.setdefault(dev, []).append(target)
    return by_iface


def _arp_on(
    iface: str, targets: list[Address], timeout: float, retries: int
) -> dict[str, tuple[str, float]]:
    from scapy.layers.l2 import ARP, Ether
    from scapy.sendrecv import srp

    request = Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=[str(t) for t in targets])
    answered, _ = srp(request, iface=iface, timeout=timeout, retry=retries, verbose=False)
    return {str(r[ARP].psrc): (str(r[ARP].hwsrc), float(r.time - s.sent_time)) for s, r in answered}


async def _arp_replies(
    groups: dict[str, list[Address]], timeout: float, retries: int
) -> dict[str, tuple[str, float]]:
    """ip -> (mac, rtt) of the targets that answer an ARP who-has, by interface."""
    if not groups:
        return {}
    if not can_send_raw():
        raise PermissionError(GRANT_HINT.format(how="ARP"))
    found: dict[str, tuple[str, float]] = {}
    for replies in await _together(
        *(asyncio.to_thread(_arp_on, dev, group, timeout, retries) for dev, group in groups.items())
    ):
        found.update(replies)
    return found


async def arp_sweep(
    targets: Iterable[Address],
    iface: str | None = None,
    timeout: float = ARP_TIMEOUT,
    retries: int = ARP_RETRIES,
) -> dict[str, str]:
    """ip -> MAC of the IPv4 targets on a directly connected segment that answer ARP (see
    :func:`on_link`); the others are not asked. Unanswered requests are sent ``retries`` more
    times, each round waiting ``timeout`` seconds. Raises PermissionError without CAP_NET_RAW."""
    groups = await asyncio.to_thread(on_link, list(targets), iface)
    replies = await _arp_replies(groups, timeout, retries)
    return {address: mac for address, (mac, _) in replies.items()}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(version: int, ident: int, seq: int) -> bytes:
    if version == 6:  # the kernel fills in the ICMPv6 checksum (it covers a pseudo-header)
        return struct.pack("!BBHHH", ICMP6_ECHO, 0, 0, ident, seq) + b"iotsec"
    unsummed = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq) + b"iotsec"
    return struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(unsummed), ident, seq) + b"iotsec"


def _echo_reply(version: int, packet: bytes) -> tuple[int, int] | None:
    """(identifier, sequence) of an echo reply; IPv4 raw sockets include the IP header."""
    if version == 4:
        packet = packet[(packet[0] & 0x0F) * 4 :] if packet else b""
    if len(packet) < 8:
        return None
    kind, _, _, ident, seq = struct.unpack_from("!BBHHH", packet)
    return (ident, seq) if kind == (ICMP6_ECHO_REPLY if version == 6 else ICMP_ECHO_REPLY) else None


async def _ping(version: int, targets: list[Address], timeout: float) -> dict[str, float]:
    """One echo request to each target, then replies until all came or ``timeout`` passed
    after the last request."""
    family, proto = ((socket.AF_INET6, socket.IPPROTO_ICMPV6) if version == 6
                     else (socket.AF_INET, socket.IPPROTO_ICMP))  # fmt: skip
    try:
        sock = socket.socket(family, socket.SOCK_RAW, proto)
    except PermissionError:
        raise PermissionError(GRANT_HINT.format(how="ICMP echo")) from None
    loop = asyncio.get_running_loop()
    ident = int.from_bytes(os.urandom(2), "big")  # tells our replies from other pings'
    sent: dict[int, float] = {}  # sequence number (the target's index) -> time sent
    pending: set[int] = set()
    answered = asyncio.Event()
    found: dict[str, float] = {}

    async def receive() -> None:
        while True:
            packet, source = await loop.sock_recvfrom(sock, 2048)
            reply = _echo_reply(version, packet)
            if reply is None or reply[0] != ident or reply[1] not in pending:
                continue
            target = targets[reply[1]]
            if ipaddress.ip_address(source[0].partition("%")[0]).packed == target.packed:
                found[str(target)] = time.monotonic() - sent[reply[1]]
                pending.discard(reply[1])
                if not pending:
                    answered.set()

    with sock:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ICMP_RCVBUF)
        receiver = asyncio.create_task(receive())
        try:
            for seq, target in enumerate(targets):
                sent[seq] = time.monotonic()
                pending.add(seq)
                try:
                    await loop.sock_sendto(sock, _echo_request(version, ident, seq),
                                           _sockaddr(target))  # fmt: skip
                except OSError:  # no route to it, an address the kernel refuses to send to
                    pending.discard(seq)
            if pending:
                answered.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered.wait(), timeout)
        finally:
            receiver.cancel()  # and wait for it: its reader must go before the socket closes
            await asyncio.gather(receiver, return_exceptions=True)
    return found


async def _icmp_rtts(targets: Iterable[Address], timeout: float) -> dict[str, float]:
    unique = list(dict.fromkeys(targets))
    groups = [[t for t in unique if t.version == v] for v in (4, 6)]
    found: dict[str, float] = {}
    for replies in await _together(
        *(_ping(group[0].version, group, timeout) for group in groups if group)
    ):
        found.update(replies)
    return found


async def icmp_sweep(targets: Iterable[Address], timeout: float = ICMP_TIMEOUT) -> set[str]:
    """The targets (IPv4 and IPv6) that answer an ICMP echo request within ``timeout`` seconds
    of the last request sent. Raises PermissionError without CAP_NET_RAW."""
    return set(await _icmp_rtts(targets, timeout))


async def _tcp_rtts(
    targets: Iterable[Address], ports: Iterable[int], timeout: float, concurrency: int
) -> dict[str, float]:
    unique, ports = list(dict.fromkeys(targets)), list(ports)
    # Port by port, so a host that answers on the first port costs no more connects.
    probes = ((address, port) for port in ports for address in unique)
    found: dict[str, float] = {}

    async def worker() -> None:
        for address, port in probes:
            if str(address) in found:
                continue
            state, took = await connect(str(address), port, timeout)
            if state != "filtered":  # open, or closed: the host answered with a RST
                found.setdefault(str(address), took)

    await _together(*(worker() for _ in range(max(1, min(concurrency, len(unique) * len(ports))))))
    return found


async def tcp_ping(
    targets: Iterable[Address],
    ports: Iterable[int] = TCP_PORTS,
    timeout: float = TCP_TIMEOUT,
    concurrency: int = TCP_CONCURRENCY,
) -> set[str]:
    """The targets that answer a TCP connect on any of ``ports``, whether they accept it or
    refuse it with a RST; no privileges needed. At most ``concurrency`` connects at a time."""
    return set(await _tcp_rtts(targets, ports, timeout, concurrency))


def _order(host: Host) -> tuple[int, int]:
    address = ipaddress.ip_address(host.address.partition("%")[0])
    return address.version, int(address)


async def discover(
    targets: Iterable[Address], *, privileged: bool | None = None, iface: str | None = None
) -> list[Host]:
    """The targets that are up, in address order. With CAP_NET_RAW (``privileged`` None: find
    out), ARP for the IPv4 targets on a connected Ethernet segment (with their MAC and its
    vendor) and ICMP echo for the others, both at once; without it, :func:`tcp_ping`."""
    unique = list(dict.fromkeys(targets))
    if privileged is None:
        privileged = can_send_raw()
    elif privileged and not can_send_raw():
        raise PermissionError(GRANT_HINT.format(how="ARP and ICMP"))
    if not privileged:
        rtts = await _tcp_rtts(unique, TCP_PORTS, TCP_TIMEOUT, TCP_CONCURRENCY)
        return sorted((Host(a, "tcp", rtt=rtt) for a, rtt in rtts.items()), key=_order)
    groups = await asyncio.to_thread(on_link, unique, iface)  # scapy's import, routes
    asked = {t for group in groups.values() for t in group}
    arp, icmp = await _together(
        _arp_replies(groups, ARP_TIMEOUT, ARP_RETRIES),
        _icmp_rtts([t for t in unique if t not in asked], ICMP_TIMEOUT),
    )
    hosts = [Host(a, "arp", mac, oui.vendor(mac), rtt) for a, (mac, rtt) in arp.items()]
    hosts += [Host(a, "icmp", rtt=rtt) for a, rtt in icmp.items()]
    return sorted(hosts, key=_order)
