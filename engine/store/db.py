"""Opening the database: private file modes, WAL, foreign keys, migrations, read-only readers."""

from __future__ import annotations

import grp
import os
import sqlite3
from pathlib import Path

import sqlite_utils

from engine.store import schema

GROUP = "iotsec"


class StoreError(Exception):
    """The database cannot be opened or used; the message names the file."""


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def prepare_dir(directory: Path, group: str = GROUP) -> None:
    """Create ``directory`` readable only by its owner, or also by ``group`` when it exists."""
    gid = _group_id(group)
    mode = 0o750 if gid is not None else 0o700
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=mode)
        st = directory.stat()
        if st.st_uid == os.geteuid():
            os.chmod(directory, mode)
            if gid is not None and st.st_gid != gid:
                os.chown(directory, -1, gid)
    except OSError as exc:
        raise StoreError(f"{directory}: cannot prepare directory: {exc.strerror}") from None


def _tighten(path: Path, group: str = GROUP) -> None:
    gid = _group_id(group)
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if p.exists() and p.stat().st_uid == os.geteuid():
            os.chmod(p, 0o640 if gid is not None else 0o600)
            if gid is not None:
                os.chown(p, -1, gid)


def connect(path: Path, *, readonly: bool = False, group: str = GROUP) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with our pragmas set.

    The writer opens with ``readonly=False``, which creates the file and runs migrations;
    every reader opens ``readonly=True`` and never takes a write lock.
    """
    path = Path(path)
    if readonly:
        if not path.exists():
            raise StoreError(f"{path}: database does not exist yet (has the engine run?)")
        uri = f"file:{path}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA busy_timeout = 5000")
            schema.version(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open database read-only: {exc}") from None
        return conn
    prepare_dir(path.parent, group)
    old_umask = os.umask(0o077 if _group_id(group) is None else 0o027)
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        schema.migrate(conn)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open database: {exc}") from None
    finally:
        os.umask(old_umask)
    _tighten(path, group)
    return conn


def open_db(path: Path, *, readonly: bool = False) -> sqlite_utils.Database:
    """The sqlite-utils view of :func:`connect`, for queries."""
    return sqlite_utils.Database(connect(path, readonly=readonly))
