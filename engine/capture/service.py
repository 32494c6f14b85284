"""The capture part of the engine: live capture or file replay into one pipeline, flow summaries
to the store, facts and traffic status on the event stream, and the queries the console's
Traffic pane makes (flows, top talkers, recent packets, one packet in detail, pcap export).

Capture threads feed the pipeline in short chunks under its lock; the engine's loop takes what
they produced every half second. Every hand-over is bounded and counts what it dropped.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import errors
from engine.capture import dissect
from engine.capture.analyze import flow_record
from engine.capture.decode import Decoder
from engine.capture.filter import Filter, FilterError, parse_filter
from engine.capture.flows import Flow, FlowTable, flow_id
from engine.capture.live import CaptureError, CaptureUnavailable, LiveCapture, can_capture
from engine.capture.pcapfile import CaptureFileError, read_frames
from engine.capture.pcapwrite import PcapngWriter, PcapWriter
from engine.capture.pipeline import Pipeline
from engine.capture.protocols import port_tag, transport_tag
from engine.capture.ring import RingPacket
from engine.capture.store import INSERT_FLOW, flow_row
from engine.config import CaptureConfig
from engine.text import printable, unsafe_character

if TYPE_CHECKING:
    from engine.events import EventBus
    from engine.store.writer import Writer

log = logging.getLogger("iotsec.capture")

TICK = 0.5
CHUNK = 256  # frames fed per hold of the pipeline lock...
HOLD = 0.02  # ...or fewer, when they took this long (seconds)
FactSink = Callable[[list[dict[str, Any]], set[tuple[str, str]]], None]
MAX_PENDING = 50_000  # ended flows or facts waiting for the loop before they are dropped
RECENT_ENDED = 2000  # ended flows still listed in the Traffic pane
EXPORT_CHUNK = 512 * 1024
MAX_EXPORTS = 4
SORTS = {"bytes": "bytes", "packets": "packets", "rate": "rate", "last": "last"}


class CaptureService:
    def __init__(self, config: CaptureConfig, writer: Writer, bus: EventBus, detector: Any = None,
                 on_alerts: Callable[[list[Any]], None] | None = None) -> None:  # fmt: skip
        self.config = config
        self.writer = writer
        self.bus = bus
        # Rules run on every packet in the capture threads (engine.detect's Detector); what
        # they match goes to ``on_alerts`` on the loop.
        self.on_alerts = on_alerts
        # The device inventory's: the facts found and the (MAC, IP) pairs seen since the last
        # tick, on the loop.
        self.on_facts: FactSink | None = None
        self.pipeline = self._new_pipeline(detector)
        self.live: LiveCapture | None = None
        self.state = "stopped"
        self.reason = ""
        self.interfaces: list[str] = []
        self.bpf = ""
        self.started: float | None = None
        self.queue_drops = 0
        self.store_drops = 0
        self.flows_ended = 0
        self._recent: OrderedDict[str, Flow] = OrderedDict()
        # Prepared exports by their unguessable id, with the uid of the operator who asked.
        self._exports: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._last_tick = 0.0
        self._replaying = False
        self._kernel_drops_done = 0  # counted by captures already stopped

    def _new_pipeline(self, detector: Any) -> Pipeline:
        c = self.config
        return Pipeline(max_flows=c.max_flows, idle_timeout=c.idle_timeout,
                        active_timeout=c.active_timeout, ring_bytes=c.ring_bytes,
                        detector=detector, max_alerts=MAX_PENDING)  # fmt: skip

    # -- starting and stopping ---------------------------------------------------------------

    async def start(self, interfaces: list[str], bpf: str = "") -> dict[str, Any]:
        # libpcap stops reading at a NUL: "\x00tcp" would compile as no filter at all.
        bad = unsafe_character(bpf)
        if bad is not None:
            raise errors.BadFilter(f"bpf: holds the control character {bad}; a filter is plain"
                                   " text")  # fmt: skip
        if self.live is not None:
            await self.stop()
        ok, why = can_capture()
        if not ok:
            self.state, self.reason = "unavailable", why
            raise errors.CaptureUnavailable(why)
        live = LiveCapture(list(interfaces), self._feed, bpf=bpf,
                           buffer_bytes=self.config.buffer_bytes)  # fmt: skip
        try:
            await asyncio.to_thread(live.start)
        except CaptureUnavailable as exc:
            self.state, self.reason = "unavailable", str(exc)
            raise errors.CaptureUnavailable(str(exc)) from None
        except CaptureError as exc:
            wrong = errors.BadFilter if "BPF" in str(exc) else errors.BadArgument
            raise wrong(str(exc)) from None
        self.live = live
        self.interfaces, self.bpf = list(interfaces), bpf
        self.state, self.reason, self.started = "running", "", time.time()
        log.info("capturing on %s%s", ", ".join(interfaces), f" ({bpf})" if bpf else "")
        return self.status()

    async def start_configured(self) -> None:
        """Start on the interfaces the config names; a failure is reported, not fatal."""
        if not self.config.interfaces:
            ok, why = can_capture()
            if not ok:
                self.state, self.reason = "unavailable", why
            return
        try:
            await self.start(list(self.config.interfaces), self.config.bpf)
        except errors.EngineError as exc:
            if self.state != "unavailable":
                self.state, self.reason = "error", str(exc)
            log.warning("capture not started: %s", exc)

    async def stop(self) -> dict[str, Any]:
        live, self.live = self.live, None
        if live is not None:
            await asyncio.to_thread(live.stop)
            self._kernel_drops_done += live.kernel_drops
            log.info("capture stopped")

        def finish() -> None:
            with self.pipeline.lock:
                self.pipeline.finish()  # flows in progress (live or replayed) end and are stored

        await asyncio.to_thread(finish)
        if self.state == "running":
            self.state = "stopped"
        await self.tick()
        return self.status()

    async def replay(self, path: str, realtime: bool = False) -> dict[str, Any]:
        """Feed a capture file through the live pipeline (as if it arrived on "file:NAME")."""
        if self._replaying:
            raise errors.Busy("a replay is already running")
        self._replaying = True
        try:
            fed = await asyncio.to_thread(self._replay, Path(path), realtime)
        except CaptureFileError as exc:
            raise errors.BadArgument(str(exc)) from None
        finally:
            self._replaying = False
        await self.tick()
        return {**self.status(), "replayed": fed}

    def _replay(self, path: Path, realtime: bool) -> int:
        iface = f"file:{path.name}"
        batch: list[tuple[float, bytes, int]] = []
        linktype = -1
        fed = 0
        clock: tuple[float, float] | None = None
        for frame in read_frames(path):
            if realtime:
                if clock is None:
                    clock = (frame.ts, time.monotonic())
                delay = (frame.ts - clock[0]) - (time.monotonic() - clock[1])
                if delay > 0:
                    if batch:
                        self._feed(iface, linktype, batch)
                        batch = []
                    time.sleep(delay)
            if frame.linktype != linktype or len(batch) >= CHUNK:
                if batch:
                    self._feed(iface, linktype, batch)
                batch, linktype = [], frame.linktype
            batch.append((frame.ts, frame.data, frame.wire_length))
            fed += 1
        if batch:
            self._feed(iface, linktype, batch)
        return fed

    def _feed(self, iface: str, linktype: int, frames: list[tuple[float, bytes, int]]) -> None:
        """Called from capture threads: feed in chunks so no lock hold is long, in frames or
        in time (a crafted packet may keep a rule's pcre busy for its whole budget)."""
        pipeline = self.pipeline
        feed = pipeline.feed
        done, total = 0, len(frames)
        while done < total:
            with pipeline.lock:
                until = time.monotonic() + HOLD
                end = min(done + CHUNK, total)
                while done < end:
                    ts, data, length = frames[done]
                    feed(ts, linktype, data, length, iface)
                    done += 1
                    if not done & 15 and time.monotonic() > until:
                        break

    # -- the loop's half-second work ----------------------------------------------------------

    def _take(self, now: float) -> tuple[list[Flow], list[Any], Any, list[Any]]:
        """Under the pipeline's lock (in a thread: a feeder may hold it for a while): expire
        and tick the flows, and take what the pipeline produced since the last time."""
        pipeline = self.pipeline
        with pipeline.lock:
            if self.live is not None:
                pipeline.expire(now)
            if now - self._last_tick >= 1.0:
                pipeline.tick(now)
                self._last_tick = now
            ended, pipeline.ended = pipeline.ended, []
            facts, pipeline.facts = pipeline.facts, []
            seen = pipeline.take_seen()
            alerts, pipeline.alerts = pipeline.alerts, []
        return ended, facts, seen, alerts

    async def tick(self) -> None:
        """Expire idle flows, take rates, store ended flows, publish facts and the status."""
        ended, facts, seen, alerts = await asyncio.to_thread(self._take, time.time())
        if alerts and self.on_alerts is not None:
            self.on_alerts(alerts)
        if self.live is not None:
            self.live.poll_statistics()
        for pending in (ended, facts):
            if len(pending) > MAX_PENDING:
                self.queue_drops += len(pending) - MAX_PENDING
                del pending[MAX_PENDING:]
        if ended:
            self._ended(ended)
        if (facts or seen) and self.on_facts is not None:
            self.on_facts(facts, seen)
        if facts and self.bus.wants("facts"):
            self.bus.publish("facts", facts)
        if self.bus.wants("traffic") and (self.live is not None or ended or facts):
            self.bus.publish("traffic", self.status())

    def _ended(self, flows: list[Flow]) -> None:
        self.flows_ended += len(flows)
        for flow in flows:
            self._recent[flow_id(flow)] = flow
        while len(self._recent) > RECENT_ENDED:
            self._recent.popitem(last=False)
        if not self.config.store_flows:
            return
        rows = [flow_row(flow) for flow in flows]
        try:
            self.writer.call(lambda conn: conn.executemany(INSERT_FLOW, rows))
        except Exception as exc:  # queue full or writer closed: counted, capture goes on
            self.store_drops += len(rows)
            log.warning("%d flow summaries not stored: %s", len(rows), exc or "writer queue full")

    def status(self) -> dict[str, Any]:
        p = self.pipeline
        live = self.live
        kernel = self._kernel_drops_done + (live.kernel_drops if live else 0)
        interfaces = self.interfaces
        if live is not None:
            failed = [s.error for s in live.stats.values() if s.state == "error"]
            if failed:
                self.reason = "; ".join(failed)
        ring = p.ring
        return {
            "state": self.state,
            "reason": self.reason,
            "interfaces": interfaces,
            "bpf": self.bpf,
            "started": self.started,
            "packets": p.frames,
            "bytes": p.bytes,
            "kernel_drops": kernel,
            "queue_drops": self.queue_drops,
            "store_drops": self.store_drops,
            "malformed": p.decoder.malformed,
            "alerts_dropped": p.alerts_dropped,
            "fragments": p.decoder.fragments,
            "flows": {
                "active": len(p.flows),
                "ended": self.flows_ended,
                "evicted": p.flows.evicted,
            },
            "rates": {
                "interval": 1.0,
                "pps": [round(v, 1) for v in p.pps],
                "bps": [round(v, 1) for v in p.bps],
            },
            "ring": {
                "packets": len(ring) if ring else 0,
                "bytes": ring.size if ring else 0,
                "capacity": ring.capacity if ring else 0,
            },
            "protocols": dict(p.protocols),
        }

    # -- queries ------------------------------------------------------------------------------

    async def flows(self, mode: str, sort: str, limit: int, text: str) -> dict[str, Any]:
        wanted = _parse(text)
        if sort not in SORTS:
            raise errors.BadArgument(f"sort must be one of {', '.join(SORTS)}")
        if mode not in ("flows", "talkers"):
            raise errors.BadArgument("mode must be flows or talkers")

        def collect() -> dict[str, Any]:
            with self.pipeline.lock:
                active = self.pipeline.flows.active()
                rows = [_flow_view(f, True) for f in active if wanted.matches(f)]
            active_ids = {flow_id(f) for f in active}
            rows += [_flow_view(f, False) for i, f in list(self._recent.items())
                     if i not in active_ids and wanted.matches(f)]  # fmt: skip
            if mode == "talkers":
                rows = _talkers(rows)
            rows.sort(key=lambda r: r[sort], reverse=True)
            return {"rows": rows[:limit], "total": len(rows)}

        return await asyncio.to_thread(collect)

    async def packets(self, flow: str, text: str, limit: int) -> list[dict[str, Any]]:
        wanted = _parse(text)

        table = self.pipeline.flows

        def collect() -> list[dict[str, Any]]:
            decoder = Decoder()
            key = _key_of(flow) if flow else None
            with self.pipeline.lock:
                ring = self.pipeline.ring
                if ring is None:
                    return []
                if key is not None:
                    chosen = ring.select(lambda p: p.key == key, limit)
                else:
                    chosen = []
                    for packet in reversed(list(ring)):
                        view = _packet_view(packet, decoder, table)
                        if wanted.matches(_Item(view)):
                            chosen.append(packet)
                            if len(chosen) >= limit:
                                break
                    chosen.reverse()
            return [_packet_view(p, decoder, table) for p in chosen]

        return await asyncio.to_thread(collect)

    async def packet(self, packet_id: int) -> dict[str, Any]:
        def find() -> RingPacket | None:
            with self.pipeline.lock:
                ring = self.pipeline.ring
                return ring.get(packet_id) if ring else None

        packet = await asyncio.to_thread(find)
        if packet is None:
            raise errors.NotFound(f"packet {packet_id} has left the ring of recent packets")
        detail = await asyncio.to_thread(dissect.dissect, packet.linktype, packet.data)
        return {**_packet_view(packet, Decoder(), self.pipeline.flows), **detail}

    async def export(self, args: dict[str, Any], owner: int) -> dict[str, Any]:
        """A pcap of the ring's packets that match the selection, kept for chunked download by
        the operator ``owner`` (a uid) alone."""
        flow, host = args.get("flow") or "", args.get("host") or ""
        since, until = float(args.get("since") or 0), float(args.get("until") or 0)
        wanted = _parse(str(args.get("filter") or ""))
        key = _key_of(flow) if flow else None

        table = self.pipeline.flows

        def build() -> tuple[bytes, int]:
            decoder = Decoder()
            with self.pipeline.lock:
                ring = self.pipeline.ring
                packets = list(ring) if ring else []
            chosen = []
            for p in packets:
                if key is not None and p.key != key:
                    continue
                if (since and p.ts < since) or (until and p.ts > until):
                    continue
                if host and host not in (p.key[1:2] + p.key[3:4]):
                    continue
                if wanted and not wanted.matches(_Item(_packet_view(p, decoder, table))):
                    continue
                chosen.append(p)
            out = io.BytesIO()
            # Classic pcap when one link type suffices (every tool opens it), else pcapng.
            kinds = {p.linktype for p in chosen} or {1}
            writer: PcapWriter | PcapngWriter = (
                PcapWriter(out, kinds.pop()) if len(kinds) == 1 else PcapngWriter(out)
            )
            for p in chosen:
                writer.write(p.ts, p.data, p.wire_length, p.linktype, p.iface)
            return out.getvalue(), len(chosen)

        data, count = await asyncio.to_thread(build)
        export = secrets.token_urlsafe(18)
        self._exports[export] = (owner, data)
        while len(self._exports) > MAX_EXPORTS:
            self._exports.popitem(last=False)
        chunks = max(1, -(-len(data) // EXPORT_CHUNK))
        kind = "pcapng" if data[:4] == b"\x0a\x0d\x0d\x0a" else "pcap"
        return {"export": export, "packets": count, "size": len(data),
                "chunks": chunks, "format": kind}  # fmt: skip

    def chunk(self, export: str, index: int, owner: int) -> dict[str, Any]:
        """Chunk ``index`` of an export, for the operator who prepared it (another operator is
        told it does not exist, as for a wrong id)."""
        owner_and_data = self._exports.get(export)
        if owner_and_data is None or owner_and_data[0] != owner:
            raise errors.NotFound(f"export {printable(export[:64])} is gone (start it again)")
        data = owner_and_data[1]
        part = data[index * EXPORT_CHUNK : (index + 1) * EXPORT_CHUNK]
        if index and not part:
            raise errors.BadArgument(f"export {export} has no chunk {index}")
        if (index + 1) * EXPORT_CHUNK >= len(data):
            self._exports.pop(export, None)  # the last chunk was fetched
        return {"data": base64.b64encode(part).decode()}


class _Item:
    """A packet view seen through the display filter's attribute names."""

    __slots__ = ("app", "dport", "dst", "proto", "sport", "src")

    def __init__(self, view: dict[str, Any]) -> None:
        self.src, self.sport, self.dst = view["src"], view["sport"], view["dst"]
        self.dport, self.proto, self.app = view["dport"], view["proto_number"], view["app"]


def _parse(text: str) -> Filter:
    try:
        return parse_filter(text or "")
    except FilterError as exc:
        raise errors.BadFilter(str(exc)) from None


def _key_of(flow: str) -> tuple[Any, ...]:
    try:
        proto, a, ap, b, bp, _ = flow.split("|")
        return (int(proto), a, int(ap), b, int(bp))
    except ValueError:
        raise errors.BadArgument(f"not a flow key: {flow!r}") from None


def _flow_view(flow: Flow, active: bool) -> dict[str, Any]:
    record = flow_record(flow)
    record.update(key=flow_id(flow), rate=round(flow.rate, 1) if active else 0.0, active=active)
    return record


def _talkers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    hosts: dict[str, dict[str, Any]] = {}
    for row in rows:
        for host in {row["src"], row["dst"]}:
            t = hosts.setdefault(host, {"host": host, "packets": 0, "bytes": 0, "rate": 0.0,
                                        "flows": 0, "last": 0.0, "apps": set()})  # fmt: skip
            t["packets"] += row["packets"]
            t["bytes"] += row["bytes"]
            t["rate"] += row["rate"]
            t["flows"] += 1
            t["last"] = max(t["last"], row["last"])
            t["apps"].add(row["app"])
    return [{**t, "apps": sorted(t["apps"])} for t in hosts.values()]


def _packet_view(
    packet: RingPacket, decoder: Decoder, flows: FlowTable | None = None
) -> dict[str, Any]:
    """One packet of the ring as a row; its tag is its flow's when the flow is still open."""
    decoded = decoder.decode(packet.data, packet.linktype, packet.ts, packet.wire_length)
    base = {"id": packet.id, "ts": packet.ts, "length": packet.wire_length, "iface": packet.iface}
    if decoded is None:
        return {**base, "src": "", "sport": 0, "dst": "", "dport": 0, "proto": "",
                "proto_number": -1, "app": "", "info": "malformed or not IP"}  # fmt: skip
    flow = flows.get(packet.key) if flows else None
    app = flow.app if flow else port_tag(decoded.proto, decoded.sport, decoded.dport)
    return {
        **base,
        "src": decoded.src, "sport": decoded.sport, "dst": decoded.dst, "dport": decoded.dport,
        "proto": transport_tag(decoded.proto), "proto_number": decoded.proto,
        "app": app,
        "info": dissect.summary(decoded),
    }  # fmt: skip
