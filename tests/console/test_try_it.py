"""The README's "Try it", end to end, as a user types it: the lab with its engine, the console
attached to it in tmux, an attack from outside, the alerts it raises, a ban made with keys that
the firewall enforces, an acknowledgement with a note, and nothing left after `lab down`."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import LabConfig
from engine.control.client import Client
from engine.lab import engine as lab_engine
from engine.lab import processes, topology
from engine.lab.topology import Plan
from tests.conftest import ROOT, require_root, require_tool, run_as, wait_for
from tests.console.test_console_tmux import Tmux, wait_gone

# Not the default lab: a user's own lab on this machine is never touched.
LAB = LabConfig(prefix="iottry", lan="10.253.67.0/24", outside="10.253.68.0/24")
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 23), timeout=3).close()
except OSError as exc:
    print(type(exc).__name__)
else:
    print("connected")
"""


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    session = Tmux("try-it")
    yield session
    session.kill()


def test_try_it(tmp_path: Path, tmux: Tmux) -> None:
    require_root("the lab makes network namespaces")
    for tool in ("ip", "nft", "tmux"):
        require_tool(tool)
    config = tmp_path / "iotsec.toml"
    config.write_text(
        f'[control]\nsocket = "{tmp_path / "run" / "control.sock"}"\n'  # no engine there
        f'[lab]\nprefix = "{LAB.prefix}"\nlan = "{LAB.lan}"\noutside = "{LAB.outside}"\n'
    )

    def iotsec(*args: str, timeout: float = 120) -> str:
        # As `sudo make lab` run by a user: here the user nobody.
        done = subprocess.run([sys.executable, "-m", "console.cli", "--config", str(config),
                               *args], capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT, env={**os.environ, "SUDO_USER": "nobody"})  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    plan = Plan.from_config(LAB)
    camera = next(d for d in plan.devices if d.role == "camera")
    try:
        status = json.loads(iotsec("lab", "up", "--engine", "--json", timeout=300))
        assert status["engine"]["running"], status["engine"]
        engine_pid = status["engine"]["pid"]
        # The user who ran sudo reaches the lab engine as its admin.
        nobody = pwd.getpwnam("nobody")
        socket = status["engine"]["socket"]
        hello = run_as(nobody.pw_uid, nobody.pw_gid, [nobody.pw_gid],
                       lambda: Client(socket).hello)  # fmt: skip
        assert (hello["operator"], hello["role"]) == ("nobody", "admin")

        console = tmux.start_console(config)
        tmux.wait_for(r"● lab engine │ capture: running")
        iotsec("lab", "run", "bruteforce")
        # At 80 columns the titles are cut: the attacker, the target and the title's start.
        tmux.wait_for(r"10\.253\.68\.2 +10\.253\.67\.10 +IOTSEC TELNET brut", timeout=30)
        tmux.wait_for(r"10\.253\.68\.2 +lab-dropbear +lab-dropbear: \d", timeout=30)

        # The jail's alert, alone under the filter, and its source banned with keys.
        tmux.keys("/")
        tmux.wait_for(r"filter: words that must all appear")
        tmux.keys("lab-dropbear", "Enter")
        tmux.wait_for(r"Alerts [1-9]\d* of \d+ │ filter: lab-dropbear─")
        time.sleep(0.3)  # a person's pause: Enter has given the rows the keys back
        tmux.keys("b")
        tmux.wait_for(r"Ban 10\.253\.68\.2, the attacker of alert #\d+")
        tmux.keys("Enter")
        # The outside host is on the gateway's outside segment, so it is a device of the
        # inventory: banning it is asked a second time, naming it.
        tmux.wait_for(r"Ban 10\.253\.68\.2, a device of the inventory\?")
        tmux.keys("y")
        tmux.wait_for(r"bans 1")
        attempt = topology.in_netns(plan.attacker.netns, sys.executable, "-c", CONNECT,
                                    camera.address, timeout=30)  # fmt: skip
        assert attempt.stdout.strip() in ("TimeoutError", "ConnectionRefusedError"), attempt

        tmux.keys("a")
        tmux.wait_for(r"Acknowledge alert #\d+")
        tmux.keys("attacker banned at the gateway", "Enter")
        tmux.wait_for(r"HIGH acked")
        tmux.keys("q")
        wait_gone(console)
    finally:
        subprocess.run([sys.executable, "-m", "console.cli", "--config", str(config), "lab",
                        "down"], capture_output=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert topology.existing_namespaces(LAB.prefix) == []
    assert not lab_engine.directory(plan).parent.exists()
    wait_for(lambda: not processes.alive(engine_pid), "the lab engine to end", 5)
