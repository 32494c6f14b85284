"""Our own scans' traffic: while a scan runs, and a short grace after it for late answers, what
passes between the addresses of this box that it leaves from and its targets raises no rule
alert and no new-device alert. The rule hits it would have raised are counted on the scan
(``suppressed_hits`` in its summary): the capture sees the scan, and a telnet login try or an
SNMP ``public`` probe from ourselves is not an attack."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

from engine.model import AlertEvent
from engine.scan.scope import Address

GRACE = 10.0  # seconds after a scan ends that its late answers are still ours


@dataclass
class ScanTraffic:
    """One scan's traffic: its source addresses (ours), its targets and its time."""

    scan_id: int
    ours: frozenset[str]
    targets: frozenset[str]
    start: float
    until: float | None = None  # its end and the grace; None while it runs
    suppressed: int = 0

    def holds(self, src: str, dst: str, ts: float) -> bool:
        if ts < self.start or (self.until is not None and ts > self.until):
            return False
        ours, targets = self.ours, self.targets
        return (src in ours and dst in targets) or (src in targets and dst in ours)

    def looks_at(self, address: str, now: float) -> bool:
        return address in self.targets and (self.until is None or now <= self.until)


class OwnScans:
    """The scans whose traffic is ours now."""

    def __init__(self, grace: float = GRACE) -> None:
        self.grace = grace
        self.scans: dict[int, ScanTraffic] = {}

    def begin(self, scan_id: int, ours: Iterable[str], targets: Iterable[Address],
              start: float) -> None:  # fmt: skip
        self.scans[scan_id] = ScanTraffic(
            scan_id, frozenset(ours), frozenset(str(t) for t in targets), start
        )

    def end(self, scan_id: int, finished: float) -> ScanTraffic | None:
        scan = self.scans.get(scan_id)
        if scan is not None:
            scan.until = finished + self.grace
        return scan

    def suppress(self, event: AlertEvent) -> bool:
        """Whether a rule's alert is our scan's traffic (then counted on that scan)."""
        for scan in self.scans.values():
            if scan.holds(event.src, event.dst, event.ts):
                scan.suppressed += 1
                return True
        return False

    def quiet(self, address: str) -> bool:
        """Whether a device first seen at ``address`` now is one a scan of ours looks at."""
        now = time.time()
        return any(scan.looks_at(address, now) for scan in self.scans.values())

    def expire(self, now: float) -> list[ScanTraffic]:
        """Forget the scans whose grace is over; returns them."""
        over = [s for s in self.scans.values() if s.until is not None and now > s.until]
        for scan in over:
            del self.scans[scan.scan_id]
        return over


def source_addresses(targets: Iterable[Address]) -> set[str]:
    """The addresses of this box that packets to ``targets`` leave from (as the kernel's
    routes choose them: a UDP socket connected to each target, which sends nothing)."""
    found = set()
    for target in targets:
        family = socket.AF_INET6 if target.version == 6 else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((str(target), 9))
                found.add(str(sock.getsockname()[0]).partition("%")[0])
        except OSError:
            continue  # no route to it: the scan cannot reach it either
    return found
