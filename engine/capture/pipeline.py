"""The capture pipeline: frames in, decoded packets accounted to flows, tagged, remembered in the
ring, and counted. Live capture and file replay feed the same pipeline.

It is not thread-safe by itself: its owner holds ``lock`` while feeding a batch, and readers
(the control API) hold it while they look.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from engine.capture import protocols
from engine.capture.decode import Decoder, Packet
from engine.capture.flows import Flow, FlowTable

if TYPE_CHECKING:
    from engine.capture.facts import FactFinder
    from engine.capture.ring import PacketRing
    from engine.thisbox import Network

RATE_HISTORY = 60


class Pipeline:
    def __init__(
        self,
        *,
        max_flows: int = 100_000,
        idle_timeout: float = 300.0,
        active_timeout: float = 3600.0,
        ring_bytes: int = 32 << 20,
        facts: bool = True,
        count_protocols: bool = True,
        detector: Any = None,
        max_alerts: int = 10_000,
    ) -> None:
        self.lock = threading.Lock()
        self.decoder = Decoder()
        self.flows = FlowTable(
            max_flows=max_flows, idle_timeout=idle_timeout, active_timeout=active_timeout
        )
        # Imported only when kept: an offline analysis keeps neither, and starts sooner.
        self.ring: PacketRing | None = None
        self._facts: FactFinder | None = None
        if ring_bytes:
            from engine.capture.ring import PacketRing

            self.ring = PacketRing(ring_bytes)
        if facts:
            from engine.capture.facts import FactFinder

            self._facts = FactFinder()
        self.frames = 0
        self.bytes = 0
        self.first_ts = 0.0
        self.last_ts = 0.0
        # Packets per protocol tag as they come (a flow's earlier packets move to the tag its
        # payload shows), for the live view. An offline analysis counts the same from its flows
        # as they end, and does without (count_protocols=False).
        self.protocols: dict[str, int] = {}
        self.count_protocols = count_protocols
        # Filled here, emptied by the owner: flows that ended, facts found.
        self.ended: list[Flow] = []
        self.facts: list[dict[str, Any]] = []
        # Rules (engine.detect's Detector: inspect(packet, flow) -> matches, forget(flow)),
        # and the matches they found, emptied by the owner; past ``max_alerts`` waiting, the
        # newest are counted and dropped.
        self.detector = detector
        self.alerts: list[Any] = []
        self.max_alerts = max_alerts
        self.alerts_dropped = 0
        self.pps: deque[float] = deque(maxlen=RATE_HISTORY)
        self.bps: deque[float] = deque(maxlen=RATE_HISTORY)
        self._tick = (0.0, 0, 0)  # time, frames, bytes at the last rate tick

    def feed(self, ts: float, linktype: int, data: bytes, wire_length: int,
             iface: str = "") -> Packet | None:  # fmt: skip
        """Account one frame; returns its decoded packet (None if it could not be decoded)."""
        self.frames += 1
        self.bytes += wire_length
        if not self.first_ts:
            self.first_ts = ts
        if ts > self.last_ts:
            self.last_ts = ts
        return self.account(ts, linktype, data, wire_length, iface)

    def account(self, ts: float, linktype: int, data: bytes, wire_length: int,
                iface: str = "") -> Packet | None:  # fmt: skip
        """What :meth:`feed` does but count the frame and its time: for a reader that counts
        the frames itself (:mod:`engine.capture.fastpath`)."""
        packet = self.decoder.decode(data, linktype, ts, wire_length)
        if packet is None:
            if self.ring is not None:
                self.ring.add(ts, linktype, data, wire_length, iface, ())
            return None
        flow, ended = self.flows.add(packet)
        if ended:
            self._end(ended)
        if not flow.app:
            flow.app = protocols.port_tag(packet.proto, flow.sport, flow.dport)
            flow.iface = iface
        if packet.payload and flow.inspected < protocols.INSPECT_PACKETS:
            found = self.inspect(flow, packet.proto, packet.sport, packet.dport, packet.payload)
            if found and self._facts is not None:
                fact = self._facts.announced(flow.app, found, packet, iface)
                if fact is not None:
                    self.facts.append(fact)
        app = packet.app = flow.app
        if self.count_protocols:
            counts = self.protocols
            counts[app] = counts.get(app, 0) + 1
        if self._facts is not None:
            self._facts.hosts(packet, iface, self.facts)
        if self.ring is not None:
            self.ring.add(ts, linktype, data, wire_length, iface, flow.key)
        if self.detector is not None:
            self.detect(packet, flow)
        return packet

    def detect(self, packet: Packet, flow: Flow) -> None:
        """Run the rules on ``packet`` (accounted to ``flow``, its ``app`` set) and keep what
        they raise, up to ``max_alerts`` waiting."""
        matches = self.detector.inspect(packet, flow)
        if matches:
            room = self.max_alerts - len(self.alerts)
            if room >= len(matches):
                self.alerts.extend(matches)
            else:
                self.alerts.extend(matches[: max(room, 0)])
                self.alerts_dropped += len(matches) - max(room, 0)

    def end_flows(self, flows: list[Flow]) -> None:
        """``flows`` ended (found ended by a reader that finds flows itself)."""
        self._end(flows)

    def _end(self, flows: list[Flow]) -> None:
        self.ended.extend(flows)
        if self.detector is not None:
            for flow in flows:
                self.detector.forget(flow)

    def inspect(self, flow: Flow, proto: int, sport: int, dport: int,
                payload: bytes) -> dict[str, Any]:  # fmt: skip
        """Tag ``flow`` by one of its payloads; what the payload showed (merged into the flow's
        details), or nothing when it showed nothing or another protocol than the flow's tag."""
        flow.inspected += 1
        tag, found = protocols.inspect(proto, sport, dport, payload)
        if not tag or (flow.tagged and tag != flow.app):
            return {}
        if tag != flow.app:
            # The packets counted so far under the port's guess move to the payload's tag.
            earlier = flow.packets - 1
            if earlier and self.count_protocols:
                left = self.protocols.get(flow.app, 0) - earlier
                if left > 0:
                    self.protocols[flow.app] = left
                else:
                    self.protocols.pop(flow.app, None)
                self.protocols[tag] = self.protocols.get(tag, 0) + earlier
            flow.app = tag
        flow.tagged = True
        if found:
            protocols.merge(flow.details, found)
        return found

    @property
    def needs_packets(self) -> bool:
        """Whether feeding it needs every frame's Packet: it keeps them in its ring, finds facts
        in them or counts them by protocol as they come (the fast path accounts frames itself
        only for a pipeline that does none of these, see :mod:`engine.capture.fastpath`; rules
        it hands the packets they can act on)."""
        return self.ring is not None or self._facts is not None or self.count_protocols

    def expire(self, now: float) -> None:
        """End the flows idle too long (by capture time, so replays age flows as live ones do)."""
        ended = self.flows.expire(now)
        if ended:
            self._end(ended)

    def finish(self) -> None:
        """End every flow: the capture or the file is over."""
        self._end(self.flows.drain())

    def tick(self, now: float) -> None:
        """Take the rate sample since the last tick (packets/s, bytes/s, and each flow's rate)."""
        then, frames, size = self._tick
        self._tick = (now, self.frames, self.bytes)
        if not then or now <= then:
            return
        elapsed = now - then
        self.pps.append((self.frames - frames) / elapsed)
        self.bps.append((self.bytes - size) / elapsed)
        for flow in self.flows.active():
            total = flow.bytes_out + flow.bytes_in
            flow.rate = (total - flow.mark) / elapsed
            flow.mark = total

    def set_links(self, links: Mapping[str, Sequence[Network]]) -> None:
        """The capture interfaces' own networks: where an address is local (see facts)."""
        if self._facts is not None:
            self._facts.set_links(links)

    def take_seen(self) -> set[tuple[str, str]]:
        """The (MAC, IP) pairs seen since the last call."""
        return self._facts.take_seen() if self._facts is not None else set()

    @property
    def malformed(self) -> int:
        return self.decoder.malformed
