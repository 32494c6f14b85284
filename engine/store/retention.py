"""Retention: pruning rows older than the configured limits, so the database stays bounded.

The audit table is never pruned: its chain is the record of who did what.
"""

from __future__ import annotations

import sqlite3

from engine.config import RetentionConfig


def prune(conn: sqlite3.Connection, limits: RetentionConfig, now: float) -> dict[str, int]:
    """Delete what is past its retention inside the caller's transaction; counts per table."""
    removed: dict[str, int] = {}

    def run(table: str, sql: str, params: tuple[float | int, ...]) -> None:
        removed[table] = removed.get(table, 0) + conn.execute(sql, params).rowcount

    run(
        "alerts",
        "DELETE FROM alerts WHERE state IN ('resolved', 'silenced') AND last_seen < ?",
        (now - limits.alerts,),
    )
    excess = conn.execute("SELECT count(*) FROM alerts").fetchone()[0] - limits.max_alerts
    if excess > 0:
        # Over the row cap: resolved alerts go first, then the oldest of the rest.
        run(
            "alerts",
            "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts"
            " ORDER BY state = 'resolved' DESC, last_seen LIMIT ?)",
            (excess,),
        )
    run(
        "silences",
        "DELETE FROM silences WHERE ended IS NOT NULL AND ended < ?",
        (now - limits.alerts,),
    )
    run("flows", "DELETE FROM flows WHERE last < ?", (now - limits.flows,))
    run("scans", "DELETE FROM scans WHERE started < ?", (now - limits.scans,))
    run(
        "serial_sessions",
        "DELETE FROM serial_sessions WHERE started < ?",
        (now - limits.serial_sessions,),
    )
    return {table: n for table, n in removed.items() if n}
