"""What a scan finds: the services on a host's ports and the findings about them, each with a
severity, the evidence that shows it and how to fix it. These cross from the scanner to the
store, the control API and the CLI's JSON (``kind``, ``severity``, ``title``, ``evidence``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.model import Severity
from engine.text import printable

EVIDENCE_LIMIT = 2000


@dataclass(frozen=True)
class Finding:
    kind: str  # stable, for diffs between scans: "telnet-cleartext", "tls-expired", ...
    severity: Severity
    title: str
    evidence: str  # what was seen, quoted from the device (escaped when shown)
    fix: str
    port: int | None = None
    proto: str = "tcp"
    # "low" for what is inferred (an old version read from a banner), else "high".
    confidence: str = "high"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity.label,
            "title": self.title,
            "evidence": printable(self.evidence, limit=EVIDENCE_LIMIT),
            "fix": self.fix,
            "port": self.port,
            "proto": self.proto,
            "confidence": self.confidence,
        }


@dataclass
class Service:
    """One open port and what answers on it."""

    port: int
    proto: str = "tcp"
    service: str = ""  # "ssh", "http", "mqtt", ... ("" when nothing told)
    product: str = ""  # "dropbear", "lighttpd", ...
    version: str = ""
    banner: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "proto": self.proto,
            "service": self.service,
            "product": printable(self.product, limit=100),
            "version": printable(self.version, limit=100),
            "banner": printable(self.banner, limit=500),
            "details": self.details,
        }
