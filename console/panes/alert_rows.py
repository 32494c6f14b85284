"""One alert as a row of the alerts table: its cells, its sort keys and its filter text.

A row is built once per version of an alert (when the engine says it changed) so that sorting,
filtering and diffing the table never format or parse anything again.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from typing import Any

from rich.console import JustifyMethod
from rich.text import Span, Text

from console import severity
from console.untrusted import clean
from console.widgets.row_table import GAP, Column

STATE_LABEL = {
    "open": "open",
    "acknowledged": "acked",
    "resolved": "resolved",
    "silenced": "silenced",
}
STATE_STYLE = {"open": "bold", "acknowledged": "", "resolved": "dim", "silenced": "dim italic"}
# Open alerts first when sorting by state: they are the ones that need someone.
STATE_ORDER = {"open": 0, "acknowledged": 1, "silenced": 2, "resolved": 3}


COLUMNS = (
    Column("time", "TIME", 9, descending_first=True),
    Column("sev", "SEV", 5, descending_first=True),
    Column("state", "STATE", 9, descending_first=False),
    Column("count", "COUNT", 7, descending_first=True),
    Column("attacker", "ATTACKER", None, descending_first=False),
    Column("target", "TARGET", None, descending_first=False),
    Column("sid", "SID", 10, descending_first=False),
    Column("title", "TITLE", None, descending_first=False),
)
COLUMN_INDEX = {c.key: i for i, c in enumerate(COLUMNS)}


def clock(ts: float) -> str:
    """``HH:MM:SS`` in local time (the detail screen shows the date)."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def short_count(n: int) -> str:
    return str(n) if n < 1_000_000 else f"{n / 1_000_000:.1f}M"


@functools.lru_cache(maxsize=8192)
def address_order(address: str) -> tuple[int, int, str]:
    """Addresses in numeric order (IPv4 before IPv6), anything else after them by name."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return (2, 0, address)
    return (ip.version // 6, int(ip), "")


# Cells are never changed once made, so equal ones are shared: in a storm most alerts repeat
# a time, severity, state, address or title that another row already has.
@functools.lru_cache(maxsize=16384)
def table_cell(text: str, style: str = "", *, justify: JustifyMethod = "left") -> Text:
    """One line of a table cell: a leading gap, cut with an ellipsis when too long."""
    spans = [Span(len(GAP), len(GAP) + len(text), style)] if style else None
    return Text(GAP + text, justify=justify, overflow="ellipsis", no_wrap=True, end="", spans=spans)


def _address_cell(address: str) -> Text:
    return table_cell(address) if address else table_cell("-", "dim")


def alert_sides(alert: dict[str, Any]) -> tuple[str, str]:
    """(attacker, target) of ``alert``, cleaned; an engine from before they existed gave only
    the packet's source and destination."""
    if "attacker" in alert or "target" in alert:
        return clean(alert.get("attacker")), clean(alert.get("target"))
    return clean(alert.get("src")), clean(alert.get("dst"))


def alert_sid(alert: dict[str, Any]) -> str:
    """The sid of the rule that raised ``alert`` (cleaned), or "" for an alert from elsewhere
    (a log jail, a scan, an injected test alert), whose ``rule`` is not a sid."""
    return clean(alert.get("rule")) if alert.get("source") == "rules" else ""


def _sid_order(sid: str) -> tuple[int, int, str]:
    """Sids in numeric order, alerts without one after them."""
    return (0, int(sid), "") if sid.isascii() and sid.isdigit() else (1, 0, sid)


def alert_flow(alert: dict[str, Any]) -> dict[str, Any] | None:
    """The flow a rule alert was raised on (its evidence's ``flow``, keyed as the Traffic pane
    keys flows), or None."""
    evidence = alert.get("evidence")
    flow = evidence.get("flow") if isinstance(evidence, dict) else None
    return flow if isinstance(flow, dict) and flow.get("key") else None


class AlertRow:
    """An alert as the table shows, sorts and filters it."""

    __slots__ = ("_haystack", "alert", "cells", "id", "sort_keys")

    def __init__(
        self, alert: dict[str, Any], cells: tuple[Text, ...], sort_keys: tuple[Any, ...]
    ) -> None:
        self.id = int(alert["id"])
        self.alert = alert
        self.cells = cells
        self.sort_keys = sort_keys
        self._haystack: str | None = None

    @classmethod
    def build(cls, alert: dict[str, Any]) -> AlertRow:
        sev = str(alert.get("severity", "info"))
        state = str(alert.get("state", "open"))
        attacker, target = alert_sides(alert)
        title = clean(alert.get("title"))
        sid = alert_sid(alert)
        last_seen = float(alert.get("last_seen") or 0.0)
        count = int(alert.get("count") or 0)
        cells = (
            table_cell(clock(last_seen)),
            table_cell(severity.LABEL.get(sev, sev), severity.STYLE.get(sev, "")),
            table_cell(STATE_LABEL.get(state, state), STATE_STYLE.get(state, "")),
            table_cell(short_count(count), justify="right"),
            _address_cell(attacker),
            _address_cell(target),
            table_cell(sid) if sid else table_cell("-", "dim"),
            table_cell(title),
        )
        sort_keys = (
            last_seen,
            severity.RANK.get(sev, 0),
            STATE_ORDER.get(state, len(STATE_ORDER)),
            count,
            address_order(attacker),
            address_order(target),
            _sid_order(sid),
            title.casefold(),
        )
        return cls(alert, cells, sort_keys)

    @property
    def last_seen(self) -> float:
        return self.sort_keys[0]

    @property
    def haystack(self) -> str:
        """The fields a filter looks in, case-folded; made on first use (most rows never are)."""
        if self._haystack is None:
            a = self.alert
            sev = str(a.get("severity", ""))
            words = (
                a.get("id"),
                sev,
                severity.LABEL.get(sev),
                a.get("state"),
                a.get("src"),
                a.get("dst"),
                a.get("attacker"),
                a.get("target"),
                a.get("title"),
                a.get("rule"),
                a.get("device"),
                a.get("source"),
            )
            self._haystack = " ".join(clean(w) for w in words if w).casefold()
        return self._haystack

    def matches(self, terms: tuple[str, ...]) -> bool:
        """Whether every filter term (already case-folded) occurs in this alert's fields."""
        return all(term in self.haystack for term in terms)
