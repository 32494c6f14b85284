"""Content matching with Suricata's semantics, stream reassembly, thresholds and HTTP buffers,
on rules built directly (the parser has tests of its own)."""

from __future__ import annotations

import pytest
import regex

from engine.detect.http import HttpParser, normalize_uri
from engine.detect.match import inspect_rule
from engine.detect.rules import (
    Action,
    AddressSet,
    Comparison,
    Content,
    IsDataAt,
    Pcre,
    PortSet,
    Rule,
    Threshold,
)
from engine.detect.stream import Stream
from engine.detect.thresholds import Tracker


def rule(*inspections, bsize=()) -> Rule:
    return Rule(Action.ALERT, "tcp", AddressSet(), PortSet(), AddressSet(), PortSet(), False,
                sid=1, msg="t", inspections=tuple(inspections), bsize=bsize)  # fmt: skip


def holds(r: Rule, payload: bytes, buffers: dict[str, bytes] | None = None) -> bool:
    found = {"payload": payload, **(buffers or {})}
    return inspect_rule(r, found.get) is not None


@pytest.mark.parametrize(
    ("contents", "payload", "expected"),
    [
        ([Content(b"busybox")], b"enable\r\n/bin/busybox MIRAI\r\n", True),
        ([Content(b"BUSYBOX")], b"/bin/busybox", False),
        ([Content(b"BUSYBOX", nocase=True)], b"/bin/busybox", True),
        ([Content(b"GET", depth=3)], b"GET / HTTP/1.1", True),
        ([Content(b"GET", depth=3)], b" GET /", False),
        ([Content(b"/", offset=4, depth=1)], b"GET / HTTP/1.1", True),
        ([Content(b"abc"), Content(b"def", distance=0)], b"abcdef", True),
        ([Content(b"abc"), Content(b"def", distance=1)], b"abcdef", False),
        ([Content(b"abc"), Content(b"def", distance=0, within=3)], b"abc_def", False),
        ([Content(b"abc"), Content(b"def", distance=0, within=4)], b"abc_def", True),
        ([Content(b"abc"), Content(b"def", distance=-6, within=3)], b"defabc", True),
        # backtracking: the first "a=" fails the relative check, the second one passes
        ([Content(b"a="), Content(b"1", distance=0, within=1)], b"a=2 a=1", True),
        ([Content(b"x", negated=True)], b"abc", True),
        ([Content(b"b", negated=True)], b"abc", False),
        ([Content(b"a"), Content(b"z", negated=True, distance=0, within=2)], b"abz", False),
        ([Content(b"a"), Content(b"z", negated=True, distance=0, within=2)], b"abcz", True),
        ([Content(b"HTTP", startswith=True)], b"HTTP/1.1 200", True),
        ([Content(b"HTTP", startswith=True)], b" HTTP/1.1", False),
        ([Content(b"\r\n", endswith=True)], b"login:\r\n", True),
        ([Content(b"login", endswith=True)], b"login:\r\n", False),
        ([Content(b"\xff\x00")], b"a\xff\x00b", True),
    ],
)  # fmt: skip
def test_content_modifiers(contents: list[Content], payload: bytes, expected: bool) -> None:
    assert holds(rule(*contents), payload) is expected


def test_pcre_relative_and_isdataat() -> None:
    r = rule(Content(b"USER "), Pcre(regex.compile(rb"^[a-z]{3,}\r\n"), relative=True))
    assert holds(r, b"USER root\r\n") and not holds(r, b"USER r\r\n")
    assert holds(rule(Content(b"ok"), IsDataAt(2, relative=True)), b"ok123")
    assert not holds(rule(Content(b"ok"), IsDataAt(5, relative=True)), b"ok123")
    assert holds(rule(Content(b"ok"), IsDataAt(5, relative=True, negated=True)), b"ok123")


def test_sticky_buffers_and_bsize() -> None:
    r = rule(Content(b"GET", buffer="http.method"),
             Content(b"Mozi", buffer="http.user_agent", startswith=True),
             bsize=(("http.user_agent", Comparison("=", 4)),))  # fmt: skip
    assert holds(r, b"", {"http.method": b"GET", "http.user_agent": b"Mozi"})
    assert not holds(r, b"", {"http.method": b"GET", "http.user_agent": b"Mozilla"})
    assert not holds(r, b"GET Mozi")  # the payload is not the method buffer


def test_evidence_names_the_match_with_context() -> None:
    hit = inspect_rule(rule(Content(b"busybox")), {"payload": b"cd /tmp; /bin/busybox ECCHI"}.get)
    assert (hit.buffer, hit.start, hit.matched, hit.after) == (
        "payload", 14, b"busybox", b" ECCHI",
    )  # fmt: skip


def test_a_stream_match_must_end_in_new_bytes() -> None:
    r = rule(Content(b"busybox"))
    stream = b"/bin/busybox"
    assert inspect_rule(r, {"payload": stream}.get, new_from=8) is not None
    assert inspect_rule(r, {"payload": stream + b" more"}.get, new_from=12) is None


def test_reassembly_in_order_once_and_bounded() -> None:
    s = Stream(depth=12)
    assert s.add(1000, b"", syn=True) is None
    assert s.add(1001, b"/bin/") == 0
    assert s.add(1006, b"busy") == 5
    assert s.add(1001, b"/bin/") is None  # retransmission
    assert s.add(1012, b"x ECCHI") is None  # early: waits
    assert s.add(1010, b"bo") == 9  # fills the gap, the early segment follows
    assert bytes(s.data) == b"/bin/busybox" and s.full  # cut at the depth


def test_reassembly_wraps_the_sequence_space() -> None:
    s = Stream(depth=100)
    s.add(2**32 - 3, b"abc")
    assert s.add(0, b"def") == 3
    assert bytes(s.data) == b"abcdef"


@pytest.mark.parametrize(
    ("kind", "count", "expected"),
    [
        ("limit", 2, [True, True, False, False, False, False]),
        ("threshold", 3, [False, False, True, False, False, True]),
        ("both", 3, [False, False, True, False, False, False]),
        ("filter", 3, [False, False, False, True, True, True]),
    ],
)
def test_thresholds(kind: str, count: int, expected: list[bool]) -> None:
    tracker = Tracker()
    limit = Threshold(kind, "by_src", count, 60)
    got = [tracker.allows(7, limit, "10.0.0.5", "10.0.0.1", float(t)) for t in range(6)]
    assert got == expected
    # another source is counted apart; after the window the count starts again
    assert tracker.allows(7, limit, "10.0.0.6", "10.0.0.1", 6.0) == expected[0]
    assert tracker.allows(7, limit, "10.0.0.5", "10.0.0.1", 100.0) == expected[0]


def test_http_requests_and_their_buffers() -> None:
    parser = HttpParser()
    stream = (
        b"GET /cgi-bin/../login.cgi?u=%61dmin HTTP/1.1\r\nHost: Cam:80\r\n"
        b"User-Agent: Hello, World\r\nAuthorization: Basic YWRtaW46YWRtaW4=\r\n\r\n"
    )
    assert parser.feed(stream[:30]) == []
    (request,) = parser.feed(stream)
    b = request.buffers
    assert b["http.method"] == b"GET" and b["http.host"] == b"cam"
    assert b["http.uri"] == b"/login.cgi?u=admin"
    assert b["http.uri.raw"] == b"/cgi-bin/../login.cgi?u=%61dmin"
    assert b["http.user_agent"] == b"Hello, World"
    assert b"Authorization: Basic" in b["http.header"]
    assert parser.feed(stream) == []  # already seen
    assert normalize_uri(b"/a//b/./c") == b"/a//b/c"
