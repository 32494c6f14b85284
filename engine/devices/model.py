"""A device of the inventory and the findings about it, as the engine keeps them in memory and
in the ``devices`` and ``findings`` tables, and as the control API shows them; the risk score
that orders them."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from engine.model import Severity

# A finding's weight in the risk score: one critical finding outweighs several low ones.
WEIGHTS = {
    Severity.CRITICAL: 40,
    Severity.HIGH: 25,
    Severity.MEDIUM: 10,
    Severity.LOW: 3,
    Severity.INFO: 0,
}
# What an attacker can do with a finding, worst last; the worst one present picks the band
# of the risk score and the weights place the device within it, so remote root or working
# default credentials always rank above certificate hygiene, however much of it there is.
HYGIENE, EXPOSED, USABLE = 1, 2, 3
BANDS = {HYGIENE: (1, 34), EXPOSED: (35, 69), USABLE: (70, 100)}
REASONS = {USABLE: "usable by an attacker now", EXPOSED: "exposed", HYGIENE: "hygiene"}
TIERS = {
    # A login that works, or one that crosses in cleartext, or control without a login.
    "default-credentials": USABLE,
    "default-credential": USABLE,
    "telnet-cleartext": USABLE,
    "ftp-cleartext": USABLE,
    "http-basic-cleartext": USABLE,
    "http-login-cleartext": USABLE,
    "mqtt-anonymous": USABLE,
    "rtsp-no-auth": USABLE,
    "snmp-default-community": USABLE,
    "modbus-reachable": USABLE,
    # Reachable services that tell an attacker about the device or lend it to someone.
    "upnp-gateway": EXPOSED,
    "upnp-exposed": EXPOSED,
    "coap-exposed": EXPOSED,
    "mdns-exposed": EXPOSED,
    "ntp-mode6": EXPOSED,
    "old-software": EXPOSED,
    # Worth fixing, but nobody gets in through them today.
    "tls-expired": HYGIENE,
    "tls-not-yet-valid": HYGIENE,
    "tls-self-signed": HYGIENE,
    "tls-hostname-mismatch": HYGIENE,
    "tls-weak-key": HYGIENE,
    "tls-weak-signature": HYGIENE,
    "tls-old-protocol": HYGIENE,
    "tls-weak-cipher": HYGIENE,
    "ssh-weak-algorithms": HYGIENE,
}
MAX_ADDRESSES = 16

FindingKey = tuple[str, int | None, str]  # kind, port, proto: the same finding in two scans


@dataclass
class DeviceFinding:
    id: int
    device_id: int
    kind: str
    severity: Severity
    title: str
    detail: dict[str, Any]  # evidence, fix, confidence and where it came from
    port: int | None
    proto: str
    first_seen: float
    last_seen: float
    state: str = "open"  # "open", or "resolved" when a later check no longer finds it
    scan_id: int | None = None
    resolved: float | None = None

    @property
    def key(self) -> FindingKey:
        return (self.kind, self.port, self.proto)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device": self.device_id,
            "kind": self.kind,
            "severity": self.severity.label,
            "title": self.title,
            "evidence": self.detail.get("evidence", ""),
            "fix": self.detail.get("fix", ""),
            "confidence": self.detail.get("confidence", "high"),
            "source": self.detail.get("source", "scan"),
            "port": self.port,
            "proto": self.proto,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "state": self.state,
            "scan": self.scan_id,
            "resolved": self.resolved,
        }

    def row(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.device_id,
            self.kind,
            int(self.severity),
            self.title,
            json.dumps(self.detail),
            self.first_seen,
            self.last_seen,
            self.state,
            self.port,
            self.proto,
            self.scan_id,
            self.resolved,
        )


FINDING_COLUMNS = (
    "id, device_id, kind, severity, title, detail, first_seen, last_seen, state,"
    " port, proto, scan_id, resolved"
)


@dataclass
class Device:
    id: int
    first_seen: float
    last_seen: float
    mac: str | None = None
    ip: str = ""  # the address it was last seen at
    addresses: list[str] = field(default_factory=list)
    hostname: str = ""
    vendor: str = ""
    kind: str = ""
    kind_reason: str = ""
    state: str = "present"  # or "gone": not seen for [devices] gone_after
    services: list[dict[str, Any]] = field(default_factory=list)  # open ports, as scans saw them
    details: dict[str, Any] = field(default_factory=dict)  # dhcp, mdns, ssdp, tls
    seen_by: set[str] = field(default_factory=set)  # arp, ndp, ip, dhcp, mdns, ssdp, scan
    risk: int = 0
    last_scan: int | None = None
    notes: str = ""
    findings: dict[FindingKey, DeviceFinding] = field(default_factory=dict)  # the open ones
    # One of this box's own interfaces (known from them at each start, not stored).
    this_box: bool = False

    def add_address(self, address: str) -> list[str]:
        """Add ``address`` to the device's if new; returns the oldest ones dropped to keep
        MAX_ADDRESSES (never the one it is shown by)."""
        if address in self.addresses:
            return []
        self.addresses.append(address)
        dropped = []
        while len(self.addresses) > MAX_ADDRESSES:
            oldest = next(a for a in self.addresses if a != self.ip)
            self.addresses.remove(oldest)
            dropped.append(oldest)
        return dropped

    def absorb(self, other: Device) -> None:
        """Take in what ``other``, this device known apart until now, knew besides its addresses,
        findings and presence: the first and last sightings, what saw it, names,
        announcements, notes, and the services of the later scan."""
        self.first_seen = min(self.first_seen, other.first_seen)
        self.last_seen = max(self.last_seen, other.last_seen)
        self.seen_by |= other.seen_by
        self.hostname = self.hostname or other.hostname
        self.vendor = self.vendor or other.vendor
        later = other.last_scan is not None and (self.last_scan or 0) < other.last_scan
        scanned = other if later or self.last_scan is None else self
        tls = scanned.details.get("tls")
        self.details = {**other.details, **self.details}
        self.details.pop("tls", None)
        if tls:
            self.details["tls"] = tls
        self.services = scanned.services
        if later:
            self.last_scan = other.last_scan
        if other.notes and other.notes not in self.notes:
            self.notes = f"{self.notes}\n{other.notes}" if self.notes else other.notes

    def rescore(self) -> None:
        self.risk = risk_score(self.findings.values())

    def summary(self) -> dict[str, Any]:
        """What the inventory's table shows."""
        worst = max((f.severity for f in self.findings.values()), default=None)
        return {
            "id": self.id,
            "ip": self.ip,
            "addresses": list(self.addresses),
            "mac": self.mac or "",
            "hostname": self.hostname,
            "vendor": self.vendor,
            "kind": self.kind,
            "kind_reason": self.kind_reason,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "state": self.state,
            "ports": sorted(f"{s['port']}/{s['proto']}" for s in self.services),
            "findings": len(self.findings),
            "worst": worst.label if worst is not None else "",
            "risk": self.risk,
            "risk_reason": risk_reason(self.findings.values()),
            "seen_by": sorted(self.seen_by),
            "last_scan": self.last_scan,
            "this_box": self.this_box,
        }

    def to_json(self) -> dict[str, Any]:
        """Everything about it: the detail view and ``iotsec devices show``."""
        findings = sorted(self.findings.values(), key=lambda f: (-f.severity, f.kind, f.port or 0))
        return {
            **self.summary(),
            "services": self.services,
            "details": self.details,
            "notes": self.notes,
            "open_findings": [f.to_json() for f in findings],
        }

    def row(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.mac,
            self.ip,
            self.hostname,
            self.vendor,
            self.kind,
            self.first_seen,
            self.last_seen,
            self.notes,
            json.dumps(self.addresses),
            self.kind_reason,
            json.dumps(self.services),
            json.dumps(self.details),
            json.dumps(sorted(self.seen_by)),
            self.risk,
            self.state,
            self.last_scan,
        )


DEVICE_COLUMNS = (
    "id, mac, ip, hostname, vendor, kind, first_seen, last_seen, notes, addresses,"
    " kind_reason, services, details, seen_by, risk, state, last_scan"
)


def canonical(address: str) -> str:
    """An address as the inventory writes it (``ipaddress``'s form), or the text as given."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def tier(finding: DeviceFinding) -> int:
    """What an attacker can do with ``finding``: a kind not in TIERS by its severity (critical
    usable, low hygiene), a CVE on CISA's KEV list usable; an inferred (low-confidence) one
    a tier lower, since nobody proved it."""
    if finding.detail.get("kev"):
        found = USABLE
    elif finding.kind in TIERS:
        found = TIERS[finding.kind]
    else:
        found = {Severity.CRITICAL: USABLE, Severity.LOW: HYGIENE}.get(finding.severity, EXPOSED)
    return max(HYGIENE, found - 1) if finding.detail.get("confidence") == "low" else found


def _counted(findings: Any) -> list[DeviceFinding]:
    return [f for f in findings if f.severity > Severity.INFO]


def risk_score(findings: Any) -> int:
    """0-100 from the open findings: the worst tier's band, and within it the findings'
    weights (inferred ones half)."""
    counted = _counted(findings)
    if not counted:
        return 0
    total = 0.0
    for finding in counted:
        weight = WEIGHTS[finding.severity]
        total += weight / 2 if finding.detail.get("confidence") == "low" else weight
    low, high = BANDS[max(tier(f) for f in counted)]
    return low + round(min(100.0, total) * (high - low) / 100)


def risk_reason(findings: Any) -> str:
    """Why the risk is what it is, for people: the worst tier and its worst findings."""
    counted = _counted(findings)
    if not counted:
        return ""
    worst = max(tier(f) for f in counted)
    top = sorted((f for f in counted if tier(f) == worst), key=lambda f: (-f.severity, f.title))
    titles = list(dict.fromkeys(f.title for f in top))
    more = f" and {len(titles) - 2} more" if len(titles) > 2 else ""
    return f"{REASONS[worst]}: {'; '.join(titles[:2])}{more}"


def device_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Device:
    (
        id_,
        mac,
        ip,
        hostname,
        vendor,
        kind,
        first,
        last,
        notes,
        addresses,
        reason,
        services,
        details,
        seen_by,
        risk,
        state,
        last_scan,
    ) = row
    return Device(
        id=id_,
        first_seen=first,
        last_seen=last,
        mac=mac,
        ip=ip or "",
        addresses=json.loads(addresses),
        hostname=hostname or "",
        vendor=vendor or "",
        kind=kind or "",
        kind_reason=reason,
        state=state,
        services=json.loads(services),
        details=json.loads(details),
        seen_by=set(json.loads(seen_by)),
        risk=risk,
        last_scan=last_scan,
        notes=notes or "",
    )


def finding_from_row(row: sqlite3.Row | tuple[Any, ...]) -> DeviceFinding:
    (
        id_,
        device_id,
        kind,
        severity,
        title,
        detail,
        first,
        last,
        state,
        port,
        proto,
        scan_id,
        resolved,
    ) = row
    return DeviceFinding(
        id=id_,
        device_id=device_id,
        kind=kind,
        severity=Severity(severity),
        title=title,
        detail=json.loads(detail),
        port=port,
        proto=proto,
        first_seen=first,
        last_seen=last,
        state=state,
        scan_id=scan_id,
        resolved=resolved,
    )


def query_findings(
    conn: sqlite3.Connection,
    *,
    state: str,
    least: int = 0,
    device_id: int | None = None,
    limit: int = 200,
) -> list[DeviceFinding]:
    """Findings in ``state`` from the store, newest resolved first, at least ``least``
    severity, of one device or all."""
    where, params = ["state = ?", "severity >= ?"], [state, least]
    if device_id is not None:
        where.append("device_id = ?")
        params.append(device_id)
    cur = conn.execute(
        f"SELECT {FINDING_COLUMNS} FROM findings WHERE {' AND '.join(where)}"
        " ORDER BY resolved DESC, id DESC LIMIT ?",
        (*params, limit),
    )
    return [finding_from_row(row) for row in cur.fetchall()]
