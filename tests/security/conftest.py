"""Security tests: real users made for the session (``useradd``, removed afterwards), a real
engine they reach through its socket's group, and requests sent as each of them.

Each user is a member of the engine's control group (so the socket lets them connect) and the
config gives them their role; ``none`` is a group member without a role, ``victim`` a user with
no business with the engine at all (whose terminal or files an attack would go after).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.control.client import Client
from tests.conftest import EngineProcess, require_root, require_tool, run_as, start_engine

# Named after this test run's pid, so that two runs on one machine never share (or remove)
# each other's users.
PREFIX = "isec"
GROUP = f"{PREFIX}{os.getpid()}"
NAMES = {role: f"{GROUP}-{role[:4]}" for role in ("admin", "operator", "viewer", "none", "victim")}


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def _remove(name: str) -> None:
    subprocess.run(["userdel", name], capture_output=True, check=False)


def _remove_stale() -> None:
    """Users and groups left by earlier runs that were killed (their pid is gone)."""
    for entry in pwd.getpwall():
        owner = entry.pw_name.removeprefix(PREFIX).split("-")[0]
        if entry.pw_name.startswith(PREFIX) and owner.isdigit() and not _alive(int(owner)):
            _remove(entry.pw_name)
    for group in grp.getgrall():
        owner = group.gr_name.removeprefix(PREFIX)
        if group.gr_name.startswith(PREFIX) and owner.isdigit() and not _alive(int(owner)):
            subprocess.run(["groupdel", group.gr_name], capture_output=True, check=False)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="session")
def users() -> Iterator[dict[str, User]]:
    """The test's users by role name, and the control group they share (victim excluded)."""
    require_root("the security tests create users")
    for tool in ("useradd", "userdel", "groupadd", "groupdel"):
        require_tool(tool)
    _remove_stale()
    subprocess.run(["groupadd", "--system", GROUP], check=True, capture_output=True)
    made: dict[str, User] = {}
    try:
        for role, name in NAMES.items():
            extra = [] if role == "victim" else ["--groups", GROUP]
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 "--user-group", *extra, name],
                check=True, capture_output=True,
            )  # fmt: skip
            entry = pwd.getpwnam(name)
            groups = tuple(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)
            made[role] = User(name, entry.pw_uid, entry.pw_gid, groups)
        yield made
    finally:
        for name in NAMES.values():
            _remove(name)
        subprocess.run(["groupdel", GROUP], capture_output=True, check=False)


# Appended right after write_config's [control] socket line, so its first line is in [control].
GROUP_LINE = f'group = "{GROUP}"\n'
ROLES = (
    GROUP_LINE
    + f'[control.roles]\nadmin = ["{NAMES["admin"]}"]\noperator = ["{NAMES["operator"]}"]\n'
    f'viewer = ["{NAMES["viewer"]}"]\n'
)


def reachable_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that the test users may traverse (not list or write)."""
    top = Path(tempfile.mkdtemp(prefix=prefix))
    top.chmod(0o711)
    return top


def start_reachable(extra: str = "", control: str = "",
                    prefix: tuple[str, ...] = ()) -> tuple[EngineProcess, Path]:  # fmt: skip
    """An engine with the test users' roles, in a directory they may traverse (removed by the
    caller with the engine): ``control`` holds more [control] keys, ``extra`` more sections,
    ``prefix`` wraps the command (``ip netns exec NS``)."""
    top = reachable_dir("iotsec-sec-")
    config = GROUP_LINE + control + ROLES[len(GROUP_LINE) :] + extra
    engine = start_engine(top / "engine", config, prefix=prefix)
    (top / "engine").chmod(0o711)
    return engine, top


@pytest.fixture
def secure_engine(users: dict[str, User]) -> Iterator[Callable[..., EngineProcess]]:
    """Start engines (arguments as :func:`start_reachable`'s) that the test users reach."""
    started: list[tuple[EngineProcess, Path]] = []

    def start(extra: str = "", control: str = "") -> EngineProcess:
        started.append(start_reachable(extra, control))
        return started[-1][0]

    yield start
    for engine, top in started:
        engine.stop()
        shutil.rmtree(top, ignore_errors=True)


def as_user(user: User, fn: Callable[[], Any]) -> Any:
    """``fn()`` as ``user`` (its own groups only): :func:`tests.conftest.run_as`."""
    return run_as(user.uid, user.gid, list(user.groups), fn)


def request_as(user: User, engine: EngineProcess, cmd: str, args: dict[str, Any] | None = None,
               hello: dict[str, Any] | None = None) -> Any:  # fmt: skip
    """One request to ``engine`` as ``user`` (after a hello with ``hello``'s arguments)."""

    def send() -> Any:
        with Client(engine.socket, client="security-test") as client:
            if hello is not None:
                client.request("hello", hello)
            return client.request(cmd, args or {})

    return as_user(user, send)


def connect_as(user: User, path: Path) -> socket.socket:
    """A Unix socket connected to ``path`` by a child that had become ``user`` and handed it
    over: the engine took the child's credentials at connect time, so every request sent on
    it here is ``user``'s."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # the child: become the user, connect, pass the connection back, exit
        code = 0
        try:
            parent.close()
            os.setgroups(list(user.groups))
            os.setgid(user.gid)
            os.setuid(user.uid)
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(str(path))
            socket.send_fds(child, [b"x"], [conn.fileno()])
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    child.close()
    try:
        _msg, fds, _flags, _addr = socket.recv_fds(parent, 1, 1)
    finally:
        parent.close()
        os.waitpid(pid, 0)
    assert fds, f"could not connect as {user.name}"
    return socket.socket(fileno=fds[0])


class Line:
    """Raw JSON lines over a connection made by :func:`connect_as`."""

    def __init__(self, sock: socket.socket, timeout: float = 30) -> None:
        self.sock = sock
        sock.settimeout(timeout)
        self.file = sock.makefile("rb")
        self.ids = 0

    def send(self, cmd: str, args: Any = None, **extra: Any) -> int:
        self.ids += 1
        message = {"id": self.ids, "cmd": cmd, **({} if args is None else {"args": args}),
                   **extra}  # fmt: skip
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        return self.ids

    def raw(self, line: bytes) -> None:
        self.sock.sendall(line)

    def read(self) -> dict[str, Any]:
        """The next reply (events are skipped)."""
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("the engine closed the connection")
            message = json.loads(line)
            if "event" not in message:
                return message

    def ask(self, cmd: str, args: Any = None) -> dict[str, Any]:
        self.send(cmd, args)
        return self.read()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
