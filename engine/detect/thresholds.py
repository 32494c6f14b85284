"""Suricata's threshold and detection_filter: how many of a rule's matches become alerts.

- ``limit``: at most ``count`` alerts per ``seconds`` per tracked key;
- ``threshold``: one alert for every ``count``-th match within ``seconds``;
- ``both``: one alert per ``seconds``, once there were ``count`` matches within them;
- ``detection_filter`` (``filter``): every match once more than ``count`` happened within
  ``seconds``.

Time is the packets' capture time, so a replayed file behaves as it did live. The state is an
LRU table of bounded size: a flood of distinct sources cannot grow it without limit.
"""

from __future__ import annotations

from collections import OrderedDict

from engine.detect.rules import Threshold

MAX_TRACKED = 100_000


class Tracker:
    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self.max_tracked = max_tracked
        # (sid, which, key) -> [window start, matches in window, alerts in window]
        self._state: OrderedDict[tuple[object, ...], list[float]] = OrderedDict()

    def allows(self, sid: int, rule: Threshold, src: str, dst: str, ts: float) -> bool:
        """Count one match of rule ``sid``; whether it raises an alert."""
        key = (sid, rule.kind, _track(rule.track, src, dst))
        state = self._state.get(key)
        if state is None or ts - state[0] >= rule.seconds:
            state = [ts, 0.0, 0.0]
            self._state[key] = state
            if len(self._state) > self.max_tracked:
                self._state.popitem(last=False)
        else:
            self._state.move_to_end(key)
        state[1] += 1
        matches = state[1]
        if rule.kind == "limit":
            allowed = state[2] < rule.count
        elif rule.kind == "threshold":
            allowed = matches % rule.count == 0
        elif rule.kind == "both":
            allowed = matches >= rule.count and state[2] == 0
        else:  # detection_filter
            allowed = matches > rule.count
        if allowed:
            state[2] += 1
        return allowed


def _track(track: str, src: str, dst: str) -> tuple[str, ...]:
    if track == "by_src":
        return (src,)
    if track == "by_dst":
        return (dst,)
    if track == "by_both":
        return (src, dst)
    return ()
