"""Every registered control command driven with random arguments (Hypothesis), as a viewer and
as an operator, against a real engine in a network namespace of its own: no request may end in
an internal error, a viewer may change nothing, and the engine's memory stays bounded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.control.schema import Duration, Flag, Int, Number, Object, Text, Texts
from tests.conftest import require_root, require_tool
from tests.security.conftest import Line, connect_as, rss_kib, start_reachable
from tests.test_registry import COMMANDS

# Values an attacker would try first, beside what Hypothesis makes up.
HOSTILE = ["", "lo", "/dev/null", "/etc/shadow", "/dev/pts/0", "../../etc/passwd",
           "spy:///dev/null?file=/tmp/iotsec-fuzz-spy", "loop://", "alt://loop://",
           "hwgrep://.*", "socket://127.0.0.1:22", "rfc2217://127.0.0.1:1", "0.0.0.0/0", "::/0",
           "2001:db8::1%x }\nflush ruleset\n#", "203.0.113.9", "fe80::1%lo", "\x00tcp",
           "port 22\u202e", "a" * 300, "1h", "-1s", "inf", "1e999", "open", "all", "syslog",
           "tcp port 22", "alerts", "/tmp/*.log", "\x1b]0;title\x07"]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
    | st.sampled_from(HOSTILE),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=8,
)  # fmt: skip


def typed(spec: Any) -> st.SearchStrategy[Any]:
    """Values of the type a schema entry declares (in bounds or just out of them), so that
    requests get past the schema into the handlers too."""
    text = st.text(max_size=40) | st.sampled_from(HOSTILE)
    if isinstance(spec, Int):
        return st.integers(spec.lo, min(spec.hi, 10**6)) | st.sampled_from(
            [spec.lo, spec.hi, spec.hi + 1, -1]
        )
    if isinstance(spec, Number):
        return st.floats(spec.lo, spec.hi) | st.sampled_from([spec.lo, spec.hi])
    if isinstance(spec, Flag):
        return st.booleans()
    if isinstance(spec, Duration):
        return text | st.floats(0, 1e9)
    if isinstance(spec, Texts):
        return st.lists(text, max_size=3) | (text if spec.one else st.nothing())
    if isinstance(spec, Object):
        return st.dictionaries(st.sampled_from(["baud", "parity", "flow", "x", "data_bits"]),
                               json_values, max_size=4)  # fmt: skip
    assert isinstance(spec, Text)
    return text


def requests() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    def for_command(name: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        schema = COMMANDS[name].args
        known = st.fixed_dictionaries(
            {},
            optional={
                key: st.one_of(typed(spec), typed(spec), typed(spec), json_values)
                for key, spec in schema.items()
            },
        )
        extra = st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=2)
        # Mostly declared arguments, so that most requests reach the handlers.
        args = st.one_of(known, known, known, st.builds(lambda a, b: {**b, **a}, known, extra))
        return st.tuples(st.just(name), args)

    return st.sampled_from(sorted(COMMANDS)).flatmap(for_command)


@pytest.fixture(scope="module")
def fuzz_engine(users) -> Iterator[dict[str, Any]]:
    """An engine alone in a network namespace (a capture or a scan it is asked for touches
    nothing else), with a viewer's and an operator's connection."""
    require_root("network namespaces")
    require_tool("ip")
    netns = f"iotfuzz{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    engine, top = start_reachable(prefix=("ip", "netns", "exec", netns))
    lines = {role: Line(connect_as(users[role], engine.socket)) for role in ("viewer", "operator")}
    for line in lines.values():
        assert line.ask("hello", {"client": "fuzz"})["ok"]
    try:
        yield {"engine": engine, "lines": lines, "rss": rss_kib(engine.proc.pid)}
    finally:
        for line in lines.values():
            line.close()
        engine.stop()
        shutil.rmtree(top, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)


STATES = ["open", "acknowledged", "resolved", "silenced"]


def state(engine) -> str:
    """What a viewer must not be able to change, as root sees it."""
    with engine.client() as root:
        capture = root.request("capture.status")
        seen = {
            "alerts": [(a["id"], a["state"], a["count"], a["ack_note"])
                       for a in root.request("alerts.list", {"state": STATES})],
            "silences": root.request("silences.list"),
            "bans": [(b["address"], b["state"]) for b in root.request("bans.list")["bans"]],
            "rules": root.request("rules.status")["disabled"],
            "capture": (capture["state"], capture.get("interfaces"), capture.get("bpf")),
            "serial": root.request("serial.list"),
            "scans": root.request("scan.list"),
            "devices": root.request("devices.list"),
        }  # fmt: skip
    return json.dumps(seen, sort_keys=True, default=str)


def _send(line: Line, name: str, args: dict[str, Any]) -> dict[str, Any]:
    request_id = line.send(name, args)
    reply = line.read()
    assert reply.get("id") == request_id, reply
    assert reply.get("code") != "internal", f"{name} {args!r}: {reply}"
    return reply


FUZZ = settings(max_examples=1500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.data_too_large])  # fmt: skip


def test_a_viewer_changes_nothing_and_never_breaks_the_engine(fuzz_engine) -> None:
    engine, line = fuzz_engine["engine"], fuzz_engine["lines"]["viewer"]
    before = state(engine)

    @FUZZ
    @given(requests())
    def viewer(request: tuple[str, dict[str, Any]]) -> None:
        name, args = request
        reply = _send(line, name, args)
        if COMMANDS[name].role.label != "viewer":
            assert reply["code"] in ("forbidden", "bad_request"), (name, reply)

    viewer()
    assert state(engine) == before
    _bounded(fuzz_engine)


def test_an_operator_never_breaks_the_engine(fuzz_engine) -> None:
    line = fuzz_engine["lines"]["operator"]

    @FUZZ
    @given(requests())
    def operator(request: tuple[str, dict[str, Any]]) -> None:
        _send(line, *request)

    operator()
    line.ask("capture.stop")  # whatever the fuzzing started
    _bounded(fuzz_engine)


def _bounded(fuzz_engine: dict[str, Any]) -> None:
    engine = fuzz_engine["engine"]
    assert rss_kib(engine.proc.pid) - fuzz_engine["rss"] < 150 * 1024
    assert engine.proc.poll() is None
    assert "control command failed" not in engine.log.read_text()
