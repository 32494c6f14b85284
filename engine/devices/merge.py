"""One device per MAC: merging a device into another in the store keeps its history. Its
findings (open and resolved) and the alerts raised about it point at the other device.

The inventory merges as it learns (a device known by an address alone, whose MAC shows up, into
that MAC's device); migration 8 merges the duplicate rows a database written before it holds:
rows of one MAC, and rows known by an address alone that is a MAC device's.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from engine.devices.classify import guess
from engine.devices.model import Device, canonical

# The devices table's columns that migration 8 reads and writes, as they were at its version (a
# migration works on the schema of its own version, never today's). Not risk: the inventory
# scores every device again as it loads them.
COLUMNS_V8 = (
    "id", "mac", "ip", "hostname", "vendor", "kind", "first_seen", "last_seen", "notes",
    "addresses", "kind_reason", "services", "details", "seen_by", "state", "last_scan",
)  # fmt: skip
# The alerts the inventory raises name their device's id in their evidence.
_MOVE_ALERTS = (
    "UPDATE alerts SET device = ?, evidence = json_set(evidence, '$.device', ?)"
    " WHERE source IN ('devices', 'scan')"
    " AND CASE WHEN json_valid(evidence) THEN json_extract(evidence, '$.device') END = ?"
)


def move_history(
    conn: sqlite3.Connection, old: int, into: int, mac: str, folded: list[int]
) -> None:
    """Device ``old``'s row merged into device ``into`` (whose MAC is ``mac``): its findings
    and alerts become ``into``'s, but for ``folded`` (open findings ``into`` has too, whose
    first sighting it took), which go; then its row goes."""
    conn.executemany("DELETE FROM findings WHERE id = ?", [(i,) for i in folded])
    conn.execute("UPDATE findings SET device_id = ? WHERE device_id = ?", (into, old))
    conn.execute(_MOVE_ALERTS, (mac, into, old))
    conn.execute("DELETE FROM devices WHERE id = ?", (old,))


def merge_duplicates(conn: sqlite3.Connection) -> None:
    """Migration 8: one row per MAC (MACs compared in lower case with colons), and each row
    known by an address alone that a MAC row also has merged into that one. The row kept is
    the MAC's oldest; it takes the earliest first sighting, every address (as many as a device
    keeps) and the others' history."""
    rows = conn.execute(f"SELECT {', '.join(COLUMNS_V8)} FROM devices ORDER BY id").fetchall()
    devices = [_device(dict(zip(COLUMNS_V8, row, strict=True))) for row in rows]
    stored_macs = {row[0]: row[1] for row in rows}
    by_mac: dict[str, Device] = {}
    merges: list[tuple[Device, Device]] = []
    for device in devices:
        if device.mac is not None:
            kept = by_mac.setdefault(device.mac, device)
            if kept is not device:
                merges.append((device, kept))
    owners: dict[str, Device] = {}
    for device in devices:
        if device.mac is not None:
            for address in (device.ip, *device.addresses):
                owners.setdefault(canonical(address), by_mac[device.mac])
    for device in devices:
        if device.mac is None:
            found = (owners.get(canonical(a)) for a in (device.ip, *device.addresses) if a)
            owner = next((o for o in found if o is not None), None)
            if owner is not None:
                merges.append((device, owner))
    changed = {d.id: d for d in devices if d.mac != stored_macs[d.id]}
    for old, into in merges:
        # An address another MAC's device has stays that device's alone.
        old.addresses = [a for a in old.addresses if owners.get(canonical(a), into) is into]
        folded = _fold_findings(conn, old.id, into.id)
        _absorb(into, old)
        move_history(conn, old.id, into.id, into.mac or "", folded)
        changed.pop(old.id, None)
        changed[into.id] = into
    for device in changed.values():
        conn.execute(
            f"UPDATE devices SET {', '.join(f'{c} = ?' for c in COLUMNS_V8[1:])} WHERE id = ?",
            (*_row(device), device.id),
        )


def _absorb(into: Device, old: Device) -> None:
    into.absorb(old)
    if old.state == "present":
        into.state = "present"
    for address in old.addresses:
        into.add_address(address)
    if old.ip and (not into.ip or (":" in into.ip and ":" not in old.ip)):
        into.ip = old.ip  # IPv4 is the address people know a device by
    into.kind, into.kind_reason = guess(into.services, into.details, into.vendor, into.hostname)


def _fold_findings(conn: sqlite3.Connection, old: int, into: int) -> list[int]:
    """The open findings of device ``old`` that device ``into`` has open too (same kind, port
    and protocol): ``into``'s takes their first and last sightings; their ids."""
    pairs = conn.execute(
        "SELECT o.id, i.id, o.first_seen, o.last_seen FROM findings o JOIN findings i"
        " ON i.device_id = ? AND i.state = 'open' AND i.kind = o.kind AND i.port IS o.port"
        " AND i.proto = o.proto WHERE o.device_id = ? AND o.state = 'open'",
        (into, old),
    ).fetchall()
    for _, kept, first, last in pairs:
        conn.execute(
            "UPDATE findings SET first_seen = min(first_seen, ?), last_seen = max(last_seen, ?)"
            " WHERE id = ?",
            (first, last, kept),
        )
    return [gone for gone, _, _, _ in pairs]


def _device(row: dict[str, Any]) -> Device:
    mac = (row["mac"] or "").strip().lower().replace("-", ":") or None
    return Device(
        id=row["id"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        mac=mac,
        ip=row["ip"] or "",
        addresses=json.loads(row["addresses"] or "[]"),
        hostname=row["hostname"] or "",
        vendor=row["vendor"] or "",
        kind=row["kind"] or "",
        kind_reason=row["kind_reason"] or "",
        state=row["state"],
        services=json.loads(row["services"] or "[]"),
        details=json.loads(row["details"] or "{}"),
        seen_by=set(json.loads(row["seen_by"] or "[]")),
        last_scan=row["last_scan"],
        notes=row["notes"] or "",
    )


def _row(device: Device) -> tuple[Any, ...]:
    """The values of COLUMNS_V8 but the id."""
    return (
        device.mac, device.ip, device.hostname, device.vendor, device.kind, device.first_seen,
        device.last_seen, device.notes, json.dumps(device.addresses), device.kind_reason,
        json.dumps(device.services), json.dumps(device.details), json.dumps(sorted(device.seen_by)),
        device.state, device.last_scan,
    )  # fmt: skip
