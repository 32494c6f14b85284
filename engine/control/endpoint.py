"""The control socket's file: claimed only where nothing but a stale socket of ours lies, and
bound with its mode (0660) and group set before anyone can reach it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from pathlib import Path

from engine.control.protocol import ControlError
from engine.fileperms import PermissionProblem, private_dir, usable_group


class SocketUnusable(ControlError):
    """The socket path cannot be ours: the engine does not start."""


async def claim(path: Path, group: str) -> None:
    """Make sure ``path`` is ours to take: a private directory, and nothing there but a stale
    socket (which is removed)."""
    try:
        private_dir(path.parent, group)
    except PermissionProblem as exc:
        raise SocketUnusable(str(exc), "unusable") from None
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise SocketUnusable(f"{path}: exists and is not a socket; refusing to replace it",
                                 "unusable")  # fmt: skip
        if await _alive(path):
            raise SocketUnusable(
                f"{path}: another engine is already listening here; stop it or set"
                " [control] socket to another path",
                "in_use",
            )
        path.unlink()


def bind(path: Path, group: str) -> socket.socket:
    """A socket bound at ``path``: bound under a temporary name, given its mode and group, then
    renamed into place."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(staging))
    finally:
        os.umask(old)
    # 0660 as the issue asks; the directory (0700, or 0750 with the group) is what keeps
    # others out when there is no iotsec group.
    gid = usable_group(group)
    if gid is not None:
        os.chown(staging, -1, gid)
    os.chmod(staging, 0o660)
    os.rename(staging, path)
    return sock


async def _alive(path: Path) -> bool:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
