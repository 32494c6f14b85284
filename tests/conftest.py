"""Shared fixtures: a real engine process on private files, and the test data."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from engine.config import LabConfig
from engine.control.client import Client
from engine.control.protocol import ControlError
from engine.lab import lifecycle, topology
from engine.lab.serial_device import plug as plug_emulator
from engine.lab.topology import Plan

ROOT = Path(__file__).resolve().parent.parent


# Real captures, rules and transcripts from public projects (tests/data/MANIFEST.md).
DATA = ROOT / "tests" / "data"
IN_CI = bool(os.environ.get("CI"))
# Only on a machine where the tests cannot get root or tools, and never under CI, may a test
# whose prerequisite is missing skip (with the reason) instead of failing.
ALLOW_SKIPS = os.environ.get("IOTSEC_ALLOW_SKIPS") == "1" and not IN_CI


def unavailable(reason: str) -> None:
    """Something a test needs is missing (root, nft, socat, tmux, namespaces):
    the test fails with the reason (``make test`` as root installs what is missing). With
    IOTSEC_ALLOW_SKIPS=1, outside CI, it skips instead."""
    if ALLOW_SKIPS:
        pytest.skip(reason)
    pytest.fail(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI every test runs: a skip from anywhere (a helper, a plugin, a fixture) is a
    failure there, with the reason it gave."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which must run every test: {report.longrepr}"


def run_as(uid: int, gid: int, groups: list[int], fn: Callable[[], Any]) -> Any:
    """``fn()`` in a forked child that has become ``uid``/``gid`` with ``groups``, and its
    JSON-able answer; a ControlError it raised is raised here, anything else fails the test.
    A fork rather than a new interpreter: the other user may not read root's Python install."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, answer through the pipe, exit without cleanup
        code = 0
        try:
            os.close(read)
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            try:
                answer = {"ok": fn()}
            except ControlError as exc:
                answer = {"control_error": str(exc), "code": exc.code}
            except BaseException:
                answer = {"crash": traceback.format_exc()}
            os.write(write, json.dumps(answer, default=str).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    answer = json.loads(text) if text else {"crash": "the child said nothing"}
    if "control_error" in answer:
        raise ControlError(answer["control_error"], answer["code"])
    if "crash" in answer:
        raise AssertionError(f"as uid {uid}: {answer['crash']}")
    return answer["ok"]


T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout: float = 15.0) -> T:
    """Poll ``check`` until it gives something true, and return that; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def require_tool(name: str) -> str:
    """The path of a tool a test needs (see :func:`unavailable`)."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (make test installs it when run as root)")
    return path


@dataclass
class EngineProcess:
    """An ``iotsec engine`` child with its own config, database and socket."""

    config: Path
    socket: Path
    db: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def client(self, name: str = "test") -> Client:
        return Client(self.socket, client=name)

    def cli(self, *args: str, check: bool = True, env: dict[str, str] | None = None):
        """Run ``iotsec ARGS`` against this engine, as a user would."""
        return subprocess.run(
            [sys.executable, "-m", "console.cli", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
            env={**os.environ, **(env or {})},
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def write_config(directory: Path, extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "iotsec.toml"
    config.write_text(
        f'[store]\npath = "{directory / "state" / "iotsec.db"}"\n'
        f'[control]\nsocket = "{directory / "run" / "control.sock"}"\n{extra}'
    )
    return config


def start_engine(
    directory: Path, extra_config: str = "", prefix: tuple[str, ...] = ()
) -> EngineProcess:
    """An engine on its own files; ``prefix`` wraps the command (``ip netns exec NS``, ...)."""
    config = write_config(directory, extra_config)
    log = directory / "engine.log"
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "engine", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    engine = EngineProcess(
        config, directory / "run" / "control.sock", directory / "state" / "iotsec.db", proc, log
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited: {log.read_text()}")
        try:
            engine.client().close()
            return engine
        except ControlError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"engine did not start: {log.read_text()}")


# Not the default prefix and ranges, so the tests never touch a lab a user brought up.
TEST_LAB = LabConfig(prefix="iotst", lan="10.253.17.0/24", outside="10.253.18.0/24")


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        unavailable(f"needs root: {why}")


def _session_lab(up: Callable[[LabConfig], Plan], down: Callable[[LabConfig], object],
                 config: LabConfig) -> Iterator[Plan]:  # fmt: skip
    """A lab made with ``up`` for the session, removed with ``down`` also after failures."""
    require_root("the lab creates network namespaces")
    require_tool("ip")
    try:
        yield up(config)
    finally:
        down(config)


@pytest.fixture(scope="session")
def lab() -> Iterator[Plan]:
    """The whole lab for the session."""
    yield from _session_lab(lifecycle.up, lifecycle.down, TEST_LAB)


# The network alone (no daemons), for tests that need only namespaces and addresses.
NETWORK_LAB = LabConfig(prefix="iotnw", lan="10.253.37.0/24", outside="10.253.38.0/24")


@pytest.fixture(scope="session")
def lab_network() -> Iterator[Plan]:
    """A smaller part of the lab: its namespaces, bridge and routes without any daemon."""
    yield from _session_lab(topology.up, topology.down, NETWORK_LAB)


def probe(lab: Plan, kind: str, *args: str, netns: str | None = None) -> dict:
    """Run a client from tests/lab_probe.py in the gateway's (or ``netns``) namespace."""
    done = subprocess.run(
        ["ip", "netns", "exec", netns or lab.gateway.netns, sys.executable,
         str(ROOT / "tests" / "lab_probe.py"), kind, *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[EngineProcess]:
    eng = start_engine(tmp_path)
    yield eng
    eng.stop()


# The recorded U-Boot session of an XM530 camera the emulator replays (MANIFEST: boot/).
BOOT_LOG = DATA / "boot" / "debauer_XM530_ipcam_u-boot_output.md"


class SerialDevice:
    """The device emulator on the far end of a socat pty pair: ``unplug`` ends socat (the pty
    and its link go away), ``plug`` powers it again at the same path."""

    def __init__(self, path: Path, args: list[str], log: Path) -> None:
        self.path = path
        self.args = args
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def plug(self) -> None:
        self.proc = plug_emulator(self.path, self.args, self.log)

    def unplug(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        wait_for(lambda: not self.path.exists(), "the pty link to go away", 5)


# An engine that may scan loopback and alerts on new devices at once.
LOOPBACK_SCOPE = '[scan]\nscope = ["127.0.0.0/8"]\n[devices]\nlearning = "0s"\n'


def start_serial_engine(directory: Path, extra_config: str = "") -> EngineProcess:
    """An engine whose transcripts go under ``directory`` too, and which opens the ptys whose
    links are there (``directory/tty*``, as the devices' socat makes them): a pty is opened only
    when [serial] allow names it."""
    return start_engine(
        directory / "engine",
        f'[serial]\ntranscript_dir = "{directory / "transcripts"}"\n'
        f'allow = ["{glob.escape(str(directory))}/tty*"]\n{extra_config}',
    )


class EchoListener:
    """A TCP listener on 127.0.0.1 (a device's serial server, or a service the engine must not
    reach) that sends back what a client sends, and counts the connections it accepted."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(4096):
                conn.sendall(data)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self.sock.close()


@pytest.fixture
def echo_listener() -> Iterator[EchoListener]:
    listener = EchoListener()
    yield listener
    listener.close()


@pytest.fixture
def serial_device(tmp_path: Path) -> Iterator[SerialDevice]:
    """A camera's UART replaying tests/data/boot's U-Boot session, then a root shell."""
    require_tool("socat")
    device = SerialDevice(tmp_path / "ttyCAM", ["--uboot", str(BOOT_LOG)], tmp_path / "dev.log")
    device.plug()
    yield device
    device.unplug()
