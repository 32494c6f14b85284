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
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.capture.live import can_capture
from engine.scan import oui
from engine.scan.ports import RateLimit, connect
from engine.scan.scope import Address

log = logging.getLogger("iotsec.scan")

T = TypeVar("T")

TCP_PORTS = (80, 443, 22, 23, 554, 8080, 1883)
TCP_TIMEOUT = 1.0
TCP_CONCURRENCY = 256
# A round of requests ends once no answer came for QUIET_RTTS times the slowest answer so far,
# within [floor, timeout]; before any answer, after the timeout. Answers that come late still
# count in the next round.
QUIET_RTTS = 4
ARP_TIMEOUT, ARP_RETRIES = 1.5, 1
# Answers on one segment come within a few ms, but a device in Wi-Fi power save gets a
# broadcast (an ARP request) only after the access point's next DTIM beacon: 102.4 ms apart
# (an ESP8266 answers ARP in 50-200 ms), 307 ms with a DTIM period of 3. The floor covers the
# common periods in the first round, and the retry round the longest. (nmap -T4: 0.1 s.)
ARP_QUIET = 0.3
# Rounds of half the single 1.5 s round there was: where nothing answers, a sweep takes as long
# as then, and a first answer up to 1.5 s late still counts. Echo requests go beyond a gateway,
# or to IPv6 neighbours not resolved yet, whose RTTs differ far more from host to host than on
# one segment: hence a higher floor, nmap -T4's timeout before any RTT is known.
ICMP_TIMEOUT, ICMP_RETRIES = 0.75, 1
ICMP_QUIET = 0.5
# One ARP request a millisecond: about 100 broadcasts between two beacons, under the 128 that a
# Linux access point buffers for its stations in power save (the oldest are dropped).
ARP_RATE = 1000
ETH_P_ARP, ETH_P_IP = 0x0806, 0x0800
ARP_REQUEST, ARP_REPLY = 1, 2
PACKET_OUTGOING = 4  # the pkttype of a frame this host sent, which a packet socket sees too
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


def on_link(targets: Iterable[Address]) -> dict[str, dict[Address, str]]:
    """The IPv4 targets to ask by ARP, by interface, each with this host's address on the way to
    it (the request's sender): those the routing table reaches directly (no gateway) over
    Ethernet, other than this host's own addresses."""
    v4 = [t for t in targets if t.version == 4]
    if not v4:
        return {}
    import scapy.route  # noqa: F401 - its import fills in conf.route
    from scapy.config import conf

    conf.route.resync()  # the table read at import may be stale in a long-running engine
    by_iface: dict[str, dict[Address, str]] = {}
    for target in v4:
        dev, source, gateway = conf.route.route(str(target), verbose=0)
        if gateway == "0.0.0.0" and source != str(target) and _is_ethernet(dev):
            by_iface.setdefault(dev, {})[target] = source
    return by_iface


class _Answers:
    """Which targets of a sweep were asked when and which answered, and so how long to wait for
    the others."""

    def __init__(self, floor: float, timeout: float) -> None:
        self.floor, self.timeout = floor, timeout
        self.sent: dict[Address, float] = {}  # the latest request to each target
        self.asked: dict[Address, int] = {}
        self.rtts: dict[Address, float] = {}
        self.slowest: float | None = None
        self.last = 0.0  # the latest request or answer
        self.news = asyncio.Event()  # an answer came: the wait may end sooner, or go on

    def request(self, target: Address, at: float) -> None:
        self.sent[target] = self.last = at
        self.asked[target] = self.asked.get(target, 0) + 1

    def answer(self, target: Address) -> bool:
        """Counts ``target``'s answer; False when it was not asked, or answered already."""
        if target not in self.sent or target in self.rtts:
            return False
        self.last = time.monotonic()
        self.rtts[target] = rtt = self.last - self.sent[target]
        if self.asked[target] == 1:  # after a retry, which request was answered is unknown
            self.slowest = max(rtt, self.slowest or 0.0)
        self.news.set()
        return True

    def quiet(self) -> float:
        if self.slowest is None:  # nothing to adapt to: no answer, or the segment is empty
            return self.timeout
        return min(self.timeout, max(self.floor, QUIET_RTTS * self.slowest))

    async def settle(self) -> None:
        """Until every target asked has answered, or none did for :meth:`quiet` seconds."""
        while len(self.rtts) < len(self.sent):
            left = self.last + self.quiet() - time.monotonic()
            if left <= 0:
                return
            self.news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.news.wait(), left)


async def _ask(
    answers: _Answers,
    targets: list[Address],
    send: Callable[[Address], Awaitable[bool]],
    retries: int,
    pace: RateLimit | None = None,
    requests_out: asyncio.Event | None = None,
) -> None:
    """A request to each target (``send`` says whether it went out), then ``retries`` more
    rounds to the silent ones; each round ends as :meth:`_Answers.settle` says.
    ``requests_out`` is set once the first round's requests are out."""
    for _ in range(1 + retries):
        silent = [t for t in targets if t not in answers.rtts]
        if not silent:
            return
        for target in silent:
            if target in answers.rtts:  # its answer to the round before came meanwhile
                continue
            if pace is not None:
                await pace.wait()
            at = time.monotonic()
            if await send(target):
                answers.request(target, at)
        if requests_out is not None:
            requests_out.set()
        await answers.settle()


def _arp_request(mac: bytes, source: Address, target: Address) -> bytes:
    """An Ethernet broadcast: who has ``target``? tell ``source`` (at ``mac``)."""
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, ARP_REQUEST)
    ethernet = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    return ethernet + arp + mac + source.packed + b"\0" * 6 + target.packed


def _arp_reply(frame: bytes) -> tuple[bytes, str] | None:
    """(sender's IPv4 address, packed; its MAC) of an ARP reply in an Ethernet frame."""
    header = (ARPHRD_ETHER, ETH_P_IP, 6, 4, ARP_REPLY)
    if len(frame) < 42 or struct.unpack_from("!HHBBH", frame, 14) != header:
        return None
    return frame[28:32], frame[22:28].hex(":")


async def _arp_on(
    iface: str,
    sources: dict[Address, str],
    timeout: float,
    retries: int,
    requests_out: asyncio.Event | None,
) -> dict[str, tuple[str, float]]:
    """ip -> (mac, rtt) of the targets that answer an ARP who-has on ``iface``, each asked from
    its source address; see :func:`_ask`."""
    loop = asyncio.get_running_loop()
    by_packed = {t.packed: t for t in sources}
    answers = _Answers(ARP_QUIET, timeout)
    macs: dict[Address, str] = {}
    # No protocol until bound: with one, the socket would take in every interface's ARP.
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
        sock.bind((iface, ETH_P_ARP))
        sock.setblocking(False)
        mac = sock.getsockname()[4]

        def take(frame: bytes, pkttype: int) -> None:
            reply = _arp_reply(frame) if pkttype != PACKET_OUTGOING else None
            target = by_packed.get(reply[0]) if reply else None
            if reply and target is not None and answers.answer(target):
                macs[target] = reply[1]

        async def receive() -> None:
            while True:
                frame, (_, _, pkttype, _, _) = await loop.sock_recvfrom(sock, 128)
                take(frame, pkttype)

        async def send(target: Address) -> bool:
            source = ipaddress.IPv4Address(sources[target])
            await loop.sock_sendall(sock, _arp_request(mac, source, target))
            return True

        receiver = asyncio.create_task(receive())
        try:
            pace = RateLimit(ARP_RATE)
            await _ask(answers, list(sources), send, retries, pace, requests_out)
        finally:
            receiver.cancel()  # and wait for it: its reader must go before the socket closes
            await asyncio.gather(receiver, return_exceptions=True)
        for frame, (_, _, pkttype, _, _) in _queued(sock, 128):
            take(frame, pkttype)
    return {str(t): (macs[t], rtt) for t, rtt in answers.rtts.items()}


def _queued(sock: socket.socket, size: int) -> list[tuple[bytes, Any]]:
    """What waits unread in a non-blocking socket: answers that came while the event loop was
    busy elsewhere (a loaded engine) and that the wait's end would otherwise throw away."""
    frames = []
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while len(frames) < 65536:
            frames.append(sock.recvfrom(size))
    return frames


async def _arp_replies(
    groups: dict[str, dict[Address, str]],
    timeout: float,
    retries: int,
    requests_out: asyncio.Event | None = None,
) -> dict[str, tuple[str, float]]:
    """ip -> (mac, rtt) of the targets that answer an ARP who-has, by interface.
    ``requests_out`` is set once the first round of requests is out on one of them."""
    if not groups:
        return {}
    if not can_send_raw():
        raise PermissionError(GRANT_HINT.format(how="ARP"))
    found: dict[str, tuple[str, float]] = {}
    for replies in await _together(
        *(_arp_on(dev, sources, timeout, retries, requests_out) for dev, sources in groups.items())
    ):
        found.update(replies)
    return found


async def arp_sweep(
    targets: Iterable[Address],
    timeout: float = ARP_TIMEOUT,
    retries: int = ARP_RETRIES,
) -> dict[str, str]:
    """ip -> MAC of the IPv4 targets on a directly connected segment that answer ARP (see
    :func:`on_link`); the others are not asked. Unanswered requests are sent ``retries`` more
    times; each round waits until no answer came for a while adapted to the answers' round-trip
    times, and at most ``timeout`` seconds. Raises PermissionError without CAP_NET_RAW."""
    groups = await asyncio.to_thread(on_link, list(targets))
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


async def _ping(
    version: int, targets: list[Address], timeout: float, retries: int
) -> dict[str, float]:
    """An echo request to each target, then to those still silent ``retries`` more times; each
    round waits as :meth:`_Answers.settle` says."""
    family, proto = ((socket.AF_INET6, socket.IPPROTO_ICMPV6) if version == 6
                     else (socket.AF_INET, socket.IPPROTO_ICMP))  # fmt: skip
    try:
        sock = socket.socket(family, socket.SOCK_RAW, proto)
    except PermissionError:
        raise PermissionError(GRANT_HINT.format(how="ICMP echo")) from None
    loop = asyncio.get_running_loop()
    ident = int.from_bytes(os.urandom(2), "big")  # tells our replies from other pings'
    seqs = {target: seq for seq, target in enumerate(targets)}
    answers = _Answers(ICMP_QUIET, timeout)

    def take(packet: bytes, source: Any) -> None:
        reply = _echo_reply(version, packet)
        if reply is None or reply[0] != ident or reply[1] >= len(targets):
            return
        target = targets[reply[1]]
        if ipaddress.ip_address(source[0].partition("%")[0]).packed == target.packed:
            answers.answer(target)

    async def receive() -> None:
        while True:
            take(*await loop.sock_recvfrom(sock, 2048))

    async def send(target: Address) -> bool:
        try:
            await loop.sock_sendto(sock, _echo_request(version, ident, seqs[target]),
                                   _sockaddr(target))  # fmt: skip
        except OSError:  # no route to it, an address the kernel refuses to send to
            return False
        return True

    with sock:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, ICMP_RCVBUF)
        receiver = asyncio.create_task(receive())
        try:
            await _ask(answers, targets, send, retries)
        finally:
            receiver.cancel()  # and wait for it: its reader must go before the socket closes
            await asyncio.gather(receiver, return_exceptions=True)
        for packet, source in _queued(sock, 2048):
            take(packet, source)
    return {str(target): rtt for target, rtt in answers.rtts.items()}


async def _icmp_rtts(targets: Iterable[Address], timeout: float, retries: int) -> dict[str, float]:
    unique = list(dict.fromkeys(targets))
    groups = [[t for t in unique if t.version == v] for v in (4, 6)]
    found: dict[str, float] = {}
    for replies in await _together(
        *(_ping(group[0].version, group, timeout, retries) for group in groups if group)
    ):
        found.update(replies)
    return found


async def icmp_sweep(
    targets: Iterable[Address], timeout: float = ICMP_TIMEOUT, retries: int = ICMP_RETRIES
) -> set[str]:
    """The targets (IPv4 and IPv6) that answer an ICMP echo request. Unanswered requests are
    sent ``retries`` more times; each round waits until no answer came for a while adapted to
    the answers' round-trip times, and at most ``timeout`` seconds. Raises PermissionError
    without CAP_NET_RAW."""
    return set(await _icmp_rtts(targets, timeout, retries))


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


async def _read_vendors(requests_out: asyncio.Event) -> None:
    """The OUI database read in a thread while ARP answers are awaited, not while requests go
    out: the read holds the GIL and would hold up their pacing."""
    await requests_out.wait()
    await asyncio.to_thread(oui.database)


def _order(host: Host) -> tuple[int, int]:
    address = ipaddress.ip_address(host.address.partition("%")[0])
    return address.version, int(address)


async def discover(targets: Iterable[Address]) -> list[Host]:
    """The targets that are up, in address order. With CAP_NET_RAW, ARP for the IPv4 targets on
    a connected Ethernet segment (with their MAC and its vendor) and ICMP echo for the others,
    both at once; without it, :func:`tcp_ping`."""
    unique = list(dict.fromkeys(targets))
    if not can_send_raw():
        rtts = await _tcp_rtts(unique, TCP_PORTS, TCP_TIMEOUT, TCP_CONCURRENCY)
        return sorted((Host(a, "tcp", rtt=rtt) for a, rtt in rtts.items()), key=_order)
    groups = await asyncio.to_thread(on_link, unique)  # scapy's import, routes
    asked = {t for group in groups.values() for t in group}
    requests_out = asyncio.Event()
    arp, icmp, _ = await _together(
        _arp_replies(groups, ARP_TIMEOUT, ARP_RETRIES, requests_out),
        _icmp_rtts([t for t in unique if t not in asked], ICMP_TIMEOUT, ICMP_RETRIES),
        _read_vendors(requests_out) if groups else asyncio.sleep(0),
    )
    hosts = [Host(a, "arp", mac, oui.vendor(mac), rtt) for a, (mac, rtt) in arp.items()]
    hosts += [Host(a, "icmp", rtt=rtt) for a, rtt in icmp.items()]
    log.info(
        "discovery: ARP asked %d on %s, %d answered; ICMP asked %d, %d answered",
        len(asked), ", ".join(groups) or "no Ethernet link", len(arp),
        len(unique) - len(asked), len(icmp),
    )  # fmt: skip
    return sorted(hosts, key=_order)
