"""Rules, rule files and rejections from the engine as table rows and summary lines: the
columns of each table, the cells of one row and the order the Rules view sorts by. Every value
that came from a rule file is cleaned before it is drawn.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from console import severity
from console.panes.alert_rows import short_count, table_cell
from console.untrusted import clean
from console.widgets.row_table import Column

# What ``o`` cycles through, and whether each one puts the largest first.
SORTS = ("sid", "hits", "sev")
DESCENDING = {"sid": False, "hits": True, "sev": True}
SORT_LABEL = {"sid": "sid", "hits": "hits", "sev": "severity"}

RULE_COLUMNS = (
    Column("sid", "SID", 10),
    Column("action", "ACTION", 7),
    Column("sev", "SEV", 5),
    Column("hits", "HITS", 7, right=True),
    Column("enabled", "ON", 4),
    Column("msg", "MSG", None),
)

REJECTION_COLUMNS = (
    Column("where", "FILE:LINE", None),
    Column("sid", "SID", 10),
    Column("reason", "REASON", None),
)

MSG_LIMIT = 300


def rule_key(rule: dict[str, Any]) -> str:
    return str(rule["sid"])


def rule_cells(rule: dict[str, Any]) -> tuple[Text, ...]:
    """A rule's row; a disabled rule is dimmed, with ``off`` in bold."""
    sev = str(rule.get("severity", ""))
    enabled = bool(rule.get("enabled", True))
    dim = "" if enabled else "dim"
    return (
        table_cell(str(rule.get("sid")), dim),
        table_cell(clean(rule.get("action"), limit=12), dim),
        table_cell(severity.LABEL.get(sev, clean(sev, limit=5)), severity.STYLE.get(sev, "")),
        table_cell(short_count(int(rule.get("hits") or 0)), dim, justify="right"),
        table_cell("on" if enabled else "off", "" if enabled else "bold"),
        table_cell(clean(rule.get("msg"), limit=MSG_LIMIT), dim),
    )


def sort_key(sort: str, rule: dict[str, Any]) -> tuple[Any, ...]:
    """The order of ``sort``, ascending (the view reverses it for the descending ones); ties
    in sid order."""
    sid = int(rule.get("sid") or 0)
    if sort == "hits":
        return (int(rule.get("hits") or 0), -sid)
    if sort == "sev":
        return (severity.RANK.get(str(rule.get("severity")), 0), -sid)
    return (sid,)


def rejection_key(rejection: dict[str, Any]) -> str:
    return f"{rejection.get('file')}:{rejection.get('line')}:{rejection.get('sid')}"


def rejection_cells(rejection: dict[str, Any]) -> tuple[Text, ...]:
    sid = rejection.get("sid")
    return (
        table_cell(f"{clean(rejection.get('file'))}:{rejection.get('line')}"),
        table_cell(str(sid) if sid is not None else "-", "" if sid is not None else "dim"),
        table_cell(clean(rejection.get("reason"), limit=MSG_LIMIT)),
    )


def file_line(entry: dict[str, Any]) -> Text:
    """One rule file and what loading it gave: ``   42 loaded    1 rejected  path``."""
    rejected = int(entry.get("rejected") or 0)
    line = Text(f"{int(entry.get('accepted') or 0):>6} loaded ", no_wrap=True, end="")
    line.append(f"{rejected:>4} rejected", "bold" if rejected else "dim")
    line.append(f"  {clean(entry.get('path'))}")
    return line
