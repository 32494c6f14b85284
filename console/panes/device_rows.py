"""Devices from the engine's inventory as table rows: the columns of the Devices pane, the cells
of one row (new and gone marked), the orders it can be sorted in, the filter, and the line that
describes the device under the cursor. Every value from the network is cleaned before it is
drawn."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.content import Content

from console import severity
from console.panes.alert_rows import address_order, table_cell
from console.untrusted import clean
from console.widgets.row_table import Column
from engine.durations import format_age

# A device first seen this recently is marked new.
NEW_SECONDS = 3600.0

# What matters at 3 a.m. first: a narrow terminal cuts the columns on the right (the MAC and
# vendor are in the line under the table too).
DEVICE_COLUMNS = (
    Column("mark", "", 5),
    Column("ip", "ADDRESS", None),
    Column("kind", "TYPE", 13),
    Column("risk", "RISK", 5, right=True),
    Column("findings", "FIND", 5, right=True),
    Column("last", "SEEN", 5, right=True),
    Column("name", "NAME", 12),
    Column("vendor", "VENDOR", 12),
    Column("mac", "MAC", 18),
    Column("ports", "PORTS", None),
)

# What ``o`` cycles through (and a click on the column's header picks): key, label, and the
# order's direction (risk and last seen: the most first).
SORTS = ("risk", "ip", "last", "first", "kind", "vendor")
SORT_LABEL = {
    "risk": "risk",
    "ip": "address",
    "last": "last seen",
    "first": "first seen",
    "kind": "type",
    "vendor": "vendor",
}
DESCENDING = frozenset({"risk", "last", "first"})
# A risk score is drawn in the colour of its band (engine/devices/model.py): usable by an
# attacker now (70-100), exposed (35-69), hygiene (1-34).
RISK_SEVERITY = ((70, "critical"), (35, "medium"), (1, "low"))


def ago(ts: float | None, now: float) -> str:
    return format_age(now - float(ts)) if ts else "-"


def is_new(device: dict[str, Any], now: float) -> bool:
    return device.get("state") == "present" and now - float(device["first_seen"]) < NEW_SECONDS


def device_cells(device: dict[str, Any], now: float) -> tuple[Text, ...]:
    gone = device.get("state") == "gone"
    dim = "dim" if gone else ""
    mark = "gone" if gone else "new" if is_new(device, now) else ""
    risk = int(device.get("risk") or 0)
    risk_severity = next((sev for least, sev in RISK_SEVERITY if risk >= least), "info")
    risk_style = dim if gone else severity.STYLE[risk_severity]
    return (
        table_cell(mark, "bold green" if mark == "new" else "dim"),
        table_cell(clean(device.get("ip"), limit=45) or "-", dim),
        table_cell(clean(device.get("kind"), limit=40) or "?", dim),
        table_cell(str(risk), risk_style, justify="right"),
        table_cell(
            str(device.get("findings") or 0),
            severity.STYLE.get(str(device.get("worst")), dim) if not gone else dim,
            justify="right",
        ),
        table_cell(ago(device.get("last_seen"), now), dim, justify="right"),
        table_cell(clean(device.get("hostname"), limit=40), dim),
        table_cell(clean(device.get("vendor"), limit=40), dim),
        table_cell(clean(device.get("mac"), limit=17) or "-", dim),
        table_cell(clean(" ".join(device.get("ports") or []), limit=200), dim),
    )


def sort_key(column: str) -> Any:
    if column == "ip":
        return lambda d: address_order(str(d.get("ip") or ""))
    if column in ("last", "first"):
        return lambda d: float(d.get(f"{column}_seen") or 0)
    if column == "risk":
        return lambda d: (int(d.get("risk") or 0), int(d.get("findings") or 0))
    return lambda d: str(d.get(column) or "~").casefold()


def matches(device: dict[str, Any], terms: tuple[str, ...]) -> bool:
    """Every term is in the address, MAC, vendor, name, type, ports or state."""
    text = " ".join(
        str(device.get(k) or "") for k in ("ip", "mac", "vendor", "hostname", "kind", "state")
    )
    text = f"{text} {' '.join(device.get('ports') or [])}".casefold()
    return all(term in text for term in terms)


def describe(device: dict[str, Any], now: float) -> Content:
    """Two lines about the device under the cursor: who made it and what it is (and why); its
    risk and how and when it was seen."""
    kind = clean(device.get("kind"), limit=60)
    reason = clean(device.get("kind_reason"), limit=120)
    maker = " ".join(
        p for p in (clean(device.get("mac")), clean(device.get("vendor"), limit=60)) if p
    )
    first = Content.assemble(
        (clean(device.get("ip"), limit=45) or "no address", "bold"),
        f"  {kind or 'type unknown'}" + (f" ({reason})" if reason else ""),
        f"  │ {maker or 'MAC unknown'}",
    )
    seen = ", ".join(clean(s, limit=10) for s in device.get("seen_by") or [])
    scan = device.get("last_scan")
    scanned = f"last scan #{scan}" if scan else "never scanned: s scans it"
    second = (
        f"risk {device.get('risk', 0)}, {device.get('findings', 0)} open findings │ first seen"
        f" {ago(device.get('first_seen'), now)} ago, last {ago(device.get('last_seen'), now)} ago,"
        f" by {seen or '?'}; {scanned} │ Enter: details"
    )
    return Content.assemble(first, "\n", second)
