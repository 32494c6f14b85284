"""Who is calling: the peer's uid from SO_PEERCRED, and the role the config gives that user."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import struct

from engine.config import RolesConfig
from engine.model import Role


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _groups(uid: int, name: str) -> set[str]:
    groups = set()
    try:
        primary = pwd.getpwuid(uid).pw_gid
        groups.add(grp.getgrgid(primary).gr_name)
    except KeyError:
        pass
    groups.update(g.gr_name for g in grp.getgrall() if name in g.gr_mem)
    return groups


def role_for(uid: int, roles: RolesConfig, engine_uid: int | None = None) -> Role | None:
    """The highest role whose list names this user (``name``, ``uid`` or ``@group``).

    root and the user the engine runs as are always admins; anyone else not listed has no role.
    """
    if uid == 0 or uid == (os.geteuid() if engine_uid is None else engine_uid):
        return Role.ADMIN
    name = user_name(uid)
    groups: set[str] | None = None
    for role, entries in ((Role.ADMIN, roles.admin), (Role.OPERATOR, roles.operator),
                          (Role.VIEWER, roles.viewer)):  # fmt: skip
        for entry in entries:
            if entry.startswith("@"):
                if groups is None:
                    groups = _groups(uid, name)
                if entry[1:] in groups:
                    return role
            elif entry in (name, str(uid)):
                return role
    return None
