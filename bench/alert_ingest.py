"""Alert ingest rate through the engine into SQLite, against plain ``sqlite3.executemany``.

Three engine paths on the same input as the ceiling:
- distinct alerts raised by a part (AlertManager.raise_alert -> batching writer -> SQLite),
- an alert storm (identical alerts folding into one row),
- alerts injected over the control socket (pipelined JSON lines, each confirmed after commit).

Run: .venv/bin/python bench/alert_ingest.py [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.alerts.manager import _INSERT, AlertManager
from engine.daemon import tune_gc
from engine.events import EventBus
from engine.model import AlertEvent, Severity
from engine.store.db import connect
from engine.store.writer import Writer
from tests.conftest import start_engine


def events(n: int, distinct: bool) -> list[AlertEvent]:
    return [
        AlertEvent(
            Severity.MEDIUM,
            "rules",
            "2023019",
            "ET TELNET busybox MIRAI",
            src=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" if distinct else "10.0.0.1",
            dst="10.9.0.5",
            evidence={"sid": 2023019},
        )
        for i in range(n)
    ]


def ceiling(rows: list[tuple], directory: Path) -> float:
    conn = connect(directory / "ceiling.db")
    start = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(_INSERT, rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


def through_manager(evs: list[AlertEvent], directory: Path, name: str) -> tuple[float, int]:
    """Raise alerts as a detecting part does: batches of 1,000 between turns of the loop."""

    async def run() -> tuple[float, int]:
        writer = Writer(directory / f"{name}.db", queue_size=len(evs) + 10)
        manager = AlertManager(writer, EventBus())
        tune_gc()  # as the engine daemon does
        gc.freeze()
        start = time.perf_counter()
        for i in range(0, len(evs), 1000):
            for ev in evs[i : i + 1000]:
                manager.raise_alert(ev)
            await asyncio.sleep(0)
        writer.flush(120)
        elapsed = time.perf_counter() - start
        manager.flush_events()
        writer.close()
        rows = (
            connect(directory / f"{name}.db", readonly=True)
            .execute("SELECT count(*) FROM alerts")
            .fetchone()[0]
        )
        return len(evs) / elapsed, rows

    return asyncio.run(run())


def through_socket(n: int, directory: Path) -> float:
    engine = start_engine(directory / "engine")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(engine.socket))
    lines = [
        json.dumps({"id": i, "cmd": "alerts.inject", "args": {
            "title": "ET TELNET busybox MIRAI", "rule": "2023019",
            "src": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}}).encode() + b"\n"
        for i in range(n)
    ]  # fmt: skip
    start = time.perf_counter()
    threading.Thread(target=lambda: sock.sendall(b"".join(lines)), daemon=True).start()
    confirmed = 0
    for line in sock.makefile("rb"):
        confirmed += json.loads(line)["ok"]
        if confirmed == n:
            break
    elapsed = time.perf_counter() - start
    sock.close()
    engine.stop()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--socket-events", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="iotsec-bench-") as tmp:
        directory = Path(tmp)
        distinct = events(args.events, distinct=True)
        rows = [
            (i + 1, int(e.severity), e.source, e.rule, e.title, e.src, e.dst, e.device, 1.0, 1.0,
             1, "open", json.dumps(e.evidence), None)
            for i, e in enumerate(distinct)
        ]  # fmt: skip
        top = ceiling(rows, directory)
        new_rate, new_rows = through_manager(distinct, directory, "distinct")
        storm_rate, storm_rows = through_manager(
            events(args.events, distinct=False), directory, "storm"
        )
        api_rate = through_socket(args.socket_events, directory)
    print(f"{'path':<44} {'events/s':>12} {'vs ceiling':>11}")
    print(f"{'sqlite3.executemany, one transaction':<44} {top:>12,.0f} {1:>10.2f}x")
    print(f"{'engine: distinct alerts (new rows)':<44} {new_rate:>12,.0f} {new_rate / top:>10.2f}x"
          f"   rows={new_rows}")  # fmt: skip
    print(f"{'engine: alert storm (folded)':<44} {storm_rate:>12,.0f} {storm_rate / top:>10.2f}x"
          f"   rows={storm_rows}")  # fmt: skip
    print(f"{'control socket: pipelined inject, confirmed':<44} {api_rate:>12,.0f} "
          f"{api_rate / top:>10.2f}x")  # fmt: skip
    print(f"target >= 50,000 events/s through the engine: "
          f"{'met' if min(new_rate, storm_rate) >= 50_000 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
