"""The test data in tests/data travels with the clone: every file its MANIFEST lists is there,
every file there is listed (or is a licence a row names), and no test or bench looks for data
outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import DATA, ROOT

MANIFEST = DATA / "MANIFEST.md"
# A path inside tests/data as a licence cell names it: "see rules/ET-LICENSE.txt".
NAMED_PATH = re.compile(r"\b[\w-]+/[\w.-]+\.\w+")


def manifest_rows() -> list[list[str]]:
    """The cells of the MANIFEST's table rows (not its header row or the line under it)."""
    lines = [line for line in MANIFEST.read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("| ").split(" | ")] for line in lines[1:]]


def listed() -> set[str]:
    """The files the rows describe: the first cell, several separated by commas."""
    return {name.strip() for row in manifest_rows() for name in row[0].split(",")}


def licences() -> set[str]:
    """The licence files the rows' licence cells name."""
    return {path for row in manifest_rows() for path in NAMED_PATH.findall(row[2])}


def test_the_manifest_lists_the_captures_rules_and_transcripts() -> None:
    assert {name.split("/")[0] for name in listed()} == {"pcaps", "rules", "boot", "logs"}
    assert {"rules/ET-LICENSE.txt", "boot/DEBAUER_LICENSE.txt"} <= licences()


def test_every_file_the_manifest_names_is_in_tests_data() -> None:
    missing = sorted(name for name in listed() | licences() if not (DATA / name).is_file())
    assert missing == []


def test_every_file_in_tests_data_is_in_the_manifest() -> None:
    present = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file()}
    assert sorted(present - listed() - licences() - {MANIFEST.name}) == []


def test_no_test_or_bench_reads_data_beside_the_checkout() -> None:
    sources = [p for folder in ("tests", "bench") for p in (ROOT / folder).rglob("*.py")]
    outside = [
        str(p.relative_to(ROOT))
        for p in sources
        if p != Path(__file__).resolve() and re.search(r"\.\./shared|shared/data", p.read_text())
    ]
    assert outside == []
