"""Requests a client may send: every argument of every command is checked against the
command's declared schema, and what is not strict JSON is refused with a reply that is."""

from __future__ import annotations

import json
import re

import pytest

from engine.control.protocol import ControlError
from tests.security.conftest import Line, connect_as, request_as


def strict(line: bytes) -> dict:
    """A reply parsed as strict JSON (NaN or Infinity in it fail the test)."""

    def refuse(name: str) -> None:
        raise AssertionError(f"the engine sent {name}, which is not JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.fixture
def operator_line(secure_engine, users):
    engine = secure_engine()
    line = Line(connect_as(users["operator"], engine.socket))
    assert line.ask("hello", {"client": "fuzz"})["ok"]
    yield engine, line
    line.close()


@pytest.mark.parametrize(("cmd", "args", "message"), [
    ("traffic.export", {"flow": True}, "flow: must be a string, not a boolean"),
    ("traffic.export", {"since": [1]}, "since: must be a number, not a list"),
    ("traffic.export", {"until": "yesterday"}, "until: must be a number"),
    ("bans.ban", {"address": "198.51.100.1", "permanent": "false"}, "permanent: must be true or"),
    ("bans.ban", {"address": "198.51.100.1", "permanent": 0}, "permanent: must be true or"),
    ("scan.start", {"udp": "no"}, "udp: must be true or false"),
    ("alerts.ack", {"id": "1e3"}, "id: must be an integer"),
    ("alerts.ack", {"id": -1}, "id: must be from 0"),
    ("alerts.list", {"limit": 1.5}, "limit: must be an integer, not a number"),
    ("serial.open", {"port": ["/dev/ttyS0"]}, "port: must be a string, not a list"),
    ("serial.open", {"port": "/dev/ttyS0", "settings": []}, "settings: must be an object"),
    ("bans.ban", {"address": "198.51.100.1", "sudo": True}, "takes no argument 'sudo'"),
    ("status", {"verbose": 1}, "status takes no argument 'verbose' .it takes no arguments."),
    ("logs.tail", {"source": "x" * 5000}, "source: is longer than 4096"),
])  # fmt: skip
def test_wrong_arguments_are_bad_requests_not_internal_errors(operator_line, cmd, args, message):
    _engine, line = operator_line
    reply = line.ask(cmd, args)
    assert reply["ok"] is False and reply["code"] == "bad_request", reply
    assert re.search(message, reply["error"]), reply["error"]


def test_permanent_false_makes_a_timed_ban(operator_line) -> None:
    _engine, line = operator_line
    ban = line.ask("bans.ban", {"address": "198.51.100.2", "permanent": False})["result"]
    assert ban["expires"] is not None
    ban = line.ask("bans.ban", {"address": "198.51.100.3", "permanent": True})["result"]
    assert ban["expires"] is None


@pytest.mark.parametrize("raw", [
    b'{"id": NaN, "cmd": "status"}\n',
    b'{"id": 1e999, "cmd": "status"}\n',
    b'{"id": -Infinity, "cmd": "status"}\n',
    b'{"id": 1, "cmd": "alerts.list", "args": {"limit": Infinity}}\n',
])  # fmt: skip
def test_non_finite_numbers_are_refused_with_valid_json(operator_line, raw: bytes) -> None:
    _engine, line = operator_line
    line.raw(raw)
    reply = strict(line.file.readline())
    assert reply["ok"] is False and reply["code"] == "bad_request"
    assert "not valid JSON" in reply["error"]
    assert line.ask("status")["ok"]  # the connection goes on


def test_deep_nesting_is_refused_clearly(operator_line) -> None:
    _engine, line = operator_line
    for depth in (100_000, 40):
        line.raw(b'{"id":1,"cmd":"status","args":{"x":' + b"[" * depth + b"]" * depth + b"}}\n")
        reply = strict(line.file.readline())
        assert reply["code"] == "bad_request" and "nests deeper than 32" in reply["error"]
    assert line.ask("status")["ok"]


def test_a_bpf_filter_with_a_nul_is_refused(operator_line) -> None:
    """libpcap stops at the NUL: "\\x00tcp" compiled as an empty filter (capture everything)
    while status showed the filter."""
    _engine, line = operator_line
    for bpf in ("\x00tcp", "tcp\nport 22", "port 22\u202e"):
        reply = line.ask("capture.start", {"interfaces": ["lo"], "bpf": bpf})
        assert reply["ok"] is False and reply["code"] == "bad_filter", reply
        assert "control character" in reply["error"]
    assert line.ask("capture.status")["result"]["state"] != "running"


def test_exports_are_unguessable_and_for_the_operator_who_made_them(operator_line, users):
    engine, line = operator_line
    first = line.ask("traffic.export", {"host": "192.0.2.1"})["result"]["export"]
    second = line.ask("traffic.export", {"host": "192.0.2.1"})["result"]["export"]
    assert isinstance(first, str) and len(first) >= 22 and first != second
    assert line.ask("traffic.chunk", {"export": first, "index": 0})["ok"]
    with engine.client() as root, pytest.raises(ControlError) as other:
        root.request("traffic.chunk", {"export": second, "index": 0})
    assert other.value.code == "not_found"
    with pytest.raises(ControlError) as viewer:
        request_as(users["viewer"], engine, "traffic.chunk", {"export": second, "index": 0})
    assert viewer.value.code == "forbidden"
    assert line.ask("traffic.chunk", {"export": second, "index": 0})["ok"]  # still its own
