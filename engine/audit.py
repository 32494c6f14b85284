"""The audit log: every state-changing command, chained with HMAC-SHA256.

Edits and deletions show.

Row *n* carries ``hmac = HMAC(key, prev_hmac | id | ts | operator | uid | role | command | args |
result)`` where ``prev_hmac`` is row *n-1*'s ``hmac``; the head of the chain (last id and hmac)
is kept in ``meta`` so cutting rows off the end is noticed too. The key lives in a 0600 file
beside the database.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

GENESIS = "0" * 64
HEAD_KEY = "audit_head"


class AuditKeyError(Exception):
    """The audit key cannot be read or created."""


def key_path(db_path: Path) -> Path:
    return Path(db_path).parent / "audit.key"


def load_key(path: Path, *, create: bool = False) -> bytes:
    """The HMAC key; with ``create``, a new random 256-bit key is written 0600 if none exists."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise AuditKeyError(
                f"{path}: audit key not found (it is created by the engine on first start)"
            ) from None
        data = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except PermissionError:
        raise AuditKeyError(
            f"{path}: permission denied reading the audit key (run as the engine's user or root)"
        ) from None
    if len(data) < 32:
        raise AuditKeyError(f"{path}: audit key is {len(data)} bytes, expected 32")
    return data


def _mac(key: bytes, prev: str, row: dict[str, Any]) -> str:
    h = crypto_hmac.HMAC(key, hashes.SHA256())
    h.update(_message(prev, row))
    return h.finalize().hex()


def _message(prev: str, row: dict[str, Any]) -> bytes:
    fields = [
        prev,
        str(row["id"]),
        repr(float(row["ts"])),
        row["operator"],
        str(row["uid"]),
        row["role"],
        row["command"],
        row["args"],
        row["result"],
    ]
    return "\x1f".join(fields).encode()


@dataclass(frozen=True)
class AuditEntry:
    operator: str
    uid: int
    role: str
    command: str
    args: dict[str, Any]
    result: str
    ts: float


def append(conn: sqlite3.Connection, key: bytes, entry: AuditEntry) -> int:
    """Append one entry to the chain inside the caller's transaction; returns its id."""
    head = conn.execute("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,)).fetchone()
    last_id, prev = (0, GENESIS)
    if head:
        last_id_text, prev = head[0].split(":", 1)
        last_id = int(last_id_text)
    row = {
        "id": last_id + 1,
        "ts": entry.ts,
        "operator": entry.operator,
        "uid": entry.uid,
        "role": entry.role,
        "command": entry.command,
        "args": json.dumps(entry.args, sort_keys=True, separators=(",", ":")),
        "result": entry.result,
    }
    mac = _mac(key, prev, row)
    conn.execute(
        "INSERT INTO audit (id, ts, operator, uid, role, command, args, result, prev_hmac, hmac)"
        " VALUES (:id, :ts, :operator, :uid, :role, :command, :args, :result, :prev, :hmac)",
        {**row, "prev": prev, "hmac": mac},
    )
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (HEAD_KEY, f"{row['id']}:{mac}"),
    )
    return row["id"]


@dataclass(frozen=True)
class Problem:
    id: int
    reason: str


def verify(conn: sqlite3.Connection, key: bytes) -> tuple[int, list[Problem]]:
    """Check the whole chain; returns the number of rows checked and every problem found."""
    problems: list[Problem] = []
    prev = GENESIS
    expected_id = 1
    checked = 0
    cursor = conn.execute(
        "SELECT id, ts, operator, uid, role, command, args, result, prev_hmac, hmac"
        " FROM audit ORDER BY id"
    )
    for r in cursor:
        row = dict(
            zip(
                ("id", "ts", "operator", "uid", "role", "command", "args", "result"),
                r[:8],
                strict=True,
            )
        )
        stored_prev, stored_mac = r[8], r[9]
        checked += 1
        if row["id"] != expected_id:
            missing = (
                f"row {expected_id}"
                if row["id"] == expected_id + 1
                else f"rows {expected_id}-{row['id'] - 1}"
            )
            problems.append(Problem(expected_id, f"{missing} deleted"))
        if stored_prev != prev:
            problems.append(Problem(row["id"], "chain broken: previous row changed or removed"))
        h = crypto_hmac.HMAC(key, hashes.SHA256())
        h.update(_message(stored_prev, row))
        try:
            h.verify(bytes.fromhex(stored_mac))
        except (InvalidSignature, ValueError):
            problems.append(Problem(row["id"], "row edited: its HMAC does not match its contents"))
        prev = stored_mac
        expected_id = row["id"] + 1
    head = conn.execute("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,)).fetchone()
    if head:
        head_id = int(head[0].split(":", 1)[0])
        if head_id >= expected_id:
            problems.append(
                Problem(expected_id, f"rows {expected_id}-{head_id} deleted from the end")
            )
        elif head[0].split(":", 1)[1] != prev:
            problems.append(Problem(head_id, "chain head does not match the last row"))
    elif checked:
        problems.append(Problem(0, "chain head missing from meta"))
    return checked, problems
