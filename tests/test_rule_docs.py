"""What the READMEs say about our rule pack against the shipped pack: every rule row's sid, msg,
severity (and classtype, where shown) as the engine loads them, and severities that rank."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from engine.detect.classification import severity_of
from engine.detect.parser import load_rules
from engine.detect.variables import load_variables
from engine.model import Severity

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / "rules" / "packet" / "iot.rules"
OURS = range(9100000, 9101000)
# A row of `iotsec rules list` as the README shows it: sid, hits, action, severity, on, msg.
LISTED = re.compile(r"^\s*(\d+)\s+\d+\s+(?:alert|drop|reject|pass)\s+(\w+)\s+(?:yes|no)\s+(.+)$")
# A row of rules/README.md's table: | sid | severity | classtype | msg |.
TABLED = re.compile(r"^\|\s*(\d+)\s*\|\s*(\w+)\s*\|\s*([\w-]+)\s*\|\s*(.+?)\s*\|$")


@pytest.fixture(scope="module")
def pack() -> dict[int, tuple[str, str, str]]:
    """sid -> (severity, classtype, msg) of the shipped pack."""
    rules, rejected = load_rules([PACK], load_variables({}))
    assert rejected == []
    return {r.sid: (severity_of(r).label, r.classtype, r.msg) for r in rules}


def test_the_readme_rule_listings_match_the_pack(pack: dict[int, tuple[str, str, str]]) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [m.groups() for m in map(LISTED.match, text.splitlines()) if m]
    shown = [(int(sid), severity, msg) for sid, severity, msg in rows if int(sid) in OURS]
    assert len(shown) >= 3, "the README's `iotsec rules list` example was not found"
    for sid, severity, msg in shown:
        assert sid in pack, f"README.md lists sid {sid}, which the pack does not have"
        assert (severity, msg) == (pack[sid][0], pack[sid][2]), f"README.md on sid {sid}"


def test_the_rules_readme_table_is_the_pack(pack: dict[int, tuple[str, str, str]]) -> None:
    text = (ROOT / "rules" / "README.md").read_text(encoding="utf-8")
    table = {int(m[1]): (m[2], m[3], m[4]) for m in map(TABLED.match, text.splitlines()) if m}
    assert table == pack


def test_severities_rank_instead_of_all_being_high(pack: dict[int, tuple[str, str, str]]) -> None:
    counts = Counter(severity for severity, _, _ in pack.values())
    assert counts[Severity.HIGH.label] * 4 <= len(pack), f"too many high rules: {counts}"
    assert {Severity.HIGH.label, Severity.MEDIUM.label, Severity.LOW.label} <= set(counts)
    assert pack[9100001][0] == "low", "a device serving a Telnet login prompt is hygiene"
    assert pack[9100030][0] == "high", "a Modbus write from an unexpected host needs a human"
