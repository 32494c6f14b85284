"""Opening the database: private file modes, WAL, foreign keys, migrations, read-only readers."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import sqlite_utils

from engine.fileperms import PermissionProblem, private_dir, private_file
from engine.store import schema

T = TypeVar("T")
# A read-only query run off the event loop: given a function of a reader connection, its result.
Reader = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]

GROUP = "iotsec"


class StoreError(Exception):
    """The database cannot be opened or used; the message names the file."""


def _tighten(path: Path) -> None:
    """The database, its WAL and shared memory readable by the engine's user alone: a member
    of the socket's group has no role by being one, and every role reads through the API."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        private_file(p)


def lock_database(path: Path, group: str = GROUP) -> int:
    """Hold ``<db>.lock`` exclusively for this process's life: one engine per database.

    Alert ids are handed out in memory, so two engines on one file would collide.
    """
    path = Path(path)
    try:
        private_dir(path.parent, group)
    except PermissionProblem as exc:
        raise StoreError(str(exc)) from None
    lock = Path(f"{path}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreError(
            f"{path}: another engine (pid {holder}) is using this database; stop it, attach"
            " to it with --socket, or set [store] path to another file"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


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
    try:
        private_dir(path.parent, group)
    except PermissionProblem as exc:
        raise StoreError(str(exc)) from None
    old_umask = os.umask(0o077)
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
    _tighten(path)
    return conn


def open_db(path: Path, *, readonly: bool = False) -> sqlite_utils.Database:
    """The sqlite-utils view of :func:`connect`, for queries."""
    return sqlite_utils.Database(connect(path, readonly=readonly))
