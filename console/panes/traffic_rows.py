"""Flows, talkers and packets from the engine as table rows: the columns of each view and the
cells of one row, every value from the network cleaned before it is drawn.

The engine sorts and limits the rows (``traffic.flows``); these only format them.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

from console.panes.alert_rows import clock, short_count, table_cell
from console.untrusted import clean
from console.widgets.row_table import GAP, Column

# What ``traffic.flows`` can sort by, in the order ``o`` cycles through them, with the column
# each one is shown in.
SORTS = ("bytes", "packets", "rate", "last")
SORT_LABEL = {"bytes": "bytes", "packets": "packets", "rate": "rate", "last": "last seen"}

# Detail keys (MQTT, HTTP, TLS, DNS, DHCP, ...) shown first in the info column, in this order;
# any other key follows in the engine's order.
INFO_FIRST = ("sni", "host", "username", "password", "basic_auth", "client_id", "method", "query")
# Details that say a secret crossed the wire in clear: worth the operator's eye.
SECRETS = frozenset({"password", "basic_auth"})
INFO_LIMIT = 200


FLOW_COLUMNS = (
    Column("app", "APP", 7),
    Column("src", "SRC", None),
    Column("dst", "DST", None),
    Column("packets", "PKTS", 6, right=True),
    Column("bytes", "BYTES", 6, right=True),
    Column("rate", "B/s", 6, right=True),
    Column("last", "LAST", 9),
    Column("info", "INFO", None),
)

TALKER_COLUMNS = (
    Column("host", "HOST", None),
    Column("flows", "FLOWS", 6, right=True),
    Column("packets", "PKTS", 6, right=True),
    Column("bytes", "BYTES", 6, right=True),
    Column("rate", "B/s", 6, right=True),
    Column("last", "LAST", 9),
    Column("apps", "APPS", None),
)

PACKET_COLUMNS = (
    Column("time", "TIME", 13),
    Column("len", "LEN", 6, right=True),
    Column("src", "SRC", None),
    Column("dst", "DST", None),
    Column("app", "APP", 7),
    Column("info", "INFO", None),
)


def human(n: float) -> str:
    """A byte count or rate in at most five characters: 999, 12.3k, 4.5M."""
    for unit in ("", "k", "M", "G", "T"):
        if abs(n) < 999.5:
            return f"{n:.0f}{unit}" if unit == "" or abs(n) >= 99.95 else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.0f}P"


def endpoint(address: Any, port: Any) -> str:
    """``10.0.0.5:1883``, ``[2001:db8::1]:443``, or the address alone for portless protocols."""
    host = clean(address) or "-"
    if not port:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def precise_clock(ts: float) -> str:
    """``HH:MM:SS.mmm`` in local time."""
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def info_text(details: dict[str, Any] | None) -> Text:
    """A flow's protocol details on one line: ``sni=example.com``, ``username=bob password``."""
    if not details:
        return Text("")
    keys = [k for k in INFO_FIRST if k in details]
    keys += [k for k in details if k not in INFO_FIRST]
    out = Text(no_wrap=True, overflow="ellipsis", end="")
    for key in keys:
        value = details[key]
        if value is None or value is False or value == "" or value == []:
            continue
        if out:
            out.append(" ")
        name = clean(key, limit=40)
        if value is True:
            out.append(name, "bold" if key in SECRETS else "")
            continue
        if isinstance(value, list):
            value = ",".join(clean(v, limit=80) for v in value)
        out.append(f"{name}=")
        out.append(clean(value, limit=INFO_LIMIT), "bold" if key in SECRETS else "")
    return out


def _cell(text: Text) -> Text:
    """``text`` as a table cell (see ``table_cell``), keeping its styled spans."""
    cell = Text(GAP, overflow="ellipsis", no_wrap=True, end="")
    cell.append_text(text)
    return cell


def _count(n: Any, fmt: Any = short_count) -> Text:
    return table_cell(fmt(int(n or 0)), justify="right")


def _rate(flow: dict[str, Any]) -> Text:
    rate = float(flow.get("rate") or 0.0)
    return table_cell(human(rate), "" if rate else "dim", justify="right")


def flow_cells(flow: dict[str, Any]) -> tuple[Text, ...]:
    ended = flow.get("active") is False
    app = clean(flow.get("app") or flow.get("proto"), limit=12)
    return (
        table_cell(app, "dim" if ended else "bold"),
        table_cell(endpoint(flow.get("src"), flow.get("sport")), "dim" if ended else ""),
        table_cell(endpoint(flow.get("dst"), flow.get("dport")), "dim" if ended else ""),
        _count(flow.get("packets")),
        _count(flow.get("bytes"), human),
        _rate(flow),
        table_cell(clock(float(flow.get("last") or 0)), "dim" if ended else ""),
        _cell(info_text(flow.get("details"))),
    )


def talker_cells(talker: dict[str, Any]) -> tuple[Text, ...]:
    apps = talker.get("apps") or []
    return (
        table_cell(clean(talker.get("host")) or "-"),
        _count(talker.get("flows")),
        _count(talker.get("packets")),
        _count(talker.get("bytes"), human),
        _rate(talker),
        table_cell(clock(float(talker.get("last") or 0))),
        table_cell(",".join(clean(a, limit=12) for a in apps)),
    )


def packet_cells(packet: dict[str, Any]) -> tuple[Text, ...]:
    return (
        table_cell(precise_clock(float(packet.get("ts") or 0))),
        _count(packet.get("length")),
        table_cell(endpoint(packet.get("src"), packet.get("sport"))),
        table_cell(endpoint(packet.get("dst"), packet.get("dport"))),
        table_cell(clean(packet.get("app") or packet.get("proto"), limit=12)),
        table_cell(clean(packet.get("info"), limit=INFO_LIMIT)),
    )


def flow_title(flow: dict[str, Any]) -> Text:
    """One line naming a flow: ``mqtt 10.0.0.5:51000 → 10.0.0.1:1883 username=bob password``."""
    out = Text(clean(flow.get("app") or flow.get("proto"), limit=12), "bold", end="")
    out.append(
        f" {endpoint(flow.get('src'), flow.get('sport'))}"
        f" → {endpoint(flow.get('dst'), flow.get('dport'))}"
    )
    info = info_text(flow.get("details"))
    if info:
        out.append(" ")
        out.append_text(info)
    return out


def talker_title(talker: dict[str, Any]) -> Text:
    out = Text("host ", end="")
    out.append(clean(talker.get("host")), "bold")
    return out


def file_part(text: str) -> str:
    """``text`` reduced to characters that are safe and readable in a file name."""
    return "".join(c if c.isascii() and (c.isalnum() or c in ".-") else "_" for c in text)
