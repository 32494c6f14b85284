"""A jail's memory, as fail2ban keeps it: the failures of each host within ``findtime`` (by
the lines' own times, so a replayed log gives the answer watching it live did), and the alert
when a host reaches ``maxretry``. After the alert the host starts again from nothing."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from engine.config import JailConfig
from engine.durations import format_duration
from engine.logwatch.filters import Filter
from engine.model import AlertEvent, Severity
from engine.text import printable

# The hosts a jail remembers at most: past this, the one whose last failure is oldest goes.
MAX_HOSTS = 50_000
# Evidence keeps this many lines of a host's failures (the newest), each at most LINE_LIMIT.
EVIDENCE_LINES = 20
LINE_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Failure:
    ts: float
    line: str
    source: str  # the file, "syslog" or "journal"
    user: str = ""


class Jail:
    def __init__(self, config: JailConfig, filters: list[Filter]) -> None:
        self.config = config
        self.name = config.name
        self.filters = filters
        self.severity = Severity.parse(config.severity)
        self.failures: dict[str, deque[Failure]] = {}
        self.newest = 0.0  # the newest line time seen
        self.matched = 0  # failure lines, ever
        self.tripped = 0  # alerts raised
        self.state = "running"

    def fail(self, host: str, failure: Failure) -> AlertEvent | None:
        """Count one failure of ``host``; the alert when it reaches maxretry within findtime."""
        self.matched += 1
        self.newest = max(self.newest, failure.ts)
        findtime = self.config.findtime
        failures = self.failures.pop(host, None)  # re-inserted last: the dict stays in age order
        if failures is None:
            failures = deque(maxlen=self.config.maxretry)
            if len(self.failures) >= MAX_HOSTS:
                del self.failures[next(iter(self.failures))]
        failures.append(failure)
        while failures and failures[0].ts < failure.ts - findtime:
            failures.popleft()
        if len(failures) < self.config.maxretry:
            self.failures[host] = failures
            return None
        self.tripped += 1
        return self._alert(host, list(failures))

    def _alert(self, host: str, failures: list[Failure]) -> AlertEvent:
        config = self.config
        span = failures[-1].ts - failures[0].ts
        users = sorted({f.user for f in failures if f.user})
        evidence: dict[str, Any] = {
            "jail": self.name,
            "filters": [f.name for f in self.filters],
            "failures": len(failures),
            "maxretry": config.maxretry,
            "findtime": config.findtime,
            "first": failures[0].ts,
            "last": failures[-1].ts,
            "sources": sorted({f.source for f in failures}),
            "lines": [printable(f.line, limit=LINE_LIMIT) for f in failures[-EVIDENCE_LINES:]],
            "action": "drop" if config.ban else "alert",
            "jail_state": self.status_counts(),
        }
        if users:
            evidence["users"] = [printable(u, limit=64) for u in users[:10]]
        count = f"{len(failures)} failure{'s' if len(failures) != 1 else ''}"
        title = (
            f"{self.name}: {count} from {printable(host, limit=80)} "
            f"in {format_duration(span) if span >= 1 else 'under a second'}"
        )
        # As fail2ban: the failing host is the attacker; the target is the jail's service.
        return AlertEvent(self.severity, "logwatch", self.name, title, src=host, evidence=evidence,
                          attacker=host, target=self.name)  # fmt: skip

    def currently_failed(self) -> int:
        """Hosts with failures inside findtime of the newest line seen."""
        since = self.newest - self.config.findtime
        return sum(
            1 for failures in self.failures.values() if failures and failures[-1].ts >= since
        )

    def status_counts(self) -> dict[str, int]:
        return {
            "currently_failed": self.currently_failed(),
            "total_failed": self.matched,
            "alerts": self.tripped,
        }

    def hosts(self, limit: int = 50) -> list[dict[str, Any]]:
        """The hosts with failures now, most failures first."""
        since = self.newest - self.config.findtime
        rows = [
            {"host": host, "failures": len(f), "last": f[-1].ts}
            for host, f in self.failures.items()
            if f and f[-1].ts >= since
        ]
        rows.sort(key=lambda r: (-r["failures"], -r["last"]))
        return rows[:limit]
