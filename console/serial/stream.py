"""One serial session as the console holds it, without Textual: what the engine said of it, the
bytes received (a :class:`SerialBuffer`) and the boot-log report, kept in step with the events
of the ``serial`` topic.

Events can be missed (a slow console drops them): a batch that does not start where the last
one ended is a gap. The batches after it wait in ``pending`` while the caller fetches the
missing bytes from the engine's scrollback (``serial.read`` from :meth:`Session.gap_start`) and
hands the answer to :meth:`Session.fill`, again while a gap remains.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from console.serial.buffer import SerialBuffer
from console.serial.render import stamp
from console.untrusted import clean

# The line ending typed Enter sends, by the session's ``map_out``.
ENTER = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}


@dataclass
class Session:
    info: dict[str, Any]
    buffer: SerialBuffer
    report: dict[str, Any] = field(default_factory=dict)
    pending: list[tuple[int, float, bytes]] = field(default_factory=list)
    fetching: bool = False

    @classmethod
    def attached(cls, got: dict[str, Any]) -> Session:
        """The session as ``serial.get`` describes it, its scrollback tail already fed."""
        buffer = SerialBuffer(map_in=got["settings"]["map_in"])
        buffer.reset(got["offset"])
        feed_stamped(buffer, got["offset"], base64.b64decode(got["data"]), got["stamps"])
        return cls(got, buffer, got.get("report") or {})

    @property
    def id(self) -> int:
        return int(self.info["id"])

    @property
    def device(self) -> str | None:
        """The inventory device (by id) the session is attached to, if any."""
        device = self.info.get("device")
        return device if isinstance(device, str) else None

    @property
    def enter(self) -> bytes:
        return ENTER[self.info["settings"]["map_out"]]

    # -- events -------------------------------------------------------------------------------

    def received(self, offset: int, ts: float, data: bytes) -> bool:
        """Bytes the device sent. True when they open a gap: fetch it from :attr:`gap_start`
        (the bytes wait meanwhile, as do those that follow until :meth:`fill`)."""
        if self.fetching:
            self.pending.append((offset, ts, data))
            return False
        if self.buffer.feed(offset, ts, data):
            self.fetching = True
            self.pending.append((offset, ts, data))
            return True
        return False

    def sent(self, ts: float, typed: bytes) -> None:
        """Bytes sent to the device (by anyone): counted, and shown with local echo on."""
        self.info["tx"] = self.info.get("tx", 0) + len(typed)
        if self.info["settings"].get("echo"):
            self.buffer.local(ts, typed)

    def changed(self, info: dict[str, Any], now: Callable[[], float] = time.time) -> None:
        """New state or settings; unplugged and back again are marked among the lines."""
        before = self.info["state"]
        self.info = {**self.info, **info}
        self.buffer.set_map_in(self.info["settings"]["map_in"])
        if (line := marker(before, self.info, now())) is not None:
            self.buffer.mark(now(), line)

    # -- filling a gap ------------------------------------------------------------------------

    @property
    def gap_start(self) -> int:
        return self.buffer.end

    def fill(self, got: dict[str, Any]) -> bool:
        """The answer to ``serial.read`` from :attr:`gap_start`, then the batches that waited.
        True when a gap remains (fetch again); the batches after it keep waiting."""
        if got["offset"] > self.buffer.end:  # older than the engine keeps
            self.buffer.skip_to(got["offset"])
        feed_stamped(self.buffer, got["offset"], base64.b64decode(got["data"]), got["stamps"])
        pending, self.pending = self.pending, []
        self.fetching = False
        for n, (offset, ts, data) in enumerate(pending):
            if self.buffer.feed(offset, ts, data):
                self.fetching = True
                self.pending = pending[n:] + self.pending
                return True
        return False

    def fill_failed(self) -> None:
        """The engine could not say what was missed: go on with what comes next."""
        self.fetching = False
        self.pending.clear()


def feed_stamped(buffer: SerialBuffer, offset: int, data: bytes, stamps: list[Any]) -> None:
    """Feed fetched bytes batch by batch, so each keeps the time it arrived."""
    edges = [(int(o), float(t)) for o, t in stamps] or [(offset, time.time())]
    for n, (start, ts) in enumerate(edges):
        end = edges[n + 1][0] if n + 1 < len(edges) else offset + len(data)
        buffer.feed(start, ts, data[start - offset : end - offset])


def marker(before: str, info: dict[str, Any], now: float) -> str | None:
    """The line the view gets when a session's state changes: unplugged, or back."""
    after = info["state"]
    if before == "connected" and after == "reconnecting":
        at = stamp("absolute", now, 0, None).strip()
        reason = f" {clean(info['reason'], limit=120)}" if info.get("reason") else ""
        return f"[disconnected {at}]{reason}"
    if before == "reconnecting" and after == "connected":
        since = info.get("connected_since") or now
        return f"[reconnected {stamp('absolute', since, 0, None).strip()}]"
    return None
