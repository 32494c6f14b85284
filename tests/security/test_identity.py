"""Who the engine takes a client for: the peer's uid and role, and which SSH client it may
protect from bans (H1: never what the client merely claims)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from engine.control.protocol import ControlError
from tests.conftest import require_tool, start_engine, wait_for
from tests.security.conftest import ROLES, Line, connect_as, reachable_dir, request_as


def test_roles_come_from_the_peer_uid(secure_engine, users) -> None:
    engine = secure_engine()
    status = request_as(users["viewer"], engine, "status")
    assert "uptime" in status
    with pytest.raises(ControlError) as refused:
        request_as(users["none"], engine, "status")
    assert refused.value.code == "unauthorized"
    with pytest.raises(ControlError) as forbidden:
        request_as(users["viewer"], engine, "bans.ban", {"address": "198.51.100.1"})
    assert forbidden.value.code == "forbidden"


CLAIMS = ["0.0.0.0/0", "::/0", "198.51.100.0/24", "203.0.113.9", "203.0.113.9 52000 22",
          "fe80::1%eth0", "not an address"]  # fmt: skip


@pytest.mark.parametrize("claim", CLAIMS)
def test_a_claimed_ssh_client_does_not_stop_bans(secure_engine, users, claim: str) -> None:
    """The reported attack: a viewer says hello with a network as its SSH client and keeps the
    connection; every ban was then refused. A claim nothing confirms is ignored, and said so."""
    engine = secure_engine()
    viewer = Line(connect_as(users["viewer"], engine.socket))
    try:
        hello = viewer.ask("hello", {"client": "attacker", "ssh_client": claim})["result"]
        assert hello["ssh_client"] is None
        assert hello["ssh_client_note"].startswith("ignored:")
        ban = request_as(users["operator"], engine, "bans.ban",
                         {"address": "203.0.113.9", "reason": "test"})  # fmt: skip
        assert ban["address"] == "203.0.113.9" and ban["state"] == "active"
        refused = engine.client().request("bans.ban", {"addresses": ["198.51.100.7"]})
        assert refused["count"] == 1
    finally:
        viewer.close()
    assert "SSH client" in engine.log.read_text()  # the ignored claim is in the engine's log


@dataclass
class Link:
    """Namespace ``box`` (the engine's, 192.0.2.1) and ``remote`` (192.0.2.2) on a veth."""

    box: str
    remote: str

    def run(self, netns: str, *command: str, **kw) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", netns, *command], text=True, **kw)


@pytest.fixture
def link() -> Iterator[Link]:
    require_tool("ip")
    tag = os.getpid() % 100000
    net = Link(f"iotsecA{tag}", f"iotsecB{tag}")
    steps = [
        ["ip", "netns", "add", net.box], ["ip", "netns", "add", net.remote],
        ["ip", "link", "add", f"isA{tag}", "netns", net.box, "type", "veth", "peer", "name",
         f"isB{tag}", "netns", net.remote],
        ["ip", "-n", net.box, "addr", "add", "192.0.2.1/24", "dev", f"isA{tag}"],
        ["ip", "-n", net.remote, "addr", "add", "192.0.2.2/24", "dev", f"isB{tag}"],
        ["ip", "-n", net.box, "link", "set", f"isA{tag}", "up"],
        ["ip", "-n", net.remote, "link", "set", f"isB{tag}", "up"],
        ["ip", "-n", net.box, "link", "set", "lo", "up"],
    ]  # fmt: skip
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=30)
        yield net
    finally:
        for ns in (net.box, net.remote):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


# A TCP server on the box that accepts one connection and holds it (an sshd stand-in).
SERVER = """
import socket, sys
s = socket.create_server(("192.0.2.1", 2222))
print("ready", flush=True)
c, _ = s.accept()
print(c.getpeername()[1], flush=True)
sys.stdin.read()
"""
CONNECT = """
import socket, sys
c = socket.create_connection(("192.0.2.1", 2222))
print("connected", flush=True)
sys.stdin.read()
"""
# A console on the box whose environment says it came over SSH: its hello claims that.
CONSOLE = """
import sys
from engine.control.client import Client
c = Client(sys.argv[1], client="console")
print(c.hello.get("ssh_client"), "|", c.hello.get("ssh_client_note"), flush=True)
sys.stdin.read()
"""


def test_a_verified_ssh_client_is_protected(link: Link) -> None:
    """An operator whose SSH_CONNECTION names a TCP connection that is really established on
    the box is protected; the same claim without that connection is not."""
    top = reachable_dir("iotsec-ssh-")
    engine = start_engine(top / "engine", ROLES, prefix=("ip", "netns", "exec", link.box))
    pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    server = link.run(link.box, sys.executable, "-c", SERVER, **pipes)
    remote = None
    consoles = []
    try:
        assert server.stdout.readline().strip() == "ready"
        remote = link.run(link.remote, sys.executable, "-c", CONNECT, **pipes)
        assert remote.stdout.readline().strip() == "connected"
        port = server.stdout.readline().strip()

        def console(connection: str) -> str:
            env = {**os.environ, "SSH_CONNECTION": connection}
            env.pop("SSH_CLIENT", None)
            proc = link.run(link.box, sys.executable, "-c", CONSOLE, str(engine.socket),
                            env=env, cwd=os.getcwd(), **pipes)  # fmt: skip
            consoles.append(proc)
            return proc.stdout.readline().strip()

        forged = console("192.0.2.2 1 192.0.2.1 2222")
        assert forged.startswith("None | ignored: no SSH connection from 192.0.2.2"), forged
        with engine.client() as root:
            assert root.request("bans.ban", {"address": "192.0.2.2"})["state"] == "active"
            root.request("bans.unban", {"address": "192.0.2.2"})
            real = console(f"192.0.2.2 {port} 192.0.2.1 2222")
            assert real.startswith("192.0.2.2 | verified"), real
            with pytest.raises(ControlError, match=r"SSH client of root \(connected now\)"):
                root.request("bans.ban", {"address": "192.0.2.2"})
            consoles.pop().kill()
            wait_for(lambda: _bannable(root, "192.0.2.2"), "the protection to end with the console")
    finally:
        for proc in [server, *consoles, *([remote] if remote else [])]:
            proc.kill()
            proc.wait(10)
        engine.stop()
        subprocess.run(["rm", "-rf", str(top)], check=False)


def _bannable(client, address: str) -> bool:
    try:
        client.request("bans.ban", {"address": address})
    except ControlError:
        return False
    return True
