"""A pcre that backtracks exponentially on a crafted payload (M4: ``/^(a+)+$/`` on "a"*28+"!"
froze every control client for 15 s): its searches stop at [detect] pcre_timeout, the rule does
not match that packet, the sid's pcre_timeouts count says so and the engine keeps answering."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.control.client import Client
from engine.detect.match import PcreTimeout, inspect_rule
from engine.detect.parser import parse_rules
from engine.detect.rules import Rule
from engine.detect.variables import load_variables
from tests.conftest import start_engine, wait_for
from tests.test_detect_engine import replay, rule_alerts, udp_capture

EVIL = b"a" * 28 + b"!"
BUDGET = 0.05
# What a search may overrun its timeout by on a busy machine (the regex module checks its
# clock every so many steps).
SLACK = 0.25


def pcre_rule(options: str) -> Rule:
    """One rule with these options, through the parser (so its pcre is compiled as the
    engine compiles it)."""
    rules, rejected = parse_rules(f'alert udp any any -> any any (msg:"t"; {options} sid:1;)',
                                  "t.rules", load_variables({}))  # fmt: skip
    assert not rejected, rejected
    return rules[0]


def timed_inspect(rule: Rule, payload: bytes) -> tuple[object, float]:
    """What inspect_rule gives on ``payload`` with the test budget (the PcreTimeout class
    when it gives up), and how long it took."""
    started = time.monotonic()
    try:
        result: object = inspect_rule(rule, lambda name: payload, 0, BUDGET)
    except PcreTimeout:
        result = PcreTimeout
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    ("pcre", "payload", "expected"),
    [
        # The reported pattern: the regex module sees through the nesting, no budget needed.
        ("/(a+)+$/", EVIL, None),
        # Alternatives that overlap: exponential, so the search is stopped.
        ("/(a|aa)+$/", EVIL, PcreTimeout),
        ("/(.*a){20}/", EVIL, True),
        ("/(.*a){20}/", b"a" * 19 + b"!" * 30, None),
        # A backreference (no linear-time engine takes one) on top of overlapping alternatives.
        ("/^(a|a)+\\1$/", EVIL, PcreTimeout),
    ],
)  # fmt: skip
def test_an_evil_pattern_ends_within_the_budget(pcre: str, payload: bytes,
                                                 expected: object) -> None:  # fmt: skip
    result, took = timed_inspect(pcre_rule(f'pcre:"{pcre}";'), payload)
    assert result is expected
    assert took < BUDGET + SLACK


def test_a_rules_searches_share_one_budget() -> None:
    """A relative pcre is tried after each match of the one before it (up to 64 times): each
    try here takes well under the budget, all of them together well over it."""
    rule = pcre_rule('pcre:"/x/"; pcre:"/^(a|a)+$/R";')
    result, took = timed_inspect(rule, (b"x" + b"a" * 16 + b"!") * 40)
    assert result is PcreTimeout
    assert took < BUDGET + SLACK


def test_ordinary_patterns_still_match() -> None:
    """A backreference, and a relative pcre anchored where the content before it ended."""
    assert timed_inspect(pcre_rule('pcre:"/(\\w+) \\1/";'), b"bye bye")[0] is True
    assert timed_inspect(pcre_rule('pcre:"/(\\w+) \\1/";'), b"bye now")[0] is None
    relative = pcre_rule('content:"USER "; pcre:"/^[a-z]{3,}\\r\\n/R";')
    hit, _ = timed_inspect(relative, b"USER root\r\n")
    assert hit is not None and hit is not True and hit.matched == b"USER "


REPRODUCTION = 1000010
OVERLAPPING = 1000011
NORMAL = 1000012
RULES = (
    f'alert udp any any -> any 7777 (msg:"TEST nested"; pcre:"/^(a+)+$/"; sid:{REPRODUCTION};)\n'
    f'alert udp any any -> any 7777 (msg:"TEST overlapping"; pcre:"/^(a|a)+$/"; '
    f"sid:{OVERLAPPING};)\n"
    f'alert udp any any -> any 7777 (msg:"TEST knock"; pcre:"/^knock [0-9]+$/"; sid:{NORMAL};)\n'
)


@pytest.mark.parametrize("evil_packets", [6, 80])  # a few, and a flood in one capture chunk
def test_the_engine_answers_while_an_evil_packet_is_matched(
    tmp_path: Path, evil_packets: int
) -> None:
    rules = tmp_path / "local.rules"
    rules.write_text(RULES)
    engine = start_engine(tmp_path / "e", f'[detect]\nrule_files = ["{rules}"]\n')
    try:
        capture = udp_capture(tmp_path, [EVIL] * evil_packets + [b"knock 42"])
        took: list[float] = []

        def run_replay() -> None:
            started = time.monotonic()
            replay(engine, capture)
            took.append(time.monotonic() - started)

        replaying = threading.Thread(target=run_replay)
        waits: list[float] = []
        with Client(engine.socket, client="probe", timeout=30) as probe:
            replaying.start()
            while replaying.is_alive():
                started = time.monotonic()
                assert "uptime" in probe.request("status")
                waits.append(time.monotonic() - started)
                time.sleep(0.02)
        replaying.join()
        assert took and took[0] < 2 + evil_packets * BUDGET * 2, f"the replay took {took} s"
        assert waits and max(waits) < 1, f"status waited up to {max(waits):.2f} s"

        with engine.client() as client:
            listed = {r["sid"]: r for r in client.request("rules.list")["rules"]}
            status = client.request("rules.status")
        # Every evil packet was given up on by the overlapping rule, and said so once.
        assert listed[OVERLAPPING]["pcre_timeouts"] == evil_packets
        assert listed[OVERLAPPING]["hits"] == 0
        assert {"sid": OVERLAPPING, "packets": evil_packets} in status["pcre_timeouts"]
        warned = [line for line in engine.log.read_text().splitlines()
                  if f"sid {OVERLAPPING} " in line and "ran out of time" in line]  # fmt: skip
        assert len(warned) == 1, warned
        # The rules that do not backtrack are untouched: no false alert, a true one.
        assert listed[REPRODUCTION]["hits"] == 0
        assert rule_alerts(engine, REPRODUCTION) == []
        (alert,) = wait_for(lambda: rule_alerts(engine, NORMAL), "the knock alert")
        assert alert["title"] == "TEST knock"
    finally:
        engine.stop()
