"""Flow summaries in the store: the row an ended flow becomes, and the stored flows of a host."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from engine.capture.analyze import flow_record
from engine.capture.flows import Flow

INSERT_FLOW = (
    "INSERT INTO flows (start, last, proto, src, sport, dst, dport, packets, bytes, app, "
    "tcp_state, initiator, packets_out, bytes_out, packets_in, bytes_in, iface, details) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
STORED_KEYS = ("start", "last", "proto", "src", "sport", "dst", "dport", "packets", "bytes",
               "app")  # fmt: skip


def flow_row(flow: Flow) -> tuple[Any, ...]:
    r = flow_record(flow)
    return (r["start"], r["last"], r["proto"], r["src"], r["sport"], r["dst"], r["dport"],
            r["packets"], r["bytes"], r["app"], r["state"], r["src"], r["packets_out"],
            r["bytes_out"], r["packets_in"], r["bytes_in"], r["iface"],
            json.dumps(r["details"], separators=(",", ":")))  # fmt: skip


def stored_flows(conn: sqlite3.Connection, hosts: list[str], limit: int) -> list[dict[str, Any]]:
    """The newest stored flows from or to any of ``hosts``."""
    marks = ",".join("?" * len(hosts)) or "''"
    rows = conn.execute(
        f"SELECT {', '.join(STORED_KEYS)} FROM flows"
        f" WHERE src IN ({marks}) OR dst IN ({marks}) ORDER BY last DESC LIMIT ?",
        (*hosts, *hosts, limit),
    ).fetchall()
    return [dict(zip(STORED_KEYS, row, strict=True)) for row in rows]
