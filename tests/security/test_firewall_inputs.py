"""Issue 17, M3: nothing a client sends, or an older version stored, reaches a firewall script
as it was written. ``ipaddress`` keeps an IPv6 zone id (``2001:db8::1%x }\\nflush ruleset\\n#``
is an address to it), and str() gives it back: once a script injection into ``nft -f`` and a
restore that killed the engine at every start. Bans go through a real engine in a network
namespace the test makes (tests/test_respond.py's), with a sentinel table of someone else's
that must survive.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sqlite3
import time

import pytest

from engine.config import ConfigError, RespondConfig, parse_config
from engine.errors import EngineError as ControlError
from engine.respond.firewall import Element, FirewallError, Refused, add_apart
from engine.respond.iptables import Iptables
from engine.respond.manager import BanManager
from engine.respond.nftables import _element
from engine.respond.script import ScriptError, element, name, time_left, words, writable
from engine.respond.targets import TargetError, parse_target
from tests.conftest import EngineProcess
from tests.test_respond import CLIENT4, CLIENT6, Hosts, hosts  # noqa: F401 (a fixture)

INJECTION = "2001:db8::1%x }\nflush ruleset\n#"
# What a ban request may not hold, and what the refusal says about it.
REFUSED = {
    INJECTION: "has a zone id",
    "2001:db8::1%eth0": "has a zone id",
    "fe80::1%1": "has a zone id",
    "2001:db8::%eth0/64": "has a zone id",
    "10.253.99.5\nflush ruleset": "holds whitespace or a control character",
    "10.253.99.5\n": "holds whitespace or a control character",
    "10.253.99.5; flush ruleset": "holds whitespace or a control character",
    "10.253.99.5;": "is not an IPv4 or IPv6 address or network",
    "10.253.99.5 }": "holds whitespace or a control character",
    "10.253.99.5}": "is not an IPv4 or IPv6 address or network",
    "10.253.99.5\x1b[2J": "holds whitespace or a control character",
}
SENTINEL = "table inet sentinel"


def add_sentinel(namespaces: Hosts) -> None:
    """Someone else's table in the engine's namespace: a flush would take it too."""
    for command in (["nft", "add", "table", "inet", "sentinel"],
                    ["nft", "add", "chain", "inet", "sentinel", "keep"]):  # fmt: skip
        done = namespaces.run(namespaces.server, *command)
        assert done.returncode == 0, done.stderr


def ruleset(namespaces: Hosts) -> str:
    done = namespaces.run(namespaces.server, "nft", "list", "ruleset")
    assert done.returncode == 0, done.stderr
    return done.stdout


def insert_bans(engine: EngineProcess, addresses: list[str]) -> list[int]:
    """Active ban rows as an older version (or a hand) may have left them; engine stopped."""
    ids = []
    with sqlite3.connect(engine.db) as conn:
        for address in addresses:
            cursor = conn.execute(
                "INSERT INTO bans (address, reason, source, created, expires, created_by)"
                " VALUES (?, 'old', 'operator', ?, ?, 'root')",
                (address, time.time(), time.time() + 3600),
            )
            ids.append(int(cursor.lastrowid or 0))
    return ids


def states(engine: EngineProcess, ids: list[int]) -> list[str]:
    with sqlite3.connect(engine.db) as conn:
        marks = ", ".join("?" * len(ids))
        rows = dict(conn.execute(f"SELECT id, state FROM bans WHERE id IN ({marks})", ids))
    return [rows[i] for i in ids]


def log_lines(engine: EngineProcess, text: str) -> list[str]:
    return [line for line in engine.log.read_text().splitlines() if text in line]


# -- a real engine, nftables -----------------------------------------------------------------


def test_a_ban_with_a_zone_id_or_script_text_is_refused_and_the_ruleset_is_untouched(
    hosts: Hosts,  # noqa: F811
) -> None:
    add_sentinel(hosts)
    engine = hosts.engine("nftables")
    try:
        with engine.client() as client:
            client.request("bans.ban", {"address": CLIENT4, "for": "1h"})
            for address, message in REFUSED.items():
                with pytest.raises(ControlError) as refused:
                    client.request("bans.ban", {"address": address, "for": "1h"})
                assert refused.value.code == "bad_request", address
                assert message in str(refused.value), (address, str(refused.value))
                assert "nothing was written to the firewall" in str(refused.value)
                assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)
            # One bad address in a decision refuses all of it.
            with pytest.raises(ControlError, match="has a zone id"):
                client.request("bans.ban", {"addresses": [CLIENT6, INJECTION]})
            with pytest.raises(ControlError, match="has a zone id"):
                client.request("bans.unban", {"address": INJECTION})
            listed = client.request("bans.list")
        assert [b["address"] for b in listed["bans"]] == [CLIENT4]
        assert listed["enforced"] and listed["problem"] == ""
        assert hosts.nft_elements() == [CLIENT4]
        text = ruleset(hosts)
        assert SENTINEL in text and "table inet iotsec" in text and "2001:db8" not in text
        assert engine.proc.poll() is None
        with sqlite3.connect(engine.db) as conn:
            stored = [row[0] for row in conn.execute("SELECT address FROM bans")]
        assert stored == [CLIENT4]
    finally:
        engine.stop()


def test_a_stored_ban_no_firewall_can_hold_is_reported_and_the_others_restored(
    hosts: Hosts,  # noqa: F811
) -> None:
    engine = hosts.engine("nftables")
    try:
        with engine.client() as client:
            good = [client.request("bans.ban", {"address": a, "for": "1h"})["id"]
                    for a in (CLIENT4, "2001:db8::7")]  # fmt: skip
    finally:
        engine.stop()
    # Rows an older version accepted, and two nft refuses together (overlapping intervals):
    # restored apart, the first lands and the second is named.
    bad = insert_bans(engine, [INJECTION, "2001:db8::1%eth0", "10.253.99.9\n", "192.0.2.50"])
    overlap = insert_bans(engine, ["198.51.100.0/24", "198.51.100.7"])
    with sqlite3.connect(engine.db) as conn:
        conn.execute("UPDATE bans SET expires = 'soon' WHERE id = ?", (bad[3],))
    add_sentinel(hosts)
    engine = hosts.engine("nftables")
    try:
        listed = engine.client().request("bans.list")
        assert sorted(b["id"] for b in listed["bans"]) == [*good, overlap[0]]
        assert sorted(hosts.nft_elements()) == sorted([CLIENT4, "2001:db8::7", "198.51.100.0/24"])
        assert listed["enforced"] and engine.proc.poll() is None
        unapplied = {entry["id"]: entry["why"] for entry in listed["unapplied"]}
        assert sorted(unapplied) == sorted([*bad, overlap[1]])
        assert "has a zone id" in unapplied[bad[0]] and "flush ruleset" in unapplied[bad[0]]
        assert "its end ('soon') is not a time" in unapplied[bad[3]]
        assert "interval overlaps with an existing one" in unapplied[overlap[1]]
        assert listed["problem"].startswith("5 stored bans not applied (#")
        assert states(engine, [*bad, overlap[1]]) == ["invalid"] * 4 + ["failed"]
        for ban_id in [*bad, overlap[1]]:
            assert len(log_lines(engine, f"ban #{ban_id} not applied:")) == 1
        text = ruleset(hosts)
        assert SENTINEL in text and "table inet iotsec" in text
        assert not [line for line in engine.log.read_text().splitlines()
                    if line.startswith("flush ruleset")]  # fmt: skip
    finally:
        engine.stop()


def test_the_iptables_backend_restores_the_others_too(hosts: Hosts) -> None:  # noqa: F811
    engine = hosts.engine("iptables")
    try:
        with engine.client() as client:
            good = client.request("bans.ban", {"address": CLIENT4, "for": "1h"})["id"]
    finally:
        engine.stop()
    # ipset takes no /0 in a hash:net set: the restore stops at its line.
    rows = insert_bans(engine, [INJECTION, "0.0.0.0/0", "192.0.2.9"])
    engine = hosts.engine("iptables")
    try:
        listed = engine.client().request("bans.list")
        assert sorted(b["id"] for b in listed["bans"]) == [good, rows[2]]
        unapplied = {entry["id"]: entry["why"] for entry in listed["unapplied"]}
        assert sorted(unapplied) == rows[:2]
        assert "has a zone id" in unapplied[rows[0]]
        assert "the firewall refused it: ipset" in unapplied[rows[1]]
        assert states(engine, rows) == ["invalid", "failed", "active"]
        members = hosts.run(hosts.server, "ipset", "list", "iotsec4").stdout
        assert CLIENT4 in members and "192.0.2.9" in members and "0.0.0.0" not in members
        assert "2001:db8" not in hosts.run(hosts.server, "ipset", "list", "iotsec6").stdout
    finally:
        engine.stop()


# -- the parts, alone ------------------------------------------------------------------------


def test_targets_refuse_zone_ids_whitespace_and_control_characters() -> None:
    for text, message in REFUSED.items():
        with pytest.raises(TargetError, match=message):
            parse_target(text)
    with pytest.raises(TargetError, match="zone id"):
        parse_target("fe80::1%eth0/64", strict=False)
    with pytest.raises(TargetError, match="an address is text, not int"):
        parse_target(17)  # type: ignore[arg-type]
    assert str(parse_target("10.0.0.5/24", strict=False)) == "10.0.0.0/24"
    with pytest.raises(ConfigError, match=r"respond\.ignoreip: 'fe80::1%eth0' has a zone id"):
        parse_config({"respond": {"ignoreip": ["fe80::1%eth0"]}})
    long = "1" * 10_000
    with pytest.raises(TargetError) as refused:
        parse_target(long)
    assert len(str(refused.value)) < 200, "a long request is cut short in the message"


def test_elements_are_rendered_anew_and_checked() -> None:
    assert element(parse_target("2001:db8::/48")) == "2001:db8::/48"
    assert element(parse_target("192.0.2.7")) == "192.0.2.7"
    assert element(ipaddress.ip_network("::ffff:192.0.2.1")) in ("::ffff:c000:201",
                                                                 "::ffff:192.0.2.1")  # fmt: skip
    for text in (INJECTION, "fe80::1%1"):
        with pytest.raises(ScriptError, match="has a zone id"):
            element(ipaddress.ip_network(text))


def test_names_words_and_times_are_checked() -> None:
    assert name("ban4") == "ban4" and words("iotsec-ban: ") == "iotsec-ban: "
    for bad in ("ban4 }", "ban4;", "", "4ban", "ban\n4", "a" * 40):
        with pytest.raises(ScriptError):
            name(bad)
    for bad in ('x" drop', "a\nb", "a}b", "", "x" * 65):
        with pytest.raises(ScriptError):
            words(bad)
    network = parse_target("192.0.2.7")
    assert time_left(Element(network, None), 100) is None
    assert time_left(Element(network, 50), 100) == 50
    assert time_left(Element(network, 500), 100) is None, "longer: held without a timeout"
    for bad in (float("nan"), float("inf"), -1.0, "5", True):
        with pytest.raises(ScriptError, match="not a time left"):
            time_left(Element(network, bad), 100)  # type: ignore[arg-type]


def test_nft_timeouts_are_written_in_units_nft_takes() -> None:
    network = parse_target("192.0.2.7")
    # nft refuses 100000000ms and more ("value too large"): a two-day ban was one of them.
    assert _element(Element(network, 2 * 86400)) == "192.0.2.7 timeout 2d"
    assert _element(Element(network, 90061.5)) == "192.0.2.7 timeout 1d1h1m1s500ms"
    assert _element(Element(network, 0)) == "192.0.2.7 timeout 1ms"
    assert _element(Element(network, 1e12)) == "192.0.2.7", "beyond 100 years: none"


def test_ipset_lines_are_built_from_checked_values() -> None:
    assert Iptables._add(Element(parse_target("2001:db8::/64"), 30.7)) == (
        "add iotsec6 2001:db8::/64 timeout 30"
    )
    assert Iptables._add(Element(parse_target("192.0.2.7"), 10**9)) == (
        "add iotsec4 192.0.2.7 timeout 0"
    ), "longer than ipset's longest timeout: held without one, lifted by the engine"
    scoped = Element(ipaddress.ip_network(INJECTION), 30)
    good, refused = writable([Element(parse_target("192.0.2.7"), 30), scoped], Iptables._add)
    assert len(good) == 1 and [r.element for r in refused] == [scoped]


def test_a_refused_element_is_found_by_halves_and_the_others_land() -> None:
    elements = [Element(parse_target(f"192.0.2.{n}"), 60) for n in range(1, 12)]
    bad = {elements[3], elements[8]}
    landed: list[Element] = []

    def add(batch: list[Element]) -> None:
        wrong = bad.intersection(batch)
        if wrong:
            raise FirewallError(f"nft: refused {len(wrong)}")
        landed.extend(batch)

    refused = add_apart(add, elements)
    assert refused == [
        Refused(elements[3], "nft: refused 1"),
        Refused(elements[8], "nft: refused 1"),
    ]
    assert sorted(landed, key=elements.index) == [e for e in elements if e not in bad]

    def no_privilege(batch: list[Element]) -> None:
        raise FirewallError("nft: Operation not permitted", permission=True)

    with pytest.raises(FirewallError):
        add_apart(no_privilege, elements)


def test_respond_checks_what_the_control_api_hands_it() -> None:
    """Whatever the server checked: respond refuses a request it could not write safely."""
    manager = BanManager(RespondConfig(), None, None, None, lambda: [])  # type: ignore[arg-type]

    def ban(*targets: object, **options: object) -> str:
        with pytest.raises(ControlError) as refused:
            asyncio.run(manager.ban_many(list(targets), **options))  # type: ignore[arg-type]
        assert refused.value.code == "bad_request"
        return str(refused.value)

    assert "permanent must be true or false" in ban("192.0.2.7", permanent="false")
    assert "duration or permanent, not both" in ban("192.0.2.7", permanent=True, duration=60)
    for duration in (float("nan"), float("inf"), 0, -5, 1e12, True, "60"):
        assert "for: a duration" in ban("192.0.2.7", duration=duration)
    assert "must be text" in ban("192.0.2.7", reason=["x"])
    assert "an address is text" in ban(17)
    with pytest.raises(ControlError, match="the addresses must be a list"):
        asyncio.run(manager.ban_many("192.0.2.7"))  # type: ignore[arg-type]
    with pytest.raises(ControlError, match="a proposal id is a number"):
        asyncio.run(manager.confirm("1"))  # type: ignore[arg-type]
