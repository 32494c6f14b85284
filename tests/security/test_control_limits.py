"""What one client can take from the engine: memory for replies it does not read (H2), events
it does not read (M6), and connections (M1)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from engine.control.protocol import ControlError
from tests.conftest import wait_for
from tests.security.conftest import Line, connect_as, request_as, rss_kib

MiB = 1024


def test_a_client_that_does_not_read_is_cut_off_and_its_memory_comes_back(
    secure_engine, users
) -> None:
    """The reported attack: pipelining status while reading nothing took the engine from 58 MB
    to 682 MB, the memory stayed, and the log got 86,400 lines."""
    engine = secure_engine(control="max_pending_bytes = 2097152\n")
    before = rss_kib(engine.proc.pid)
    sock = connect_as(users["viewer"], engine.socket)
    sock.setblocking(False)
    request = json.dumps({"id": 1, "cmd": "status"}).encode() + b"\n"
    burst = request * 200
    deadline = time.monotonic() + 60
    peak, cut = before, False
    while time.monotonic() < deadline and not cut:
        try:
            sock.send(burst)
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            cut = True
        peak = max(peak, rss_kib(engine.proc.pid))
    sock.close()
    assert cut, "the engine kept a client that read nothing for 60 s"
    assert peak - before < 200 * MiB, f"engine grew from {before} KiB to {peak} KiB"
    log = engine.log.read_text()
    assert log.count("bytes of replies wait unread") == 1, log[-2000:]
    assert "socket.send() raised exception" not in log
    with engine.client() as root:  # the engine serves the others as before
        status = root.request("status")
    assert status["control"]["cut_off"] == 1
    assert rss_kib(engine.proc.pid) - before < 100 * MiB


def test_a_subscriber_that_does_not_read_costs_bounded_memory(secure_engine, users) -> None:
    """Events are bounded in bytes, not only in count (a serial event can be 90 KB)."""
    engine = secure_engine(control="queue_bytes = 65536\n")
    before = rss_kib(engine.proc.pid)
    viewer = Line(connect_as(users["viewer"], engine.socket))
    viewer.ask("hello", {"client": "sleeper"})
    assert viewer.ask("subscribe", {"topics": ["alerts"]})["ok"]
    big = {"blob": "x" * 16_000}  # an alert's evidence is kept to 16 KB
    with engine.client() as root:
        for n in range(100):  # 1.6 MB of events for a subscriber that reads none of them
            root.request("alerts.inject", {"title": f"big {n}", "evidence": big})
            time.sleep(0.06)  # one publish each (they are batched every 50 ms)
        status = wait_for(lambda: _dropped(root), "events to be dropped")
    assert status["dropped"]["events"] > 0
    assert rss_kib(engine.proc.pid) - before < 100 * MiB
    # Reading again, the subscriber is told how many it missed with the next event published.
    viewer.sock.settimeout(10)
    with engine.client() as root:
        root.request("alerts.inject", {"title": "after", "evidence": {}})
    while True:
        message = json.loads(viewer.file.readline())
        if "dropped" in message:
            break
    assert message["dropped"] == status["dropped"]["events"]
    viewer.close()


def _dropped(client) -> dict | None:
    status = client.request("status")
    return status if status["dropped"]["events"] else None


def test_connections_are_capped_per_user_with_a_reserve_for_admins(secure_engine, users) -> None:
    """The reported attack: 64 idle connections locked everyone out, root included."""
    engine = secure_engine(control="max_clients = 6\nadmin_reserve = 2\nmax_clients_per_user = 3\n")
    held = [Line(connect_as(users["viewer"], engine.socket)) for _ in range(3)]
    for line in held:
        assert line.ask("hello", {"client": "held"})["ok"]
    with pytest.raises(ControlError, match="max_clients_per_user") as cap:
        request_as(users["viewer"], engine, "status")
    assert cap.value.code == "busy"
    held.append(Line(connect_as(users["operator"], engine.socket)))
    assert held[-1].ask("hello")["ok"]
    with pytest.raises(ControlError, match="kept for admins"):
        request_as(users["operator"], engine, "status")
    assert "uptime" in request_as(users["admin"], engine, "status")
    with engine.client() as root:
        assert root.request("status")["control"]["refused"] == 2
    for line in held:
        line.close()
    assert "uptime" in request_as(users["viewer"], engine, "status")


def test_a_connection_that_never_says_hello_is_closed(secure_engine, users) -> None:
    engine = secure_engine(control='hello_timeout = "1s"\n')
    silent = connect_as(users["viewer"], engine.socket)
    greeted = Line(connect_as(users["viewer"], engine.socket))
    assert greeted.ask("hello")["ok"]
    silent.settimeout(5)
    started = time.monotonic()
    assert silent.recv(100) == b""  # closed by the engine
    assert 0.8 < time.monotonic() - started < 4
    time.sleep(1.5)
    assert greeted.ask("status")["ok"]  # a client that said hello may idle
    greeted.close()
    silent.close()
    assert "idle without a hello" in engine.log.read_text()


def test_many_idle_connections_do_not_lock_out_root(secure_engine, users) -> None:
    engine = secure_engine(control='hello_timeout = "1s"\n')
    idle: list[socket.socket] = []
    for name in ("viewer", "operator"):
        while True:
            sock = connect_as(users[name], engine.socket)
            sock.settimeout(2)
            try:
                sock.sendall(b'{"id":1,"cmd":"hello"}\n')
                greeted = b'"ok":true' in sock.recv(65536)
            except (BrokenPipeError, ConnectionResetError):
                greeted = False  # refused before the hello arrived
            if not greeted:
                sock.close()
                break
            idle.append(sock)
    assert len(idle) == 32  # 16 each for the two users
    with engine.client() as root:
        assert root.request("status")["control"]["clients"] == 33
    for sock in idle:
        sock.close()
