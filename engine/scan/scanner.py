"""A scan of targets inside the scope: discovery of the live hosts (for more than one target),
the TCP connect scan of their ports, what answers on each open port, a TLS audit of the TLS
services, and the common IoT UDP services probed with real requests. The result is a list of
hosts, each with its open ports and findings; ``iotsec scan --json`` prints it as it is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.config import ScanConfig
from engine.scan import creds
from engine.scan.discovery import discover
from engine.scan.findings import Finding, Service
from engine.scan.ports import TOP_IOT_PORTS, scan_host
from engine.scan.probes import identify
from engine.scan.scope import Address
from engine.scan.tls_audit import audit_tls
from engine.scan.udp.probe import probe_udp

# Services worth a TLS audit: the probe spoke TLS to them.
TLS_SERVICES = frozenset({"https", "mqtts"})


@dataclass
class Options:
    ports: list[int] = field(default_factory=lambda: list(TOP_IOT_PORTS))
    check_default_creds: bool = False
    udp: bool = True
    discover: bool | None = None  # None: only when more than one target is given


def profile_ports(profile: str) -> list[int]:
    """quick: the top IoT ports; full: every TCP port."""
    if profile == "full":
        return list(range(1, 65536))
    return list(TOP_IOT_PORTS)


@dataclass
class HostResult:
    address: str
    mac: str = ""
    vendor: str = ""
    how: str = ""  # how it was found up: "arp", "icmp", "tcp", or "given"
    ports: list[Service] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    tls: dict[int, dict[str, Any]] = field(default_factory=dict)
    closed: int = 0
    filtered: int = 0
    creds_checked: bool = False
    elapsed: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "mac": self.mac,
            "vendor": self.vendor,
            "found_by": self.how,
            "ports": [s.to_json() for s in sorted(self.ports, key=lambda s: (s.proto, s.port))],
            "findings": [f.to_json() for f in sorted(self.findings,
                                                     key=lambda f: (-f.severity, f.kind))],
            "tls": {str(port): report for port, report in sorted(self.tls.items())},
            "closed": self.closed,
            "default_creds_checked": self.creds_checked,
            "filtered": self.filtered,
            "elapsed": round(self.elapsed, 3),
        }  # fmt: skip


Progress = Callable[[str, int, int], None]  # (what, done, total)


async def scan(targets: list[Address], options: Options, config: ScanConfig,
               progress: Progress | None = None) -> list[HostResult]:  # fmt: skip
    """Scan ``targets`` (already expanded and checked against the scope)."""
    report = progress or (lambda what, done, total: None)
    hosts: list[HostResult]
    wanted = options.discover if options.discover is not None else len(targets) > 1
    if wanted:
        report("discovery", 0, len(targets))
        found = await discover(targets)
        hosts = [HostResult(h.address, h.mac, h.vendor, h.how) for h in found]
        report("discovery", len(targets), len(targets))
    else:
        hosts = [HostResult(str(t), how="given") for t in targets]
    total = len(hosts) * len(options.ports)
    done = 0

    def counted(n: int) -> None:
        nonlocal done
        done += n
        report("ports", done, total)

    limit = asyncio.Semaphore(config.concurrency)
    await asyncio.gather(*(_scan_one(h, options, config, limit, counted) for h in hosts))
    report("done", total, total)
    return hosts


async def _scan_one(host: HostResult, options: Options, config: ScanConfig,
                    limit: asyncio.Semaphore, counted: Callable[[int], None]) -> None:  # fmt: skip
    started = time.monotonic()
    ports = await scan_host(host.address, options.ports, rate=config.rate,
                            min_timeout=config.min_timeout, max_timeout=config.max_timeout,
                            progress=counted, limit=limit)  # fmt: skip
    host.closed, host.filtered = ports.closed, ports.filtered
    identified = await asyncio.gather(*(identify(host.address, port) for port in ports.open))
    for service, findings in identified:
        host.ports.append(service)
        host.findings.extend(findings)
    audited = [s for s in host.ports if s.service in TLS_SERVICES]
    for service, tls in zip(audited, await asyncio.gather(
            *(audit_tls(host.address, s.port) for s in audited)), strict=True):  # fmt: skip
        host.tls[service.port] = tls.to_json()
        host.findings.extend(tls.findings)
    if options.udp:
        for service, findings in await probe_udp(host.address):
            host.ports.append(service)
            host.findings.extend(findings)
    if options.check_default_creds:
        host.creds_checked = True
        host.findings += await creds.check(host.address, host.ports,
                                           max_attempts=config.creds_max_attempts,
                                           delay=config.creds_delay)  # fmt: skip
    host.elapsed = time.monotonic() - started
