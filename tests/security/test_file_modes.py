"""M5: the files the engine writes are its user's alone; a member of the socket's group (who may
have no role at all) reads nothing through the file system, and every role reads through the
API."""

from __future__ import annotations

import shutil
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from engine.serial.transcript import TranscriptWriter
from tests.security.conftest import GROUP, as_user, reachable_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_is_readable_by_the_engine_alone(secure_engine, users) -> None:
    engine = secure_engine()
    with engine.client() as root:
        root.request("alerts.inject", {"title": "secret telnet password seen"})
    for path in (engine.db, Path(f"{engine.db}-wal"), Path(f"{engine.db}-shm")):
        assert path.exists(), path
        assert _mode(path) == 0o600, f"{path}: {oct(_mode(path))}"
    assert engine.db.parent.stat().st_gid != 0  # the directory is the group's, the files not

    def read_alerts() -> list:
        conn = sqlite3.connect(f"file:{engine.db}?mode=ro", uri=True)
        return conn.execute("SELECT title FROM alerts").fetchall()

    for role in ("none", "viewer", "operator"):  # members of the group, with or without a role
        with pytest.raises(AssertionError, match="unable to open database"):
            as_user(users[role], read_alerts)


def test_transcripts_are_readable_by_the_engine_alone(users) -> None:
    """The reported leak: a viewer grepped a password out of a transcript (0640, group)."""
    top = reachable_dir("iotsec-transcripts-")
    try:
        path = top / "transcripts" / "ttyCAM-20261207.log"
        writer = TranscriptWriter(path, "test session", group=GROUP)
        writer.received(b"login: root\r\nPassword: hunter2\r\n", time.time())
        writer.close()
        assert _mode(path) == 0o600
        for role in ("viewer", "operator", "none"):
            with pytest.raises(AssertionError, match="Permission denied"):
                as_user(users[role], path.read_bytes)
    finally:
        shutil.rmtree(top)
