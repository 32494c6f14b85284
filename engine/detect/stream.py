"""TCP stream reassembly for content rules: the first ``depth`` bytes of each direction of a
flow, in sequence order, so a pattern split over segments still matches. Retransmitted bytes
are not appended twice; segments that arrive early wait (a bounded number of them).
"""

from __future__ import annotations

MAX_PENDING = 16
SEQ_SPACE = 1 << 32


class Stream:
    """One direction of a TCP flow."""

    __slots__ = ("base", "data", "depth", "pending")

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.base: int | None = None  # the sequence number of data[0]
        self.data = bytearray()
        self.pending: dict[int, bytes] = {}  # early segments by their offset in the stream

    def add(self, seq: int, payload: bytes, syn: bool = False) -> int | None:
        """Add a segment; returns where the new bytes start in :attr:`data`, or None when the
        segment added nothing (a retransmission, beyond ``depth``, or still out of order)."""
        if self.base is None:
            self.base = (seq + 1) % SEQ_SPACE if syn else seq
        if syn or not payload:
            return None
        offset = (seq - self.base) % SEQ_SPACE
        if offset >= SEQ_SPACE // 2:  # before the start: data from before we began to look
            return None
        before = len(self.data)
        if offset > before:
            if offset < self.depth and len(self.pending) < MAX_PENDING:
                self.pending[offset] = payload
            return None
        self._append(payload[before - offset :])
        while self.pending and len(self.data) < self.depth:
            waiting = [o for o in self.pending if o <= len(self.data)]
            if not waiting:
                break
            for o in sorted(waiting):
                chunk = self.pending.pop(o)
                self._append(chunk[len(self.data) - o :])
        return before if len(self.data) > before else None

    def _append(self, chunk: bytes) -> None:
        room = self.depth - len(self.data)
        if room > 0 and chunk:
            self.data += chunk[:room]

    @property
    def full(self) -> bool:
        return len(self.data) >= self.depth
