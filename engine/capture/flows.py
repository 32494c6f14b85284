"""The flow table: bidirectional 5-tuple flows, as Zeek's conn.log keeps them.

A flow remembers who spoke first (the initiator), packets and bytes each way, first and last
time, and for TCP a coarse connection state. Flows end when idle for ``idle_timeout``, when
open longer than ``active_timeout`` (a long flow is then reported in slices), or when the table
is full and the least recently seen one is evicted (and counted).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.capture.decode import TCP, Packet

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10

FlowKey = tuple  # (proto, lower address, its port, higher address, its port)


@dataclass(slots=True)
class Flow:
    proto: int
    src: str
    sport: int
    dst: str
    dport: int
    start: float
    last: float
    packets_out: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    bytes_in: int = 0
    state: str = ""
    # What the protocol tagger learnt: the tag, its details, and how many payloads it read.
    app: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    inspected: int = 0
    tagged: bool = False  # the tag came from a payload, not just a port
    iface: str = ""
    # Bytes at the last rate tick, and bytes per second since the tick before.
    mark: int = 0
    rate: float = 0.0
    key: FlowKey = ()

    @property
    def packets(self) -> int:
        return self.packets_out + self.packets_in

    @property
    def bytes(self) -> int:
        return self.bytes_out + self.bytes_in


def flow_id(flow: Flow) -> str:
    """The flow's name in the control API (its key and start: a 5-tuple is used again)."""
    proto, a, ap, b, bp = flow.key
    return f"{proto}|{a}|{ap}|{b}|{bp}|{flow.start!r}"


class FlowTable:
    def __init__(
        self,
        *,
        max_flows: int = 100_000,
        idle_timeout: float = 300.0,
        active_timeout: float = 3600.0,
    ) -> None:
        self.max_flows = max_flows
        self.idle_timeout = idle_timeout
        self.active_timeout = active_timeout
        self._flows: OrderedDict[FlowKey, Flow] = OrderedDict()
        # For a loop that finds flows by keys of its own (engine.capture.fastpath): its dicts
        # of them, emptied whenever a flow ends (one started in its place is another flow), and
        # what makes the flow of a key the most recently seen (the dict's own method: the loop
        # calls it for every packet).
        self._caches: list[dict[Any, Any]] = []
        self.touch: Callable[[FlowKey], None] = self._flows.move_to_end
        self.evicted = 0
        self.started = 0

    def __len__(self) -> int:
        return len(self._flows)

    def add(self, packet: Packet) -> tuple[Flow, list[Flow]]:
        """Account ``packet`` to its flow; returns the flow and any flows this packet ended."""
        src, sport, ts = packet.src, packet.sport, packet.ts
        flow, ended = self.find(packet.proto, src, sport, packet.dst, packet.dport, ts)
        initiator = src == flow.src
        if initiator and sport == flow.sport:
            flow.packets_out += 1
            flow.bytes_out += packet.length
        else:
            flow.packets_in += 1
            flow.bytes_in += packet.length
        if ts > flow.last:
            flow.last = ts
        if packet.proto == TCP:
            flow.state = TCP_NEXT_STATE[flow.state, packet.flags & STATE_FLAGS, initiator]
        return flow, ended

    def find(self, proto: int, src: str, sport: int, dst: str, dport: int,
             ts: float) -> tuple[Flow, list[Flow]]:  # fmt: skip
        """The flow of a packet with these fields at ``ts`` (started if there is none, or if
        its flow timed out), now the most recently seen; and the flows this ended."""
        # The same key for both directions of a conversation: the lower (address, port) first,
        # compared without building the two pairs (this runs for every packet).
        if src < dst or (src == dst and sport <= dport):
            key = (proto, src, sport, dst, dport)
        else:
            key = (proto, dst, dport, src, sport)
        ended: list[Flow] = []
        flows = self._flows
        flow = flows.get(key)
        if flow is not None and (
            ts - flow.last > self.idle_timeout or ts - flow.start > self.active_timeout
        ):
            ended.append(flows.pop(key))
            flow = None
        if flow is None:
            flow = Flow(proto, src, sport, dst, dport, ts, ts, key=key)
            flows[key] = flow
            self.started += 1
            if len(flows) > self.max_flows:
                _, oldest = flows.popitem(last=False)
                self.evicted += 1
                ended.append(oldest)
        else:
            self.touch(key)
        if ended:
            self._empty_caches()
        return flow, ended

    def cache(self) -> dict[Any, Any]:
        """A new dict for flows by keys of the caller's own, that the table empties whenever a
        flow ends."""
        cache: dict[Any, Any] = {}
        self._caches.append(cache)
        return cache

    def _empty_caches(self) -> None:
        for cache in self._caches:
            cache.clear()

    def expire(self, now: float) -> list[Flow]:
        """End and return the flows idle since before ``now - idle_timeout``."""
        ended = []
        horizon = now - self.idle_timeout
        while self._flows:
            key, flow = next(iter(self._flows.items()))
            if flow.last >= horizon:
                break
            del self._flows[key]
            ended.append(flow)
        if ended:
            self._empty_caches()
        return ended

    def active(self) -> list[Flow]:
        """The open flows, least recently seen first."""
        return list(self._flows.values())

    def get(self, key: FlowKey) -> Flow | None:
        return self._flows.get(key)

    def drain(self) -> list[Flow]:
        """End every flow (at the end of a file, or when capture stops)."""
        flows = list(self._flows.values())
        self._flows.clear()
        self._empty_caches()
        return flows


def _tcp_state(state: str, flags: int, from_initiator: bool) -> str:
    """A coarse connection state: S0 (SYN seen), SF (established), FIN, RST, or OTH."""
    if flags & RST:
        return "RST"
    if flags & FIN:
        return "FIN" if state in ("SF", "FIN") else state or "OTH"
    if flags & SYN and not flags & ACK:
        return state or "S0"
    if flags & SYN and flags & ACK:
        return "S1" if state == "S0" else state or "OTH"
    if state in ("S0", "S1") and from_initiator:
        return "SF"
    return state or "OTH"


# Every (state, flags, from the initiator) and the state it leads to, worked out once: a dict
# hit is much cheaper than the call, and the table is small (7 states, 16 flag sets, 2 ways).
STATE_FLAGS = SYN | FIN | RST | ACK
TCP_NEXT_STATE = {
    (state, flags, initiator): _tcp_state(state, flags, initiator)
    for state in ("", "S0", "S1", "SF", "FIN", "RST", "OTH")
    for flags in range(STATE_FLAGS + 1)
    if not flags & ~STATE_FLAGS
    for initiator in (False, True)
}
