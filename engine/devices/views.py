"""What the control API shows of the inventory: one device with its flows, alerts and resolved
findings, and the findings over all devices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.alerts.manager import query_alerts
from engine.capture.store import stored_flows
from engine.devices.model import Device, query_findings
from engine.model import Severity

if TYPE_CHECKING:
    from engine.capture.service import CaptureService
    from engine.store.db import Reader

RECENT_FLOWS = 20
RECENT_ALERTS = 30
RESOLVED_FINDINGS = 30


async def device_detail(device: Device, capture: CaptureService, read: Reader) -> dict[str, Any]:
    """A device: addresses, vendor, type, services, TLS, open and resolved findings, its
    recent flows (live and stored) and alerts."""
    addresses = list(device.addresses)
    host_filter = " or ".join(f"host {a}" for a in addresses)
    live = (await capture.flows("flows", "last", RECENT_FLOWS, host_filter))["rows"] \
        if addresses else []  # fmt: skip

    def stored(conn):
        flows = stored_flows(conn, addresses, RECENT_FLOWS)
        alerts = query_alerts(conn, hosts=addresses, device=device.mac or device.ip,
                              limit=RECENT_ALERTS)  # fmt: skip
        resolved = query_findings(conn, state="resolved", device_id=device.id,
                                  limit=RESOLVED_FINDINGS)  # fmt: skip
        return flows, alerts, resolved

    flows, alerts, resolved = await read(stored)
    return {
        **device.to_json(),
        "live_flows": live,
        "flows": flows,
        "alerts": [alert.to_json() for alert in alerts],
        "resolved_findings": [finding.to_json() for finding in resolved],
    }


async def findings(devices: list[Device], read: Reader, *, state: str, least: Severity,
                   one_device: bool, limit: int) -> list[dict[str, Any]]:  # fmt: skip
    """The findings of ``devices`` in ``state`` (open, resolved or all; at most ``limit``
    resolved ones, of the one device when ``one_device``), at least ``least``, worst first."""
    rows: list[dict[str, Any]] = []
    if state in ("open", "all"):
        rows += [{**f.to_json(), "address": d.ip, "mac": d.mac or "", "hostname": d.hostname}
                 for d in devices for f in d.findings.values() if f.severity >= least]  # fmt: skip
    if state in ("resolved", "all"):
        by_id = {d.id: d for d in devices}
        device_id = devices[0].id if one_device else None
        resolved = await read(
            lambda conn: query_findings(
                conn, state="resolved", least=int(least), device_id=device_id, limit=limit
            )
        )
        for finding in resolved:
            device = by_id.get(finding.device_id)
            if device is not None:
                rows.append({**finding.to_json(), "address": device.ip, "mac": device.mac or "",
                             "hostname": device.hostname})  # fmt: skip
    rows.sort(key=lambda r: (r["state"] != "open", -Severity.parse(r["severity"]),
                             r["address"], r["kind"]))  # fmt: skip
    return rows
