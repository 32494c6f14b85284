"""The engine's own small types: what crosses between parts, the store and the control API."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Alert severity; a higher value is more urgent."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of {names})") from None


class AlertState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    SILENCED = "silenced"

    @classmethod
    def parse(cls, text: str) -> AlertState:
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown alert state {text!r} (expected one of {names})") from None


class Role(enum.IntEnum):
    """What an operator may do; each role may do everything the lower ones may."""

    VIEWER = 0
    OPERATOR = 1
    ADMIN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


# Parts whose alerts describe a device rather than something done to it.
DEVICE_SOURCES = frozenset({"devices", "scan", "serial"})


@dataclass(frozen=True)
class AlertEvent:
    """A detection, as any part (rules, log watch, scan, serial, an operator's inject) raises it."""

    severity: Severity
    source: str
    rule: str
    title: str
    src: str = ""
    dst: str = ""
    device: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    ts: float = 0.0
    # Which side did it and which side it was done to; empty: see :meth:`sides`.
    attacker: str = ""
    target: str = ""

    def sides(self) -> tuple[str, str]:
        """(attacker, target): as the producer said, else what the source implies. A finding
        about a device (inventory, scan, serial) has no attacker: the device is its target."""
        if self.attacker or self.target:
            return self.attacker, self.target
        if self.source in DEVICE_SOURCES:
            return "", self.src or self.dst
        return self.src, self.dst

    @property
    def fold_key(self) -> tuple[str, str, str]:
        """Alerts with the same key inside the fold window become one row with a count."""
        return (self.rule, self.src, self.dst)


@dataclass(slots=True)
class Alert:
    """One alert row: an event and everything the workflow added to it."""

    id: int
    severity: Severity
    source: str
    rule: str
    title: str
    src: str
    dst: str
    device: str
    first_seen: float
    last_seen: float
    count: int
    state: AlertState
    evidence: dict[str, Any]
    ack_by: str = ""
    ack_note: str = ""
    ack_at: float | None = None
    silence_id: int | None = None
    attacker: str = ""
    target: str = ""

    def to_json(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies, which costs at alert-storm rates.
        return {
            "id": self.id,
            "severity": self.severity.label,
            "source": self.source,
            "rule": self.rule,
            "title": self.title,
            "src": self.src,
            "dst": self.dst,
            "device": self.device,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "count": self.count,
            "state": self.state.value,
            "evidence": self.evidence,
            "ack_by": self.ack_by,
            "ack_note": self.ack_note,
            "ack_at": self.ack_at,
            "silence_id": self.silence_id,
            "attacker": self.attacker,
            "target": self.target,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Alert:
        return cls(
            id=row["id"],
            severity=Severity(row["severity"]),
            source=row["source"],
            rule=row["rule"],
            title=row["title"],
            src=row["src"],
            dst=row["dst"],
            device=row["device"],
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            count=row["count"],
            state=AlertState(row["state"]),
            evidence=json.loads(row["evidence"] or "{}"),
            ack_by=row["ack_by"] or "",
            ack_note=row["ack_note"] or "",
            ack_at=row["ack_at"],
            silence_id=row["silence_id"],
            attacker=row.get("attacker") or "",
            target=row.get("target") or "",
        )


@dataclass(frozen=True)
class Silence:
    """Alerts matching every non-empty field are recorded as silenced until ``expires``."""

    id: int
    rule: str
    src: str
    dst: str
    device: str
    created: float
    expires: float
    created_by: str
    comment: str = ""

    def matches(self, rule: str, src: str, dst: str, device: str) -> bool:
        return (
            (not self.rule or self.rule == rule)
            and (not self.src or self.src == src)
            and (not self.dst or self.dst == dst)
            and (not self.device or self.device == device)
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Operator:
    """Who is on the other end of a control connection, from the socket's peer credentials."""

    uid: int
    name: str
    role: Role
    ssh_client: str = ""
