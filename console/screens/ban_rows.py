"""Bans and proposed bans from the engine as table rows: the columns of the Bans view, the cells
of one row, the time a ban has left and the lines that describe the ban under the cursor. Every
value from the engine (addresses, reasons, sources, operator names) is cleaned before it is
drawn.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.content import Content

from console.panes.alert_rows import short_count, table_cell
from console.panes.traffic_rows import human
from console.screens.alert_detail import when
from console.untrusted import clean
from console.widgets.row_table import Column
from engine.durations import format_duration

BAN_COLUMNS = (
    Column("address", "ADDRESS", None),
    Column("left", "LEFT", 10),
    Column("dropped", "DROPPED", 9, right=True),
    Column("source", "SOURCE", None),
    Column("by", "BY", None),
    Column("reason", "REASON", None),
)

PROPOSED_STYLE = "bold yellow"
REASON_LIMIT = 300


def ban_key(ban: dict[str, Any]) -> str:
    """Row key: proposals and bans are numbered alike, the kind tells them apart."""
    return f"{'proposed' if is_proposed(ban) else 'ban'}:{ban['id']}"


def is_proposed(ban: dict[str, Any]) -> bool:
    return ban.get("state") == "proposed"


def time_left(expires: float | None, now: float) -> str:
    """What a ban has left, to the minute once it is that long: ``45s``, ``59m``, ``2h03m``,
    ``3d04h``, or ``permanent``."""
    if expires is None:
        return "permanent"
    seconds = int(max(0.0, float(expires) - now))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def proposed_length(proposal: dict[str, Any]) -> str:
    """How long a proposed ban would last once confirmed."""
    if proposal.get("permanent"):
        return "until lifted"
    bantime = proposal.get("bantime")
    if bantime is None:
        return "the configured bantime"
    return format_duration(float(bantime))


def ban_cells(ban: dict[str, Any], now: float) -> tuple[Text, ...]:
    """A ban's row; a proposed one says PROPOSED where the time left would be, in bold yellow."""
    source, by = clean(ban.get("source"), limit=40), clean(ban.get("created_by"), limit=32)
    reason = clean(ban.get("reason"), limit=REASON_LIMIT)
    address = clean(ban.get("address"), limit=50)
    if is_proposed(ban):
        return (
            table_cell(address, PROPOSED_STYLE),
            table_cell("PROPOSED", PROPOSED_STYLE),
            table_cell("-", "dim", justify="right"),
            table_cell(source),
            table_cell(by),
            table_cell(reason),
        )
    return (
        table_cell(address),
        table_cell(time_left(ban.get("expires"), now)),
        table_cell(short_count(int(ban.get("packets") or 0)), justify="right"),
        table_cell(source),
        table_cell(by),
        table_cell(reason),
    )


def matches(ban: dict[str, Any], terms: tuple[str, ...]) -> bool:
    """Whether every term (casefolded) appears in the ban's address, source, by or reason."""
    text = " ".join(
        str(ban.get(k) or "") for k in ("address", "source", "created_by", "reason", "state")
    ).casefold()
    return all(term in text for term in terms)


def describe(ban: dict[str, Any]) -> Content:
    """Two lines on the ban under the cursor: who made it when, until when, what it dropped
    (or, proposed, for how long it would ban), and its reason in full."""
    by = clean(ban.get("created_by"), limit=32) or "-"
    previous = int(ban.get("previous") or 0)
    before = f" · banned {times(previous)} before" if previous else ""
    made = f" #{ban.get('id')} by {by} {when(ban.get('created'))}"
    if is_proposed(ban):
        alert = f" for alert #{ban['alert']}" if ban.get("alert") is not None else ""
        first = Content.assemble(
            ("proposed", PROPOSED_STYLE), f"{made}{alert}: ban for {proposed_length(ban)}{before}"
        )
    else:
        expires = ban.get("expires")
        until = when(expires) if expires is not None else "until lifted"
        packets, size = int(ban.get("packets") or 0), int(ban.get("bytes") or 0)
        first = Content(f"ban{made} → {until}{before} · dropped {packets} packets, {human(size)}B")
    reason = clean(ban.get("reason"), limit=REASON_LIMIT) or "-"
    return Content.assemble(first, "\n", ("reason ", "bold"), reason)
