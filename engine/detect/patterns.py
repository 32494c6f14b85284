"""The prefilter of a rule set: Aho-Corasick automata over the rules' fast patterns, so a
buffer is scanned once for all of them, and the rules worth evaluating are those whose pattern
occurs where they allow it."""

from __future__ import annotations

from typing import Any

import ahocorasick

# Anchored patterns are banded by how far into the buffer they may end: each band's automaton
# scans only that far.
BANDS = (8, 64, 512)


class Patterns:
    """The fast patterns of one buffer of a route: one automaton for those that select their
    rules wherever they occur, and for those whose rules want them to end in a window near the
    start (offset/depth/startswith) one per band of how far that is, scanning only that far: a
    pattern such as Modbus's protocol id ``|00 00|`` at offset 2 occurs all over a payload of
    registers."""

    __slots__ = ("anchored", "free")

    def __init__(self, table: dict[bytes, set[Any]]) -> None:
        self.free: ahocorasick.Automaton | None = None
        banded: dict[int, list[tuple[str, tuple[tuple[int, int, int], ...]]]] = {}
        for pattern, entries in table.items():
            word = pattern.decode("latin-1")
            free = tuple(sorted(e for e in entries if isinstance(e, int)))
            if free:
                if self.free is None:
                    self.free = ahocorasick.Automaton()
                self.free.add_word(word, free)
            anchored = tuple(sorted(e for e in entries if not isinstance(e, int)))
            if anchored:
                most = max(m for _, _, m in anchored)
                band = next((b for b in BANDS if most <= b), 0)  # 0: beyond the last band
                banded.setdefault(band, []).append((word, anchored))
        if self.free is not None:
            self.free.make_automaton()
        # (how far it scans, automaton) for each band that has patterns.
        self.anchored: list[tuple[int, ahocorasick.Automaton]] = []
        for _band, words in sorted(banded.items()):
            automaton = ahocorasick.Automaton()
            for word, anchored in words:
                automaton.add_word(word, anchored)
            automaton.make_automaton()
            limit = max(m for _, entries in words for _, _, m in entries)
            self.anchored.append((limit, automaton))

    def scan(self, data: bytes, start: int, found: set[int]) -> None:
        """Add to ``found`` the rules whose fast pattern occurs in ``data[start:]`` (where their
        window allows it)."""
        if self.free is not None:
            text = (data[start:] if start else data).lower().decode("latin-1")
            for _end, rules in self.free.iter(text):
                found.update(rules)
        for limit, automaton in self.anchored:
            if start >= limit:
                continue
            # ``end`` is the offset of the match's last byte from ``start``.
            text = data[start:limit].lower().decode("latin-1")
            for end, entries in automaton.iter(text):
                where = start + end + 1
                for index, least, most in entries:
                    if least <= where <= most:
                        found.add(index)
