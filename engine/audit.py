"""The audit log: every state-changing command, chained with HMAC-SHA256.

Edits and deletions show.

Row *n* carries ``hmac = HMAC(key, prev_hmac | id | ts | operator | uid | role | command | args |
result)`` where ``prev_hmac`` is row *n-1*'s ``hmac``; the head of the chain (last id and hmac)
is kept in ``meta``, and a sealed copy of it in a file beside the key (written within a second
of each change), so cutting rows off the end is noticed even when ``meta`` is rewritten to
match. The key lives in a 0600 file beside the database.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

if TYPE_CHECKING:
    from engine.events import EventBus
    from engine.model import Operator
    from engine.store.db import Reader
    from engine.store.writer import Writer

GENESIS = "0" * 64
HEAD_KEY = "audit_head"


class AuditKeyError(Exception):
    """The audit key cannot be read or created."""


def key_path(db_path: Path) -> Path:
    return Path(db_path).parent / "audit.key"


def head_path(db_path: Path) -> Path:
    return Path(db_path).parent / "audit.head"


def _seal(key: bytes, head: str) -> str:
    h = crypto_hmac.HMAC(key, hashes.SHA256())
    h.update(b"audit-head\x1f" + head.encode())
    return h.finalize().hex()


def write_head(path: Path, key: bytes, head: tuple[int, str]) -> None:
    """Keep the chain head outside the database, sealed with the key, replaced atomically."""
    text = f"{head[0]}:{head[1]}"
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{text}:{_seal(key, text)}\n")
    os.replace(tmp, path)


def read_head(path: Path, key: bytes) -> tuple[int, str] | None:
    """The head kept outside the database; None if there is none yet."""
    try:
        raw = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        head_id, mac, seal = raw.split(":")
        ok = _seal(key, f"{head_id}:{mac}") == seal
        parsed = (int(head_id), mac)
    except ValueError:
        ok = False
    if not ok:
        raise AuditKeyError(f"{path}: the audit head file was altered (its seal does not match)")
    return parsed


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


def append(conn: sqlite3.Connection, key: bytes, entry: AuditEntry) -> tuple[int, str]:
    """Append one entry to the chain inside the caller's transaction; its id and HMAC."""
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
    return row["id"], mac


@dataclass(frozen=True)
class Problem:
    id: int
    reason: str


def verify(
    conn: sqlite3.Connection, key: bytes, outside: tuple[int, str] | None = None
) -> tuple[int, list[Problem]]:
    """Check the whole chain against itself, ``meta`` and the head kept ``outside`` the
    database; returns the number of rows checked and every problem found."""
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
            missing = _rows(expected_id, row["id"] - 1)
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
    # Where the last row should be: the head in meta, and the sealed copy outside.
    claims: list[tuple[int, str, str]] = []
    head = conn.execute("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,)).fetchone()
    if head:
        head_id, head_mac = head[0].split(":", 1)
        claims.append((int(head_id), head_mac, "meta"))
    elif checked:
        problems.append(Problem(0, "chain head missing from meta"))
    if outside is not None:
        claims.append((*outside, "the head file"))
    last = max((c[0] for c in claims), default=0)
    if last >= expected_id:
        problems.append(Problem(expected_id, f"{_rows(expected_id, last)} deleted from the end"))
    else:
        for claim_id, claim_mac, where in claims:
            row = conn.execute("SELECT hmac FROM audit WHERE id = ?", (claim_id,)).fetchone()
            if row is None or row[0] != claim_mac:
                problems.append(Problem(claim_id, f"row replaced: {where} recorded another"))
    return checked, problems


def _rows(first: int, last: int) -> str:
    return f"row {first}" if first == last else f"rows {first}-{last}"


def verify_all(conn: sqlite3.Connection, key: bytes, head_file: Path) -> tuple[int, list[Problem]]:
    """:func:`verify` with the head kept in ``head_file``; a broken seal is one more problem."""
    try:
        outside = read_head(head_file, key)
    except AuditKeyError as exc:
        checked, problems = verify(conn, key)
        return checked, [*problems, Problem(0, str(exc))]
    return verify(conn, key, outside)


def recent(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, newest first."""
    cur = conn.execute(
        "SELECT id, ts, operator, uid, role, command, args, result FROM audit"
        " ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    names = [c[0] for c in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


class AuditTrail:
    """The engine's audit chain: entries appended through the writer, the newest head sealed
    outside the database (within a second of each change, and on stop), each entry published
    on the ``audit`` topic."""

    def __init__(self, db_path: Path, writer: Writer, bus: EventBus, read: Reader) -> None:
        self.db_path = db_path
        self.writer = writer
        self.bus = bus
        self.read = read
        self.key = load_key(key_path(db_path), create=True)
        # The newest chain head, and the one last saved outside the database.
        self._head: tuple[int, str] = (0, "")
        self._saved: tuple[int, str] = (0, "")

    async def record(self, operator: Operator, command: str, args: dict[str, Any],
                     result: str) -> None:  # fmt: skip
        entry = AuditEntry(
            operator=operator.name,
            uid=operator.uid,
            role=operator.role.label,
            command=command,
            args={**args, **({"ssh_client": operator.ssh_client} if operator.ssh_client else {})},
            result=result,
            ts=time.time(),
        )
        key = self.key
        while True:
            try:
                head = await self.writer.run(lambda conn: append(conn, key, entry))
                break
            except queue.Full:
                await asyncio.sleep(0.01)
        if head[0] > self._head[0]:
            self._head = head
        if self.bus.wants("audit"):
            self.bus.publish("audit", {"id": head[0], "ts": entry.ts, "operator": entry.operator,
                                       "command": command, "result": result})  # fmt: skip

    def save_head(self) -> None:
        """Seal the newest head into the file beside the key, if it changed."""
        head = self._head
        if head[0] and head != self._saved:
            write_head(head_path(self.db_path), self.key, head)
            self._saved = head

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        return await self.read(lambda conn: recent(conn, limit))

    async def verify(self) -> dict[str, Any]:
        """Check the whole chain (see :func:`verify_all`)."""
        await asyncio.to_thread(self.save_head)
        head_file = head_path(self.db_path)
        checked, problems = await self.read(lambda conn: verify_all(conn, self.key, head_file))
        return {
            "checked": checked,
            "ok": not problems,
            "problems": [{"id": p.id, "reason": p.reason} for p in problems],
        }
