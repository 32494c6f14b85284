"""The database schema as a list of forward migrations; ``PRAGMA user_version`` is the version."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from engine.devices.merge import merge_duplicates

# Each entry moves the schema from version i to i+1: SQL statements, or a function for a change
# of the data that SQL alone says badly. Never edit a released entry: append one.
MIGRATIONS: list[tuple[str, str | Callable[[sqlite3.Connection], None]]] = [
    (
        "core tables",
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            severity INTEGER NOT NULL,
            source TEXT NOT NULL,
            rule TEXT NOT NULL,
            title TEXT NOT NULL,
            src TEXT NOT NULL DEFAULT '',
            dst TEXT NOT NULL DEFAULT '',
            device TEXT NOT NULL DEFAULT '',
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            state TEXT NOT NULL DEFAULT 'open',
            evidence TEXT NOT NULL DEFAULT '{}',
            ack_by TEXT,
            ack_note TEXT,
            ack_at REAL
        );
        CREATE INDEX alerts_state_last ON alerts (state, last_seen);
        CREATE INDEX alerts_fold ON alerts (rule, src, dst, last_seen);
        CREATE INDEX alerts_last ON alerts (last_seen);

        CREATE TABLE devices (
            id INTEGER PRIMARY KEY,
            mac TEXT,
            ip TEXT,
            hostname TEXT,
            vendor TEXT,
            kind TEXT,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            notes TEXT
        );
        CREATE UNIQUE INDEX devices_mac ON devices (mac) WHERE mac IS NOT NULL;
        CREATE INDEX devices_ip ON devices (ip);
        CREATE INDEX devices_last ON devices (last_seen);

        CREATE TABLE findings (
            id INTEGER PRIMARY KEY,
            device_id INTEGER REFERENCES devices (id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            severity INTEGER NOT NULL,
            title TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            state TEXT NOT NULL DEFAULT 'open'
        );
        CREATE INDEX findings_device ON findings (device_id, kind);
        CREATE INDEX findings_state ON findings (state, severity);

        CREATE TABLE flows (
            id INTEGER PRIMARY KEY,
            start REAL NOT NULL,
            last REAL NOT NULL,
            proto TEXT NOT NULL,
            src TEXT NOT NULL,
            sport INTEGER,
            dst TEXT NOT NULL,
            dport INTEGER,
            packets INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            app TEXT,
            tcp_state TEXT,
            initiator TEXT
        );
        CREATE INDEX flows_start ON flows (start);
        CREATE INDEX flows_src ON flows (src, start);
        CREATE INDEX flows_dst ON flows (dst, start);

        CREATE TABLE bans (
            id INTEGER PRIMARY KEY,
            address TEXT NOT NULL,
            reason TEXT NOT NULL,
            source TEXT NOT NULL,
            created REAL NOT NULL,
            expires REAL,
            created_by TEXT NOT NULL,
            previous INTEGER NOT NULL DEFAULT 0,
            state TEXT NOT NULL DEFAULT 'active'
        );
        CREATE INDEX bans_address ON bans (address, created);
        CREATE INDEX bans_active ON bans (state, expires);

        CREATE TABLE scans (
            id INTEGER PRIMARY KEY,
            started REAL NOT NULL,
            finished REAL,
            kind TEXT NOT NULL,
            targets TEXT NOT NULL,
            status TEXT NOT NULL,
            summary TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX scans_started ON scans (started);

        CREATE TABLE log_offsets (
            path TEXT PRIMARY KEY,
            inode INTEGER NOT NULL,
            head_hash TEXT NOT NULL,
            offset INTEGER NOT NULL,
            updated REAL NOT NULL
        );

        CREATE TABLE serial_sessions (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            started REAL NOT NULL,
            ended REAL,
            transcript TEXT,
            bytes_rx INTEGER NOT NULL DEFAULT 0,
            bytes_tx INTEGER NOT NULL DEFAULT 0,
            summary TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX serial_sessions_started ON serial_sessions (started);

        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            operator TEXT NOT NULL,
            uid INTEGER NOT NULL,
            role TEXT NOT NULL,
            command TEXT NOT NULL,
            args TEXT NOT NULL,
            result TEXT NOT NULL,
            prev_hmac TEXT NOT NULL,
            hmac TEXT NOT NULL
        );
        CREATE INDEX audit_ts ON audit (ts);
        """,
    ),
    (
        "silences and alert history",
        """
        CREATE TABLE silences (
            id INTEGER PRIMARY KEY,
            rule TEXT NOT NULL DEFAULT '',
            src TEXT NOT NULL DEFAULT '',
            dst TEXT NOT NULL DEFAULT '',
            device TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            expires REAL NOT NULL,
            created_by TEXT NOT NULL,
            comment TEXT NOT NULL DEFAULT '',
            ended REAL
        );
        CREATE INDEX silences_active ON silences (ended, expires);

        ALTER TABLE alerts ADD COLUMN silence_id INTEGER
            REFERENCES silences (id) ON DELETE SET NULL;
        CREATE INDEX alerts_silence ON alerts (silence_id) WHERE silence_id IS NOT NULL;

        CREATE TABLE alert_history (
            id INTEGER PRIMARY KEY,
            alert_id INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
            ts REAL NOT NULL,
            operator TEXT NOT NULL,
            action TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX alert_history_alert ON alert_history (alert_id, ts);
        """,
    ),
    (
        "flow directions and details",
        """
        ALTER TABLE flows ADD COLUMN packets_out INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE flows ADD COLUMN bytes_out INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE flows ADD COLUMN packets_in INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE flows ADD COLUMN bytes_in INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE flows ADD COLUMN iface TEXT NOT NULL DEFAULT '';
        ALTER TABLE flows ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
        CREATE INDEX flows_app ON flows (app, start);
        """,
    ),
    (
        "rules an operator enabled or disabled",
        """
        CREATE TABLE rule_state (
            sid INTEGER PRIMARY KEY,
            enabled INTEGER NOT NULL,
            changed REAL NOT NULL,
            operator TEXT NOT NULL DEFAULT ''
        );
        """,
    ),
    (
        "ban lifting and proposed bans",
        """
        ALTER TABLE bans ADD COLUMN lifted REAL;
        ALTER TABLE bans ADD COLUMN lifted_by TEXT NOT NULL DEFAULT '';
        ALTER TABLE bans ADD COLUMN bantime REAL;
        ALTER TABLE bans ADD COLUMN alert INTEGER;
        """,
    ),
    (
        "where each followed journal was read up to",
        """
        CREATE TABLE journal_cursors (
            matches TEXT PRIMARY KEY,
            cursor TEXT NOT NULL,
            updated REAL NOT NULL
        );
        """,
    ),
    (
        "the device inventory: addresses, services, type, risk, presence; findings by port; "
        "scan results and their differences",
        """
        ALTER TABLE devices ADD COLUMN addresses TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE devices ADD COLUMN kind_reason TEXT NOT NULL DEFAULT '';
        ALTER TABLE devices ADD COLUMN services TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE devices ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE devices ADD COLUMN seen_by TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE devices ADD COLUMN risk INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE devices ADD COLUMN state TEXT NOT NULL DEFAULT 'present';
        ALTER TABLE devices ADD COLUMN last_scan INTEGER;
        ALTER TABLE findings ADD COLUMN port INTEGER;
        ALTER TABLE findings ADD COLUMN proto TEXT NOT NULL DEFAULT '';
        ALTER TABLE findings ADD COLUMN scan_id INTEGER;
        ALTER TABLE findings ADD COLUMN resolved REAL;
        ALTER TABLE scans ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE scans ADD COLUMN results TEXT NOT NULL DEFAULT '[]';
        ALTER TABLE scans ADD COLUMN diff TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE scans ADD COLUMN requested_by TEXT NOT NULL DEFAULT '';
        ALTER TABLE scans ADD COLUMN error TEXT NOT NULL DEFAULT '';
        CREATE INDEX scans_kind ON scans (kind, started);
        """,
    ),
    # Before it, a device could be listed twice: by its MAC and by an address it was scanned
    # at. The step is frozen with its version (engine/devices/merge.py, COLUMNS_V8).
    ("one device per MAC: duplicate devices merged, their history kept", merge_duplicates),
    # Who did it and to whom, so that a ban is proposed for the attacker, not the source of
    # whatever packet matched. Before it, a rule alert's source could be the server answering
    # (a login prompt); its flow's initiator is the side that came to it.
    (
        "alerts name their attacker and target",
        """
        ALTER TABLE alerts ADD COLUMN attacker TEXT NOT NULL DEFAULT '';
        ALTER TABLE alerts ADD COLUMN target TEXT NOT NULL DEFAULT '';
        UPDATE alerts SET attacker = dst, target = src
            WHERE source = 'rules' AND json_valid(evidence)
            AND json_extract(evidence, '$.flow.src') = dst AND dst != src;
        UPDATE alerts SET attacker = src, target = dst
            WHERE attacker = '' AND target = '' AND source NOT IN ('devices', 'scan', 'serial');
        UPDATE alerts SET target = src WHERE source IN ('devices', 'scan', 'serial');
        UPDATE alerts SET target = rule WHERE source = 'logwatch' AND target = '';
        """,
    ),
]

LATEST = len(MIGRATIONS)


class SchemaError(Exception):
    """The database was written by a newer iotsec, or a migration failed."""


def version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> list[str]:
    """Bring the schema forward to ``target``, one transaction per step; returns the steps run."""
    current = version(conn)
    if current > LATEST:
        raise SchemaError(
            f"database schema version {current} is newer than this iotsec knows ({LATEST}); "
            "upgrade iotsec or point [store] path at another file"
        )
    done = []
    for number in range(current, target):
        name, script = MIGRATIONS[number]
        try:
            conn.execute("BEGIN IMMEDIATE")
            if callable(script):
                script(conn)
            else:
                for statement in _statements(script):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except (sqlite3.Error, ValueError) as exc:  # ValueError: a step's data did not parse
            conn.execute("ROLLBACK")
            raise SchemaError(f"migration {number + 1} ({name}) failed: {exc}") from exc
        done.append(name)
    return done


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
