"""Jails count failures per host within findtime by the lines' own times, alert at maxretry
with the lines as evidence, and start the host again from nothing after the alert."""

from __future__ import annotations

from engine.config import JailConfig
from engine.logwatch.filters import find_filter
from engine.logwatch.jails import Failure, Jail
from engine.model import Severity


def jail(**overrides: object) -> Jail:
    config = JailConfig(
        name="sshd",
        filters=("sshd",),
        files=("/var/log/auth.log",),
        maxretry=3,
        findtime=60,
        **overrides,
    )  # type: ignore[arg-type]
    return Jail(config, [find_filter("sshd")])


def failure(ts: float, text: str = "Failed password for root from 203.0.113.5") -> Failure:
    return Failure(ts, text, "/var/log/auth.log", "root")


def test_maxretry_within_findtime_alerts_with_the_lines() -> None:
    j = jail()
    assert j.fail("203.0.113.5", failure(1000)) is None
    assert j.fail("203.0.113.5", failure(1010)) is None
    event = j.fail(
        "203.0.113.5", failure(1020, "Failed password for admin from 203.0.113.5\x1b[2J")
    )
    assert event is not None
    assert event.source == "logwatch" and event.rule == "sshd" and event.src == "203.0.113.5"
    assert event.severity == Severity.HIGH
    assert "3 failures from 203.0.113.5 in 20s" in event.title
    evidence = event.evidence
    assert evidence["failures"] == 3 and evidence["maxretry"] == 3
    assert evidence["lines"][-1] == "Failed password for admin from 203.0.113.5\\x1b[2J"
    assert evidence["action"] == "drop" and evidence["users"] == ["root"]
    assert evidence["jail_state"]["alerts"] == 1 and evidence["jail_state"]["total_failed"] == 3
    # After the alert the host starts again.
    assert j.fail("203.0.113.5", failure(1021)) is None
    assert j.currently_failed() == 1


def test_failures_outside_findtime_do_not_add_up() -> None:
    j = jail()
    for ts in (0, 61, 122, 183):  # a slow attacker, one try a minute
        assert j.fail("198.51.100.7", failure(ts)) is None
    assert j.fail("198.51.100.7", failure(184)) is None
    assert j.fail("198.51.100.7", failure(185)) is not None


def test_hosts_are_counted_apart_and_listed_by_failures() -> None:
    j = jail()
    j.fail("192.0.2.1", failure(10))
    j.fail("192.0.2.2", failure(11))
    j.fail("192.0.2.2", failure(12))
    assert [h["host"] for h in j.hosts()] == ["192.0.2.2", "192.0.2.1"]
    assert j.status_counts() == {"currently_failed": 2, "total_failed": 3, "alerts": 0}


def test_a_jail_that_does_not_ban_asks_only_for_an_alert() -> None:
    j = jail(ban=False, severity="medium")
    for ts in (1, 2):
        j.fail("192.0.2.9", failure(ts))
    event = j.fail("192.0.2.9", failure(3))
    assert event is not None
    assert event.evidence["action"] == "alert" and event.severity == Severity.MEDIUM
