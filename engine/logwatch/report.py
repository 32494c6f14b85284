"""``iotsec logs test``: a log file read through a filter, counted the way ``fail2ban-regex``
counts (lines, matched, missed, ignored, hits per regex), with the failure lines per host and
the hosts a jail with ``maxretry`` failures within ``findtime`` would ban."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.logwatch.filters import Examiner, Filter
from engine.logwatch.lines import decode


def read_lines(path: str | Path) -> Iterator[str]:
    """The lines of a file as :func:`engine.logwatch.lines.decode` gives them."""
    with open(path, "rb") as handle:
        for raw in handle:
            yield decode(raw)


@dataclass
class Report:
    filter: Filter
    lines: int = 0
    matched: int = 0
    missed: int = 0
    ignored: int = 0
    noted: int = 0  # lines of a failure already counted (the filter's nofail)
    hits: list[int] = field(default_factory=list)
    hosts: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    missed_lines: list[str] = field(default_factory=list)

    def banned(self, maxretry: int, findtime: float) -> list[str]:
        """The hosts with at least ``maxretry`` failures within ``findtime`` seconds (by the
        lines' own times; lines without one count as the same instant)."""
        out = []
        for host, times in self.hosts.items():
            ordered = sorted(times)
            start = 0
            for end, ts in enumerate(ordered):
                while ts - ordered[start] > findtime:
                    start += 1
                if end - start + 1 >= maxretry:
                    out.append(host)
                    break
        return sorted(out, key=lambda h: (-len(self.hosts[h]), h))

    def as_json(self, maxretry: int, findtime: float) -> dict[str, Any]:
        return {
            "filter": self.filter.name,
            "mode": self.filter.mode,
            "lines": self.lines,
            "matched": self.matched,
            "missed": self.missed,
            "ignored": self.ignored,
            "noted": self.noted,
            "hosts": {h: len(t) for h, t in sorted(self.hosts.items())},
            "failregex": [
                {"regex": written, "hits": hits}
                for written, hits in zip(self.filter.written, self.hits, strict=True)
            ],
            "banned": self.banned(maxretry, findtime),
            "maxretry": maxretry,
            "findtime": findtime,
        }


def run(filter_: Filter, path: str | Path, keep_missed: int = 0,
        now: float | None = None) -> Report:  # fmt: skip
    """Read ``path`` through ``filter_``; keep up to ``keep_missed`` missed lines."""
    report = Report(filter_, hits=[0] * len(filter_.failregex))
    now = time.time() if now is None else now
    hosts = report.hosts
    examine = Examiner(filter_).examine
    for line in read_lines(path):
        report.lines += 1
        verdict = examine(line, now)
        if verdict.kind == "matched":
            report.matched += 1
            report.hits[verdict.regex] += 1
            hosts[verdict.host].append(verdict.ts if verdict.ts is not None else 0.0)
        elif verdict.kind == "ignored":
            report.ignored += 1
        elif verdict.kind == "noted":
            report.noted += 1
        else:
            report.missed += 1
            if len(report.missed_lines) < keep_missed:
                report.missed_lines.append(line)
    return report
