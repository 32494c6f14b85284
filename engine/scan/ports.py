"""The TCP connect scan (nmap's ``-sT``: no privileges needed): every port of every host is
tried with a full connect, at most ``concurrency`` at once and ``rate`` new connects a second
per host. A port is open when the connect succeeds, closed when the host answers with a reset,
filtered when nothing comes back before the timeout (or the network says unreachable).

The timeout follows the host's measured round-trip time, as nmap's does: it starts at
``max_timeout`` and, as answers (open or closed) arrive, becomes the smoothed RTT plus four
deviations, never under ``min_timeout``; a port that timed out is tried once more with the
adapted timeout, so a lost SYN does not make an open port look filtered.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# The ports IoT devices listen on, nmap's top ports for embedded devices and the ones Mirai and
# its kin knock on: remote shells, web admin, cameras, brokers, industrial protocols.
TOP_IOT_PORTS = (
    21, 22, 23, 25, 53, 80, 81, 82, 88, 110, 111, 139, 143, 443, 445, 502, 554, 631, 1025,
    1080, 1400, 1443, 1883, 1900, 2000, 2222, 2323, 3000, 3306, 3389, 4443, 4567, 5000, 5001,
    5060, 5357, 5431, 5555, 5800, 5900, 6379, 6667, 7547, 8000, 8001, 8008, 8060, 8080, 8081,
    8082, 8088, 8089, 8181, 8443, 8554, 8800, 8880, 8883, 8888, 9000, 9001, 9090, 9100, 9200,
    9999, 10000, 10001, 20000, 37777, 47808, 49152, 49153, 50000, 55443, 60001,
)  # fmt: skip

UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN,
               errno.EACCES, errno.EPERM}  # fmt: skip


class PortsError(ValueError):
    """A port list that does not parse."""


def parse_ports(text: str) -> list[int]:
    """``22,80,8000-8100`` (nmap's syntax for TCP ports; ``-`` alone is 1-65535)."""
    text = text.strip()
    if text == "-":
        return list(range(1, 65536))
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                low, high = (int(p) if p else d for p, d in zip(part.split("-", 1), (1, 65535),
                                                              strict=True))  # fmt: skip
            else:
                low = high = int(part)
        except ValueError:
            raise PortsError(
                f"ports: {part!r} is not a port or range (e.g. 22,80,8000-8100)"
            ) from None
        if not 1 <= low <= high <= 65535:
            raise PortsError(f"ports: {part!r} is outside 1-65535")
        out.extend(range(low, high + 1))
    return sorted(set(out))


@dataclass
class RttEstimate:
    """RFC 6298's smoothed round-trip time, from the connects that got an answer."""

    min_timeout: float
    max_timeout: float
    srtt: float | None = None
    rttvar: float = 0.0

    def sample(self, rtt: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    @property
    def timeout(self) -> float:
        if self.srtt is None:
            return self.max_timeout
        return min(self.max_timeout, max(self.min_timeout, self.srtt + 4 * self.rttvar))


@dataclass
class HostPorts:
    address: str
    open: list[int] = field(default_factory=list)
    closed: int = 0
    filtered: int = 0
    rtt: RttEstimate | None = None
    elapsed: float = 0.0


class RateLimit:
    """At most ``rate`` starts a second (one every 1/rate s, without bursts)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        start = max(now, self.next)
        self.next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


async def connect(
    address: str, port: int, timeout: float, pending: dict[asyncio.Timeout, float] | None = None
) -> tuple[str, float]:
    """("open" | "closed" | "filtered", seconds it took). With ``pending``, the connect's
    timeout is registered there (with its start), so that it can be shortened as the RTT
    estimate improves while it waits."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    # A reset at close: an open port is not left in TIME_WAIT on our side, nor half-open on
    # a small device's.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    started = loop.time()
    deadline = asyncio.timeout_at(started + timeout)
    try:
        async with deadline:
            if pending is not None:
                pending[deadline] = started
            await loop.sock_connect(sock, (address, port))
        return "open", loop.time() - started
    except ConnectionRefusedError:
        return "closed", loop.time() - started
    except TimeoutError:
        return "filtered", loop.time() - started
    except OSError as exc:
        if exc.errno in UNREACHABLE:
            return "filtered", loop.time() - started
        raise
    finally:
        if pending is not None:
            pending.pop(deadline, None)
        sock.close()


async def scan_host(address: str, ports: Iterable[int], *, concurrency: int = 512,
                    rate: float = 2000.0, min_timeout: float = 0.1, max_timeout: float = 1.5,
                    progress: Callable[[int], None] | None = None,
                    limit: asyncio.Semaphore | None = None) -> HostPorts:  # fmt: skip
    """Scan ``ports`` of one host; ``limit`` shares a concurrency limit between hosts."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    result = HostPorts(address, rtt=RttEstimate(min_timeout, max_timeout))
    rtt = result.rtt
    assert rtt is not None
    gate = limit or asyncio.Semaphore(concurrency)
    pace = RateLimit(rate)
    retry: list[int] = []
    pending: dict[asyncio.Timeout, float] = {}

    def tighten() -> None:
        # Connects that started before the host's RTT was known wait only as long as the
        # estimate now says, not the first, cautious timeout.
        for deadline, began in list(pending.items()):
            wanted = began + rtt.timeout
            current = deadline.when()
            if current is not None and wanted < current:
                deadline.reschedule(max(wanted, loop.time()))

    async def one(port: int, last_try: bool) -> None:
        async with gate:
            await pace.wait()
            state, took = await connect(address, port, rtt.timeout, pending)
        if state == "filtered" and not last_try:
            retry.append(port)
            return
        if state != "filtered":
            rtt.sample(took)
            tighten()
        if state == "open":
            result.open.append(port)
        elif state == "closed":
            result.closed += 1
        else:
            result.filtered += 1
        if progress is not None:
            progress(1)

    await asyncio.gather(*(one(port, False) for port in ports))
    if retry:
        await asyncio.gather(*(one(port, True) for port in retry))
    result.open.sort()
    result.elapsed = time.monotonic() - started
    return result
