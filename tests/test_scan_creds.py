"""Default-credential checks against a real Mosquitto that refuses anonymous clients, on
loopback: a broker with a default account is found (and the attempts stop there), one with
its own password is not; the shipped list cites a source for every pair."""

from __future__ import annotations

import asyncio
import getpass
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.scan import creds
from engine.scan.findings import Service
from tests.conftest import require_tool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def broker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    """Mosquitto on loopback with one account, user:password from the test's parameter."""
    mosquitto, passwd = require_tool("mosquitto"), require_tool("mosquitto_passwd")
    user, password = request.param
    passwords = tmp_path / "passwords"
    subprocess.run([passwd, "-c", "-b", str(passwords), user, password], check=True)
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    # As root, mosquitto would switch to its own user, who may not read the test's files.
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                      f"password_file {passwords}\npersistence false\n"
                      f"user {getpass.getuser()}\n")  # fmt: skip
    proc = subprocess.Popen([mosquitto, "-c", str(config)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def refusing(port: int) -> list[Service]:
    return [Service(port, service="mqtt", details={"connack": 5})]


@pytest.mark.parametrize("broker", [("guest", "guest")], indirect=True)
def test_a_broker_with_a_default_account_is_found(broker: int) -> None:
    (finding,) = asyncio.run(creds.check("127.0.0.1", refusing(broker), delay=0))
    assert finding.kind == "default-credentials" and finding.port == broker
    assert "guest / guest" in finding.evidence and "MQTT broker defaults" in finding.evidence
    assert "attempt 3 of at most 4" in finding.evidence


@pytest.mark.parametrize("broker", [("sensor", "Kx9-long-unique")], indirect=True)
def test_a_broker_with_its_own_password_is_not(broker: int) -> None:
    assert asyncio.run(creds.check("127.0.0.1", refusing(broker), delay=0)) == []


def test_a_broker_that_takes_anonymous_clients_is_not_tried() -> None:
    # Its finding is anonymous MQTT already; no connection is made (the port is closed).
    services = [Service(free_port(), service="mqtt", details={"connack": 0})]
    assert asyncio.run(creds.check("127.0.0.1", services, delay=0)) == []


def test_every_shipped_pair_has_a_cited_source() -> None:
    pairs = creds.shipped_pairs()
    assert set(pairs) == {"telnet", "ssh", "http", "mqtt", "serial"}
    assert pairs["telnet"][0] == creds.Pair("root", "xc3511", "Mirai")
    for service, listed in pairs.items():
        assert len({(p.user, p.password) for p in listed}) == len(listed), service
