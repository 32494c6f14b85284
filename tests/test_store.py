"""The store: migrations, file modes, WAL, the batching writer and retention."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from engine.alerts.manager import AlertManager
from engine.config import DevicesConfig, RetentionConfig
from engine.devices.inventory import Inventory
from engine.events import EventBus
from engine.store import schema
from engine.store.db import StoreError, connect, lock_database, open_db
from engine.store.retention import prune
from engine.store.writer import Writer

TABLES = {
    "meta", "alerts", "devices", "findings", "flows", "bans", "scans", "log_offsets",
    "serial_sessions", "audit", "silences", "alert_history",
}  # fmt: skip


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "iotsec.db"
    conn = connect(path)
    assert schema.version(conn) == schema.LATEST
    assert tables(conn) >= TABLES
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"alerts_state_last", "alerts_fold", "bans_active", "audit_ts"} <= indexes
    conn.close()


def test_file_and_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "iotsec.db"
    connect(path).close()
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 in (0, 0o040)
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o027 == 0


def test_migrates_from_the_previous_version_keeping_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    schema.migrate(old, schema.LATEST - 1)
    assert schema.version(old) == schema.LATEST - 1
    old.execute(
        "INSERT INTO alerts (id, severity, source, rule, title, first_seen, last_seen)"
        " VALUES (7, 3, 'rules', '2023019', 'old alert', 1.0, 2.0)"
    )
    old.close()

    conn = connect(path)
    assert schema.version(conn) == schema.LATEST
    row = conn.execute("SELECT id, title, count, state FROM alerts").fetchone()
    assert row == (7, "old alert", 1, "open")
    # the newer schema's parts work on the migrated file
    conn.execute(
        "INSERT INTO alert_history (alert_id, ts, operator, action) VALUES (7, 3.0, 'root', 'ack')"
    )
    conn.close()


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    conn.close()
    with pytest.raises(schema.SchemaError, match="newer than this iotsec knows"):
        connect(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=str(path)):
        connect(path)


def test_readers_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "iotsec.db"
    connect(path).close()
    reader = open_db(path, readonly=True)
    with pytest.raises(sqlite3.OperationalError):
        reader.execute("DELETE FROM alerts")
    with pytest.raises(StoreError, match="does not exist"):
        connect(tmp_path / "missing.db", readonly=True)


def test_writer_batches_and_confirms_after_commit(tmp_path: Path) -> None:
    path = tmp_path / "iotsec.db"
    writer = Writer(path, max_rows=500, interval=0.05)
    sql = "INSERT INTO flows (start, last, proto, src, dst) VALUES (?, ?, 'tcp', ?, ?)"
    futures = [writer.execute(sql, (i, i, "10.0.0.1", "10.0.0.2"), wait=True) for i in range(5000)]
    for future in futures:
        future.result(10)
    reader = connect(path, readonly=True)
    # every confirmed row is visible to another connection, i.e. committed
    assert reader.execute("SELECT count(*) FROM flows").fetchone()[0] == 5000
    assert writer.rows == 5000
    assert writer.batches <= 5000 // 500 + 5
    writer.close()


def test_writer_commits_within_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "iotsec.db"
    writer = Writer(path, max_rows=10_000, interval=0.1)
    reader = connect(path, readonly=True)
    writer.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    deadline = time.monotonic() + 2
    while reader.execute("SELECT count(*) FROM meta WHERE key = 'k'").fetchone()[0] == 0:
        assert time.monotonic() < deadline, "a lone write was not committed"
        time.sleep(0.01)
    writer.close()


def test_a_bad_write_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "iotsec.db"
    writer = Writer(path, interval=0.05)
    good = [
        writer.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (f"k{i}",), wait=True)
        for i in range(3)
    ]
    bad = writer.execute("INSERT INTO meta (key, value) VALUES ('k1', 'dup')", wait=True)
    for future in good:
        future.result(5)
    with pytest.raises(sqlite3.IntegrityError):
        bad.result(5)
    assert writer.errors == 1
    writer.close()
    assert connect(path, readonly=True).execute("SELECT count(*) FROM meta").fetchone()[0] == 3


def test_writer_from_many_threads(tmp_path: Path) -> None:
    path = tmp_path / "iotsec.db"
    writer = Writer(path, interval=0.02)
    sql = "INSERT INTO flows (start, last, proto, src, dst) VALUES (0, 0, 'udp', ?, ?)"

    def produce(n: int) -> None:
        for i in range(1000):
            writer.execute(sql, (f"t{n}", str(i)))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert connect(path, readonly=True).execute("SELECT count(*) FROM flows").fetchone()[0] == 4000


def test_retention_prunes_old_rows(tmp_path: Path) -> None:
    conn = connect(tmp_path / "iotsec.db")
    now = 1_000_000.0
    day = 86400
    insert = (
        "INSERT INTO alerts (severity, source, rule, title, first_seen, last_seen, state)"
        " VALUES (2, 't', 'r', ?, ?, ?, ?)"
    )
    conn.execute(insert, ("old resolved", now - 100 * day, now - 100 * day, "resolved"))
    conn.execute(insert, ("old open", now - 100 * day, now - 100 * day, "open"))
    conn.execute(insert, ("new resolved", now - day, now - day, "resolved"))
    conn.execute(
        "INSERT INTO flows (start, last, proto, src, dst) VALUES (?, ?, 'tcp', 'a', 'b')",
        (now - 30 * day, now - 30 * day),
    )
    removed = prune(conn, RetentionConfig(), now)
    assert removed == {"alerts": 1, "flows": 1}
    titles = {r[0] for r in conn.execute("SELECT title FROM alerts")}
    assert titles == {"old open", "new resolved"}
    # the row cap drops resolved alerts first
    removed = prune(conn, RetentionConfig(max_alerts=1), now)
    assert removed == {"alerts": 1}
    assert {r[0] for r in conn.execute("SELECT title FROM alerts")} == {"old open"}


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    connect(shared / "iotsec.db").close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


def test_a_directory_anybody_may_write_is_refused(tmp_path: Path) -> None:
    public = tmp_path / "public"
    public.mkdir()
    public.chmod(0o1777)
    with pytest.raises(StoreError, match="anybody may write to this directory"):
        connect(public / "iotsec.db")
    assert stat.S_IMODE(public.stat().st_mode) == 0o1777
    assert not (public / "iotsec.db").exists()


def test_one_engine_per_database(tmp_path: Path) -> None:
    path = tmp_path / "iotsec.db"
    held = lock_database(path)
    with pytest.raises(StoreError, match=rf"another engine \(pid {os.getpid()}\)"):
        lock_database(path)
    os.close(held)
    os.close(lock_database(path))


def test_a_refused_call_does_not_spoil_its_batch(tmp_path: Path) -> None:
    writer = Writer(tmp_path / "iotsec.db", interval=0.05)

    def refuse(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES ('half', 'done')")
        raise ValueError("not applicable")

    before = writer.execute("INSERT INTO meta (key, value) VALUES ('a', '1')", wait=True)
    refused = writer.call(refuse)
    after = writer.execute("INSERT INTO meta (key, value) VALUES ('b', '2')", wait=True)
    before.result(5)
    after.result(5)
    with pytest.raises(ValueError, match="not applicable"):
        refused.result(5)
    assert writer.errors == 0
    writer.close()
    keys = {
        r[0] for r in connect(tmp_path / "iotsec.db", readonly=True).execute("SELECT key FROM meta")
    }
    assert keys == {"a", "b"}  # the refused call's own write was undone


def test_duplicate_devices_are_merged_with_their_history(tmp_path: Path) -> None:
    """Before version 8 a device could have several rows: by a MAC written in another case,
    and by an address a scan found it at alone. Migrating merges them into the MAC's oldest
    row; findings and alerts of the merged rows point at it."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    schema.migrate(old, 7)
    mac, link_local = "c0:56:e3:12:34:56", "fe80::c256:e3ff:fe12:3456"
    device = (
        "INSERT INTO devices (id, mac, ip, hostname, first_seen, last_seen, notes, addresses,"
        " services, seen_by, state, last_scan) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    rtsp = '[{"port": 554, "proto": "tcp", "service": "rtsp"}]'
    old.executemany(device, [
        (1, mac, "192.168.7.50", "", 2000.0, 5000.0, "", f'["192.168.7.50", "{link_local}"]',
         "[]", '["arp", "ip"]', "gone", None),
        (2, mac.upper(), link_local, "ipcam-7", 1500.0, 4000.0, "", f'["{link_local}"]', "[]",
         '["dhcp"]', "present", None),
        (3, None, link_local, "", 1000.0, 3000.0, "in the lab", f'["{link_local}"]', rtsp,
         '["scan"]', "gone", 4),
        (4, None, "10.9.9.9", "", 1200.0, 1300.0, "", '["10.9.9.9"]', "[]", '["scan"]', "gone",
         4),
    ])  # fmt: skip
    old.execute(
        "INSERT INTO scans (id, started, kind, targets, status) VALUES (4, 900, 'x', '[]', 'done')"
    )
    finding = (
        "INSERT INTO findings (id, device_id, kind, severity, title, first_seen, last_seen,"
        " state, port, proto, scan_id, resolved) VALUES (?, ?, ?, 3, ?, ?, ?, ?, ?, 'tcp', 4, ?)"
    )
    old.executemany(finding, [
        (10, 3, "rtsp-no-auth", "RTSP without authentication", 1000.0, 3000.0, "open", 554, None),
        (11, 3, "telnet-cleartext", "Telnet", 1000.0, 2000.0, "resolved", 23, 2000.0),
        (12, 1, "rtsp-no-auth", "RTSP without authentication", 3000.0, 5000.0, "open", 554, None),
    ])  # fmt: skip
    alert = (
        "INSERT INTO alerts (id, severity, source, rule, title, src, device, first_seen,"
        " last_seen, evidence) VALUES (?, 2, ?, ?, 't', ?, ?, 1.0, 1.0, ?)"
    )
    old.executemany(alert, [
        (1, "devices", "new-device", link_local, link_local, '{"device": 3, "mac": null}'),
        (2, "scan", "rtsp-no-auth 554/tcp", link_local, link_local, '{"device": 3}'),
        (3, "devices", "new-device", "192.168.7.50", mac, '{"device": 1, "mac": "c0"}'),
        (4, "rules", "2023019", link_local, "", '{"device": 3}'),
        (5, "devices", "new-device", "10.9.9.9", "10.9.9.9", "not json"),
    ])  # fmt: skip
    old.close()

    conn = connect(path)
    assert schema.version(conn) == schema.LATEST
    rows = conn.execute(
        "SELECT id, mac, ip, hostname, first_seen, last_seen, notes, addresses, services,"
        " seen_by, state, last_scan FROM devices ORDER BY id"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(1, mac), (4, None)]
    _, _, ip, hostname, first, last, notes, addresses, services, seen_by, state, scan = rows[0]
    assert (ip, hostname, first, last, notes, state) == (
        "192.168.7.50",
        "ipcam-7",
        1000.0,
        5000.0,
        "in the lab",
        "present",
    )
    assert json.loads(addresses) == ["192.168.7.50", link_local]
    assert (json.loads(services), scan) == (json.loads(rtsp), 4)
    assert json.loads(seen_by) == ["arp", "dhcp", "ip", "scan"]
    findings = conn.execute(
        "SELECT id, device_id, kind, state, first_seen, last_seen FROM findings ORDER BY id"
    ).fetchall()
    assert findings == [
        (11, 1, "telnet-cleartext", "resolved", 1000.0, 2000.0),
        (12, 1, "rtsp-no-auth", "open", 1000.0, 5000.0),  # one finding, seen first at 1000
    ]
    alerts = conn.execute("SELECT id, device, evidence FROM alerts ORDER BY id").fetchall()
    assert [(i, d, json.loads(e) if i != 5 else e) for i, d, e in alerts] == [
        (1, mac, {"device": 1, "mac": None}),
        (2, mac, {"device": 1}),
        (3, mac, {"device": 1, "mac": "c0"}),
        (4, "", {"device": 3}),  # not the inventory's: its evidence means something else
        (5, "10.9.9.9", "not json"),
    ]
    conn.close()

    writer = Writer(path)
    inventory = Inventory(DevicesConfig(), [], writer, EventBus(), AlertManager(writer, EventBus()))
    reader = connect(path, readonly=True)
    inventory.load(reader)
    reader.close()
    writer.close()
    camera = inventory.find(link_local)
    assert camera is inventory.find(mac) and camera.risk == 78  # its open finding, moved
    assert [d["id"] for d in inventory.listing()] == [1, 4]
