"""The control API against a real engine process: concurrency, roles, refusals, the stream."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.control.client import Client
from engine.control.protocol import ControlError
from tests.conftest import EngineProcess, require_root, run_as, start_engine

VIEWER_UID = 54_322
OPERATOR_UID = 54_323
UNKNOWN_UID = 54_321
# The group given access to the socket; the test's other uids are made members of it.
SOCKET_GROUP = "root"


@pytest.fixture
def shared_engine() -> Iterator[EngineProcess]:
    """An engine whose socket members of its group can reach, as with the iotsec group."""
    directory = Path(tempfile.mkdtemp(prefix="iotsec-ctl-"))
    directory.chmod(0o755)
    engine = start_engine(
        directory,
        f'group = "{SOCKET_GROUP}"\n'
        f'[control.roles]\nviewer = ["{VIEWER_UID}"]\noperator = ["{OPERATOR_UID}"]\n',
    )
    yield engine
    engine.stop()
    shutil.rmtree(directory)


def as_user(engine: EngineProcess, uid: int, requests: list) -> list[dict]:
    """Run requests as another uid (with the socket's group, to connect)."""
    gid = engine.socket.stat().st_gid

    def ask() -> list[dict]:
        out: list[dict] = []
        try:
            with Client(engine.socket) as client:
                out.append({"hello": client.hello})
                for cmd, args in requests:
                    try:
                        out.append({"ok": client.request(cmd, args)})
                    except ControlError as exc:
                        out.append({"error": str(exc), "code": exc.code})
        except ControlError as exc:
            out.append({"refused": str(exc), "code": exc.code})
        return out

    return run_as(uid, gid, [gid], ask)


def test_two_clients_at_once_see_each_other(engine: EngineProcess) -> None:
    watcher = engine.client("watcher")
    watcher.request("subscribe", {"topics": ["alerts"]})
    actor = engine.client("actor")
    ids = [
        actor.request("alerts.inject", {"severity": "high", "title": f"t{i}", "src": "10.1.0.9"})[
            "id"
        ]
        for i in range(3)
    ]
    assert len(set(ids)) == 1  # same rule/src/dst: folded
    # the watcher receives the events; a request on its connection still gets its own answer
    seen = []
    while not seen or seen[-1]["count"] < 3:
        line = watcher._file.readline()
        message = json.loads(line)
        if message.get("event") == "alerts":
            seen.extend(message["data"])
    assert seen[-1]["id"] == ids[0]
    assert watcher.request("alerts.get", {"id": ids[0]})["count"] == 3
    watcher.close()
    actor.close()


def test_pipelined_requests_from_two_threads(engine: EngineProcess) -> None:
    errors: list[Exception] = []

    def work(n: int) -> None:
        try:
            with engine.client(f"c{n}") as c:
                for i in range(200):
                    c.request("alerts.inject", {"title": "x", "src": f"10.2.{n}.{i}"})
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with engine.client() as c:
        assert len(c.request("alerts.list", {"limit": 1000})) == 400


def test_unknown_requests_get_clear_errors(engine: EngineProcess) -> None:
    with engine.client() as c:
        with pytest.raises(ControlError, match="unknown command 'nope'"):
            c.request("nope")
        with pytest.raises(ControlError, match="not an IPv4 or IPv6 address"):
            c.request("alerts.inject", {"title": "x", "src": "evil.example"})
        with pytest.raises(ControlError, match="unknown severity"):
            c.request("alerts.inject", {"title": "x", "severity": "urgent"})
        c._sock.sendall(b"{not json\n")
        assert b"not valid JSON" in c._file.readline()
        # the connection is still usable after a bad line
        assert c.request("status")["pid"] == engine.proc.pid


def test_viewer_reads_but_cannot_change(shared_engine: EngineProcess) -> None:
    require_root("the test connects as other uids")
    with shared_engine.client() as admin:
        alert_id = admin.request("alerts.inject", {"title": "camera telnet open"})["id"]
    out = as_user(shared_engine, VIEWER_UID, [
        ["alerts.list", {}],
        ["alerts.ack", {"id": alert_id, "note": "mine"}],
        ["alerts.inject", {"title": "fake"}],
    ])  # fmt: skip
    assert out[0]["hello"]["role"] == "viewer"
    assert out[1]["ok"][0]["id"] == alert_id
    assert out[2]["code"] == "forbidden" and "needs the operator role" in out[2]["error"]
    assert out[3]["code"] == "forbidden"
    with shared_engine.client() as admin:
        assert admin.request("alerts.get", {"id": alert_id})["state"] == "open"
        refused = [a for a in admin.request("audit.list") if a["result"].startswith("refused")]
        assert {a["command"] for a in refused} == {"alerts.ack", "alerts.inject"}
        assert all(a["uid"] == VIEWER_UID for a in refused)


def test_operator_acks_with_their_name(shared_engine: EngineProcess) -> None:
    require_root("the test connects as other uids")
    with shared_engine.client() as admin:
        alert_id = admin.request("alerts.inject", {"title": "mqtt anonymous"})["id"]
    out = as_user(shared_engine, OPERATOR_UID, [["alerts.ack", {"id": alert_id, "note": "n"}]])
    assert out[1]["ok"]["state"] == "acknowledged"
    assert out[1]["ok"]["ack_by"] == str(OPERATOR_UID)


def test_unknown_uid_is_refused(shared_engine: EngineProcess) -> None:
    require_root("the test connects as other uids")
    out = as_user(shared_engine, UNKNOWN_UID, [["alerts.list", {}]])
    assert out[0]["code"] == "unauthorized"
    assert f"uid {UNKNOWN_UID}" in out[0]["refused"] and "[control.roles]" in out[0]["refused"]


def test_socket_mode(engine: EngineProcess) -> None:
    assert engine.socket.stat().st_mode & 0o777 == 0o660


def test_malformed_arguments_are_bad_requests(engine: EngineProcess) -> None:
    with engine.client() as c:
        for cmd, args, message in [
            ("alerts.list", {"state": [5]}, r"state\[\]: must be a string, not a number"),
            ("subscribe", {"topics": [[1]]}, r"topics\[\]: must be a string, not a list"),
            ("alerts.get", {"id": 1 << 70}, "id: must be from 0 to"),
            ("alerts.inject", {"title": "x", "rule": "r" * 300}, "rule: is longer than 256"),
            ("alerts.silence", {"rule": "x", "duration": "inf"}, "expected a duration"),
        ]:
            with pytest.raises(ControlError, match=message) as err:
                c.request(cmd, args)
            assert err.value.code in ("bad_request", "invalid"), (cmd, err.value.code)


def test_other_operators_actions_arrive_on_the_audit_stream(engine: EngineProcess) -> None:
    watcher = engine.client("watcher")
    watcher.request("subscribe", {"topics": ["audit"]})
    with engine.client("actor") as actor:
        alert_id = actor.request("alerts.inject", {"title": "x"})["id"]
        actor.request("alerts.ack", {"id": alert_id, "note": "mine"})
    seen = []
    while len(seen) < 2:
        message = json.loads(watcher._file.readline())
        assert message["event"] == "audit"
        seen.append(message["data"]["command"])
    assert seen == ["alerts.inject", "alerts.ack"]
    watcher.close()
