"""The vendor of a MAC address, from the OUI database a Debian package installs (Wireshark's
``manuf``, else the IEEE's registry files); never downloaded while running."""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from pathlib import Path

# Wireshark's file (libwireshark-data) merges the IEEE's MA-L, MA-M (/28), MA-S (/36) and IAB
# registries with well-known corrections; the IEEE's own files (ieee-data) are the fallback.
MANUF = Path("/usr/share/wireshark/manuf")
IEEE_DATA = Path("/usr/share/ieee-data")
SOURCES = (MANUF, IEEE_DATA / "oui.csv", IEEE_DATA / "oui.txt")
# The IEEE's longer-prefix registries, read beside its oui.csv when present.
IEEE_LONGER = ("mam.csv", "oui36.csv", "iab.csv")

_SEPARATORS = str.maketrans("", "", ":-. ")
_HEX = frozenset("0123456789ABCDEF")
_OUI_TXT = re.compile(r"^([0-9A-F]{2})-([0-9A-F]{2})-([0-9A-F]{2})\s+\(hex\)\s+(.+?)\s*$")


def _hex_digits(mac: str) -> str:
    """``mac`` as 12 upper-case hex digits, whichever of ``:``, ``-``, ``.`` it is written with."""
    digits = mac.translate(_SEPARATORS).upper()
    if len(digits) != 12 or not _HEX.issuperset(digits):
        raise ValueError(f"not a MAC address: {mac!r}")
    return digits


def is_locally_administered(mac: str) -> bool:
    """Whether ``mac`` was set locally rather than assigned by a vendor: phones and laptops
    randomise their MAC per network this way, and such an address tells nothing of the vendor."""
    return bool(int(_hex_digits(mac)[:2], 16) & 0x02)


@dataclass(frozen=True)
class Registry:
    """Vendors by prefix, one table per prefix length (in hex digits: 6, 7 or 9)."""

    path: str
    tables: dict[int, dict[str, str]]

    def vendor(self, digits: str) -> str:
        for length, table in self.tables.items():  # longest prefix first
            found = table.get(digits[:length])
            if found is not None:
                return found
        return ""


def _manuf_entry(line: str) -> tuple[str, str] | None:
    """(prefix as hex digits, vendor) of one line of Wireshark's manuf, if it is an entry."""
    fields = line.split("\t")
    if len(fields) < 2 or line.startswith("#"):
        return None
    address, _, bits = fields[0].partition("/")
    digits = address.translate(_SEPARATORS).upper()
    length = int(bits) // 4 if bits else len(digits)
    vendor = fields[2] if len(fields) > 2 and not fields[2].startswith("#") else fields[1]
    if not 6 <= length <= len(digits) or not _HEX.issuperset(digits):
        return None
    return digits[:length], vendor.strip()


def _ieee_csv_entries(path: Path) -> list[tuple[str, str]]:
    """(prefix, vendor) of an IEEE registry CSV: Registry,Assignment,Organization Name,..."""
    with path.open(newline="", encoding="utf-8", errors="replace") as file:
        rows = csv.reader(file)
        next(rows, None)
        return [(row[1].upper(), row[2].strip()) for row in rows if len(row) > 2 and row[1]]


def read(path: Path) -> Registry:
    """The registry in ``path``: a Wireshark manuf file, an IEEE oui.csv (with the MA-M, MA-S
    and IAB CSVs beside it) or an IEEE oui.txt."""
    entries: list[tuple[str, str]] = []
    if path.suffix == ".csv":
        for name in (path.name, *IEEE_LONGER):
            if (path.parent / name).is_file():
                entries += _ieee_csv_entries(path.parent / name)
    else:
        with path.open(encoding="utf-8", errors="replace") as file:
            for line in file:
                if path.suffix == ".txt":
                    match = _OUI_TXT.match(line)
                    entry = ("".join(match.group(1, 2, 3)), match[4]) if match else None
                else:
                    entry = _manuf_entry(line.rstrip("\n"))
                if entry is not None:
                    entries.append(entry)
    tables: dict[int, dict[str, str]] = {}
    for prefix, vendor in entries:
        tables.setdefault(len(prefix), {}).setdefault(prefix, vendor)
    return Registry(str(path), dict(sorted(tables.items(), reverse=True)))


@functools.cache
def _registry() -> Registry:
    for path in SOURCES:
        if path.is_file():
            return read(path)
    return Registry("", {})


def registry() -> Registry:
    """The installed OUI database, read once: from the first of SOURCES present, else empty."""
    return _registry()


def database() -> str:
    """The file vendors are read from, or "" when no OUI database is installed (Debian:
    libwireshark-data, which tshark and wireshark bring, or ieee-data)."""
    return registry().path


def vendor(mac: str) -> str:
    """The organisation ``mac``'s prefix is assigned to, the longest matching prefix (MA-S /36,
    MA-M /28, MA-L /24) first; "" when unknown, and for locally administered (randomised)
    addresses, which have no vendor even when their first bytes look like an assigned prefix.
    Raises ValueError when ``mac`` is not a MAC address."""
    if is_locally_administered(mac):
        return ""
    return registry().vendor(_hex_digits(mac))
