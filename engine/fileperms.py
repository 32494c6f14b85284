"""Private files and directories: readable by their owner only, or also by the ``iotsec`` group
when that group exists and this process may hand files to it.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path


class PermissionProblem(Exception):
    """A directory or file cannot be made private; the message names it and says why."""


def usable_group(name: str) -> int | None:
    """The gid of ``name`` if it exists and this process may give files to it (root or member)."""
    try:
        gid = grp.getgrnam(name).gr_gid
    except KeyError:
        return None
    if os.geteuid() == 0 or gid == os.getegid() or gid in os.getgroups():
        return gid
    return None


def private_dir(directory: Path, group: str) -> None:
    """Make sure ``directory`` exists and only its owner (and ``group``) can enter it.

    A directory we create gets 0700, or 0750 with the group. One that already exists is never
    loosened or tightened, only given the group when we own it; one that anybody may write to
    (such as /tmp) is refused, since others could plant files where ours go.
    """
    gid = usable_group(group)
    mode = 0o750 if gid is not None else 0o700
    try:
        if not directory.exists():
            directory.mkdir(parents=True, mode=mode)
            os.chmod(directory, mode)  # mkdir's mode is filtered by the umask
        st = directory.stat()
        if st.st_mode & stat.S_IWOTH:
            raise PermissionProblem(
                f"{directory}: anybody may write to this directory; point the path at a"
                " private directory (for example under /var/lib/iotsec or ~/.local/state)"
            )
        if gid is not None and st.st_uid == os.geteuid() and st.st_gid != gid:
            os.chown(directory, -1, gid)
    except OSError as exc:
        raise PermissionProblem(f"{directory}: cannot prepare directory: {exc.strerror}") from None


def private_file(path: Path) -> None:
    """Owner-only mode (0600) for a file we own. Data files are never the group's: the group
    lets its members reach the control socket, and the socket's roles decide what they see."""
    if path.exists() and path.stat().st_uid == os.geteuid():
        os.chmod(path, 0o600)
