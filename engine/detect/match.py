"""Whether a rule's inspections (content, pcre, isdataat, bsize) hold on a packet's buffers,
with Suricata's semantics: absolute windows from offset/depth, relative ones from the end of the
previous match in the same buffer (distance/within), negated contents that do not move that
position, and backtracking — when a later relative content fails, the earlier content is tried
at its next occurrence.

The search is bounded (``MAX_TRIES`` occurrences per content), so a hostile payload full of
partial matches costs a bounded amount of work; a rule's pcre searches on one packet share a
time budget (Suricata bounds each by its pcre match-limit), past which the rule gives up with
:class:`PcreTimeout`, as Suricata's does not match when the limit is hit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import regex

from engine.config import DetectConfig
from engine.detect.rules import Content, Inspection, IsDataAt, Pcre, Rule

MAX_TRIES = 64
CONTEXT = 16  # bytes either side of a match kept as evidence

Buffers = Callable[[str], bytes | None]


@dataclass(frozen=True)
class Hit:
    """Where a rule's first positive content matched: evidence for the alert."""

    buffer: str
    start: int
    end: int
    before: bytes
    matched: bytes
    after: bytes


class PcreTimeout(Exception):
    """A rule's pcre searches ran out of their time budget: the rule does not match here."""


def inspect_rule(
    rule: Rule, buffers: Buffers, new_from: int = 0, pcre_timeout: float = DetectConfig.pcre_timeout
) -> Hit | bool | None:
    """Whether every buffer's chain of inspections holds. Returns the evidence of the first
    positive content (a :class:`Hit`), True when the rule holds without one, or None; raises
    PcreTimeout when its pcre searches take more than ``pcre_timeout`` seconds together.

    ``new_from``: for the payload of a reassembled stream, a match must end after this offset
    (what ended before it was seen, and reported, at an earlier packet).
    """
    # Counted from here rather than from the first pcre: one clock read per rule, and the
    # contents before a pcre are bounded and quick anyway.
    deadline = time.monotonic() + pcre_timeout
    chains: dict[str, list[Inspection]] = {}
    for item in rule.inspections:
        chains.setdefault(item.buffer, []).append(item)
    evidence: Hit | None = None
    for name, chain in chains.items():
        data = buffers(name)
        if data is None:
            if all(_is_negated(i) for i in chain):
                continue  # "must not contain" holds on a buffer that is not there
            return None
        floor = new_from if name == "payload" else 0
        hits: list[Hit] = []
        if not _chain(chain, 0, data, data.lower() if _needs_lower(chain) else data, 0,
                      floor, hits, name, deadline):  # fmt: skip
            return None
        if evidence is None and hits:
            evidence = hits[0]
    for name, size in rule.bsize:
        data = buffers(name)
        if data is None or not size.test(len(data)):
            return None
    return evidence if evidence is not None else True


def _is_negated(item: Inspection) -> bool:
    return getattr(item, "negated", False)


def _needs_lower(chain: list[Inspection]) -> bool:
    return any(isinstance(i, Content) and i.nocase for i in chain)


def _chain(chain: list[Inspection], index: int, data: bytes, lowered: bytes, position: int,
           floor: int, hits: list[Hit], name: str, deadline: float) -> bool:  # fmt: skip
    """Whether ``chain[index:]`` holds with the previous match ending at ``position``; the
    last positive content must end after ``floor``."""
    if index == len(chain):
        return position > floor or floor == 0
    item = chain[index]
    if isinstance(item, Content):
        return _content(chain, index, item, data, lowered, position, floor, hits, name, deadline)
    if isinstance(item, Pcre):
        # A relative pcre sees the buffer from the previous match on, so that its ^ anchors
        # there, as in Suricata.
        start = position if item.relative else 0
        view = data[start:] if start else data
        found = _search(item.regex, view, 0, deadline)
        if item.negated:
            return found is None and _chain(chain, index + 1, data, lowered, position, floor,
                                            hits, name, deadline)  # fmt: skip
        tries = 0
        while found is not None and tries < MAX_TRIES:
            if _chain(chain, index + 1, data, lowered, start + found.end(), floor, hits, name,
                      deadline):  # fmt: skip
                return True
            found = _search(item.regex, view, found.start() + 1, deadline)
            tries += 1
        return False
    assert isinstance(item, IsDataAt)
    at = (position if item.relative else 0) + item.offset
    present = len(data) > at
    if present == item.negated:
        return False
    return _chain(chain, index + 1, data, lowered, position, floor, hits, name, deadline)


def _search(pattern: regex.Pattern[bytes], data: bytes, pos: int,
            deadline: float) -> regex.Match[bytes] | None:  # fmt: skip
    """``pattern.search(data, pos)``, stopped at ``deadline`` (PcreTimeout): a backtracking
    pattern on a payload made for it (``(a|aa)+$`` on "aaa…!") takes exponential time. The
    regex module lets other threads run while it searches."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise PcreTimeout
    try:
        # Positional: keyword arguments cost the regex module a third of a short search. Its
        # timeout counts the process's CPU time (clock()), so with other threads busy it comes
        # sooner than the deadline, which is checked again before the next search.
        return pattern.search(data, pos, None, None, False, left)
    except TimeoutError:
        raise PcreTimeout from None


def _window(item: Content, position: int, size: int) -> tuple[int, int]:
    """The bytes [start, end) where ``item`` may match."""
    if item.relative:
        start = position + (item.distance or 0)
        end = start + item.within if item.within is not None else size
    else:
        start = item.offset or 0
        end = start + item.depth if item.depth is not None else size
    if item.startswith:
        end = min(end, start + len(item.pattern))
    return max(start, 0), min(end, size)


def _content(chain: list[Inspection], index: int, item: Content, data: bytes, lowered: bytes,
             position: int, floor: int, hits: list[Hit], name: str,
             deadline: float) -> bool:  # fmt: skip
    pattern = item.pattern.lower() if item.nocase else item.pattern
    haystack = lowered if item.nocase else data
    start, end = _window(item, position, len(data))
    if item.negated:
        found = _find(haystack, pattern, start, end, item.endswith)
        return found < 0 and _chain(chain, index + 1, data, lowered, position, floor, hits, name,
                                    deadline)  # fmt: skip
    tries = 0
    found = _find(haystack, pattern, start, end, item.endswith)
    while found >= 0 and tries < MAX_TRIES:
        match_end = found + len(pattern)
        if _chain(chain, index + 1, data, lowered, match_end, floor, hits, name, deadline):
            before = data[max(0, found - CONTEXT) : found]
            after = data[match_end : match_end + CONTEXT]
            hits.insert(0, Hit(name, found, match_end, before, data[found:match_end], after))
            return True
        found = _find(haystack, pattern, found + 1, end, item.endswith)
        tries += 1
    return False


def _find(haystack: bytes, pattern: bytes, start: int, end: int, at_end: bool) -> int:
    if at_end:
        at = len(haystack) - len(pattern)
        return at if at >= start and at + len(pattern) <= end and haystack.endswith(pattern) else -1
    return haystack.find(pattern, start, end)
