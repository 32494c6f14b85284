"""Offline analysis of capture files (``iotsec analyze``): stream pcap/pcapng files through the
capture pipeline, at full speed or in real time, and summarise them: packets, bytes, flows, top
talkers, protocols, malformed frames, and the flows that carry secrets in clear.

At full speed, frames go through the fast path (:mod:`engine.capture.fastpath`), and a large
file is analysed by several processes when the machine has the cores, each accounting a share
of the flows (see :mod:`engine.capture.shard`); the summary is the same as one process's, and
as that of frames fed one by one (in real time, or when they are saved).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from engine.capture.decode import Packet
from engine.capture.fastpath import FastPath
from engine.capture.filter import Filter
from engine.capture.flows import Flow
from engine.capture.pcapfile import CaptureFileError, read_records
from engine.capture.pipeline import Pipeline
from engine.capture.shard import Shard, Unshardable, processes, run_sharded

if TYPE_CHECKING:
    from engine.capture.pcapwrite import PcapngWriter, PcapWriter

# How often (in frames) ended flows are collected and idle ones expired.
SWEEP_EVERY = 4096
TOP = 10
MAX_CLEARTEXT = 100
MAX_ALERTS = 10_000  # listed by analyze; beyond that they are counted (alerts_dropped)
# Matches a shard keeps before thresholds; past that the analysis runs in one process.
SHARD_MATCHES = 50_000
MAX_TALKERS = 50_000
# Below this many bytes of input, starting more processes costs more than it saves.
SHARD_MIN_BYTES = 8 << 20


@dataclass
class Talker:
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    apps: set[str] = field(default_factory=set)


@dataclass
class Tally:
    """What one process counted; the shards' tallies of one analysis add up (:func:`merge`)."""

    packets: int = 0
    bytes: int = 0
    start: float = 0.0  # the first capture time that is not 0
    end: float = 0.0
    flows: int = 0
    flows_evicted: int = 0
    decoded: int = 0
    malformed: int = 0
    fragments: int = 0
    unsupported: int = 0
    protocols: dict[str, int] = field(default_factory=dict)
    talkers: dict[str, Talker] = field(default_factory=dict)
    # The first flows that carried secrets, each after its place in the order of the report
    # (sweep, then end time), by which the shards' lists merge into one.
    cleartext: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # The rules' matches (engine.detect's Match) in capture order; a shard's are not yet
    # thinned by thresholds (see :func:`_admitted`).
    alerts: list[Any] = field(default_factory=list)
    alerts_dropped: int = 0


def flow_record(flow: Flow) -> dict[str, Any]:
    """A flow as the CLI, the store and the control API show it (src is the initiator)."""
    return {
        "proto": _PROTO_NAMES.get(flow.proto, str(flow.proto)),
        "src": flow.src, "sport": flow.sport, "dst": flow.dst, "dport": flow.dport,
        "app": flow.app, "start": flow.start, "last": flow.last,
        "duration": round(flow.last - flow.start, 6),
        "packets": flow.packets, "bytes": flow.bytes,
        "packets_out": flow.packets_out, "bytes_out": flow.bytes_out,
        "packets_in": flow.packets_in, "bytes_in": flow.bytes_in,
        "state": flow.state, "iface": flow.iface, "details": flow.details,
    }  # fmt: skip


_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 0x0806: "arp", 2: "igmp"}


def cleartext(flow: Flow) -> list[str]:
    """What secrets ``flow`` shows travelling unencrypted (the values are never kept)."""
    details = flow.details
    found = []
    if flow.app == "mqtt" and details.get("password"):
        found.append("mqtt password")
    if flow.app == "http" and details.get("basic_auth"):
        found.append("http basic auth")
    if flow.app == "snmp" and details.get("community"):
        found.append("snmp community")
    if flow.app == "telnet" and flow.packets_in and flow.packets_out:
        found.append("telnet session")
    return found


class Analysis:
    """The running summary of one ``analyze`` run (or of one shard of it)."""

    def __init__(self, pipeline: Pipeline, on_flow: Callable[[Flow], None] | None) -> None:
        self.pipeline = pipeline
        self.on_flow = on_flow
        self.tally = Tally()
        self.sweeps = 0

    def collect(self) -> None:
        """Account the flows that ended since the last sweep."""
        ended, self.pipeline.ended = self.pipeline.ended, []
        # By end time, not in the order their end was noticed: shards notice in another order,
        # and this is the order of the flow list and of the cleartext list.
        ended.sort(key=_end_order)
        self.sweeps += 1
        tally = self.tally
        for flow in ended:
            tally.flows += 1
            # Each flow's packets under its last tag: what the pipeline would have counted as
            # they came, as it moves a flow's earlier packets to the tag its payload shows.
            tally.protocols[flow.app] = tally.protocols.get(flow.app, 0) + flow.packets
            for host in (flow.src, flow.dst) if flow.src != flow.dst else (flow.src,):
                talker = tally.talkers.get(host)
                if talker is None:
                    talker = tally.talkers[host] = Talker()
                talker.packets += flow.packets
                talker.bytes += flow.bytes
                talker.flows += 1
                talker.apps.add(flow.app)
            secrets = cleartext(flow)
            if secrets and len(tally.cleartext) < MAX_CLEARTEXT:
                record = {**flow_record(flow), "cleartext": secrets}
                tally.cleartext.append(((self.sweeps, *_end_order(flow)), record))
            if self.on_flow is not None:
                self.on_flow(flow)
        if len(tally.talkers) > MAX_TALKERS:
            # Memory stays bounded whatever the file: the lighter half of the hosts is let go,
            # so a host first seen after that may rank a little low (as iftop's tables do).
            kept = sorted(tally.talkers.items(), key=lambda kv: -kv[1].bytes)[: MAX_TALKERS // 2]
            tally.talkers = dict(kept)

    def finish(self) -> Tally:
        """The tally, with the pipeline's counts; call once every frame was fed."""
        p, tally = self.pipeline, self.tally
        tally.packets, tally.bytes = p.frames, p.bytes
        tally.start, tally.end = p.first_ts, p.last_ts
        tally.flows_evicted = p.flows.evicted
        d = p.decoder
        tally.decoded, tally.malformed = d.decoded, d.malformed
        tally.fragments, tally.unsupported = d.fragments, d.unsupported
        tally.alerts, tally.alerts_dropped = p.alerts, p.alerts_dropped
        return tally


def _end_order(flow: Flow) -> tuple[Any, ...]:
    """The order of flows that ended in one sweep: by end time (and start, and key, as two
    flows of one sweep may end at the same time)."""
    return flow.last, flow.start, flow.key


def merge(tallies: list[Tally]) -> Tally:
    """The tally of a whole analysis from the tallies of its shards."""
    total = Tally(errors=tallies[0].errors)  # every shard read the same files
    for t in tallies:
        total.packets += t.packets
        total.bytes += t.bytes
        total.flows += t.flows
        total.flows_evicted += t.flows_evicted
        total.decoded += t.decoded
        total.malformed += t.malformed
        total.fragments += t.fragments
        total.unsupported += t.unsupported
        for tag, count in t.protocols.items():
            total.protocols[tag] = total.protocols.get(tag, 0) + count
        for host, talker in t.talkers.items():
            sum_ = total.talkers.setdefault(host, Talker())
            sum_.packets += talker.packets
            sum_.bytes += talker.bytes
            sum_.flows += talker.flows
            sum_.apps |= talker.apps
        total.cleartext.extend(t.cleartext)
    total.start = min((t.start for t in tallies if t.start), default=0.0)
    total.end = max(t.end for t in tallies)
    total.cleartext = sorted(total.cleartext, key=lambda item: item[0])[:MAX_CLEARTEXT]
    return total


def summary(files: list[str], t: Tally, written: int = 0) -> dict[str, Any]:
    """The summary ``analyze`` returns. Ties are ordered by name, so that it does not depend on
    the order things were seen in."""
    top = sorted(t.talkers.items(), key=lambda kv: (-kv[1].bytes, kv[0]))[:TOP]
    return {
        "files": files,
        "packets": t.packets,
        "bytes": t.bytes,
        "start": t.start or None,
        "end": t.end or None,
        "duration": round(t.end - t.start, 6) if t.packets else 0.0,
        "flows": t.flows,
        "flows_evicted": t.flows_evicted,
        "decoded": t.decoded,
        "malformed": t.malformed,
        "fragments": t.fragments,
        "unsupported": t.unsupported,
        "protocols": dict(sorted(t.protocols.items(), key=lambda kv: (-kv[1], kv[0]))),
        "top_talkers": [
            {
                "host": host,
                "packets": talker.packets,
                "bytes": talker.bytes,
                "flows": talker.flows,
                "apps": sorted(talker.apps),
            }
            for host, talker in top
        ],
        "cleartext": [record for _, record in t.cleartext],
        "errors": t.errors,
        **({"written": written} if written else {}),
    }


class _Saver:
    """Writes the frames that pass the display filter to ``name`` (pcapng if so named)."""

    def __init__(self, name: str, wanted: Filter | None) -> None:
        self.name = name
        self.wanted = wanted
        self.out: BinaryIO = open(name, "wb")  # noqa: SIM115 - closed by close()
        self.writer: PcapWriter | PcapngWriter | None = None

    def save(self, packet: Packet | None, ts: float, linktype: int, data: bytes,
             wire_length: int, iface: str) -> None:  # fmt: skip
        if self.wanted is None or (packet is not None and self.wanted.matches(packet)):
            if self.writer is None:
                self.writer = _open_writer(self.out, self.name, linktype)
            self.writer.write(ts, data, wire_length, linktype, iface)

    def close(self) -> int:
        """Close the file; how many frames it holds."""
        if self.writer is None:  # nothing matched: still leave a valid, empty file
            _open_writer(self.out, self.name, 1)
        self.out.close()
        return self.writer.count if self.writer is not None else 0


def _open_writer(out: BinaryIO, name: str, linktype: int) -> PcapWriter | PcapngWriter:
    from engine.capture.pcapwrite import open_writer  # only when saving: analyze starts sooner

    return open_writer(out, name, linktype)


def analyze(
    paths: Iterable[str | Path],
    *,
    realtime: bool = False,
    display_filter: Filter | None = None,
    write_to: str | Path | None = None,
    on_flow: Callable[[Flow], None] | None = None,
    max_flows: int = 100_000,
    idle_timeout: float = 300.0,
    active_timeout: float = 3600.0,
    detector: Any = None,
) -> dict[str, Any]:
    """Stream every file through the capture pipeline and return the summary.

    A damaged file is reported in ``errors`` (what was read before the damage counts) and the
    next file is read. ``write_to`` receives the frames that pass ``display_filter``. With a
    ``detector`` (engine.detect) the summary has the ``alerts`` its rules raised.
    """
    files = [str(p) for p in paths]
    timeouts = {"idle_timeout": idle_timeout, "active_timeout": active_timeout}
    # Pacing needs every frame, and flows or frames handed out one by one would come from
    # each shard in its own order: only a full-speed run that does neither is split.
    single = realtime or write_to is not None or on_flow is not None
    count = 1 if single else _shards(files)
    if count > 1:
        work = _shard_work(files, count, max_flows, timeouts, detector)
        try:
            tallies = run_sharded(count, work)
            result = summary(files, merge(tallies))
            if detector is not None:
                result.update(_admitted([t.alerts for t in tallies]))
            return result
        except Unshardable:
            pass  # then in one process, from the start
    pipeline = _pipeline(max_flows, timeouts, detector, MAX_ALERTS)
    analysis = Analysis(pipeline, on_flow)
    saver = _Saver(str(write_to), display_filter or None) if write_to else None
    try:
        if realtime or saver is not None:
            _replay(files, analysis, realtime=realtime, save=saver.save if saver else None)
        else:
            _stream(files, analysis)
    finally:
        written = saver.close() if saver is not None else 0
    result = summary(files, analysis.finish(), written)
    if detector is not None:
        result["alerts"] = [alert_record(match) for match in pipeline.alerts]
        result["alerts_dropped"] = pipeline.alerts_dropped
    return result


def _admitted(shards: list[list[Any]]) -> dict[str, Any]:
    """The alerts of a sharded analysis: the shards' matches in capture order, thinned by the
    rules' thresholds as one process would have thinned them. Two matches of a rule with a
    threshold at the same instant in different shards have no order: Unshardable."""
    order: list[tuple[float, int, int, Any]] = [
        (match.event.ts, index, n, match)
        for index, matches in enumerate(shards)
        for n, match in enumerate(matches)
    ]
    order.sort(key=lambda item: item[:3])
    limited: dict[tuple[int, float], int] = {}
    for ts, index, _, match in order:
        rule = match.rule
        limits = rule.threshold is not None or rule.detection_filter is not None
        if limits and limited.setdefault((rule.sid, ts), index) != index:
            raise Unshardable("matches of a thresholded rule at the same instant")
    from engine.detect.detector import admits
    from engine.detect.thresholds import Tracker

    tracker = Tracker()
    alerts = [m for *_, m in order if admits(tracker, m.rule, m.event.src, m.event.dst, m.event.ts)]
    return {"alerts": [alert_record(m) for m in alerts[:MAX_ALERTS]],
            "alerts_dropped": max(0, len(alerts) - MAX_ALERTS)}  # fmt: skip


def alert_record(match: Any) -> dict[str, Any]:
    """A rule's alert as ``analyze --json`` lists it: the evidence, severity, time, and which
    side attacked which."""
    event = match.event
    return {**event.evidence, "severity": event.severity.label, "ts": event.ts,
            "attacker": event.attacker, "target": event.target}  # fmt: skip


def _pipeline(max_flows: int, timeouts: dict[str, float], detector: Any = None,
              max_alerts: int = MAX_ALERTS) -> Pipeline:  # fmt: skip
    """A pipeline for an analysis: no packet ring and no facts, and the protocols counted from
    the flows (:meth:`Analysis.collect`)."""
    return Pipeline(max_flows=max_flows, ring_bytes=0, facts=False, count_protocols=False,
                    detector=detector, max_alerts=max_alerts, **timeouts)  # fmt: skip


def _shards(files: list[str]) -> int:
    """How many processes to analyse ``files`` with."""
    size = 0
    for name in files:
        with contextlib.suppress(OSError):  # reported when it is read
            size += os.stat(name).st_size
    return processes() if size >= SHARD_MIN_BYTES else 1


def _shard_work(files: list[str], count: int, max_flows: int, timeouts: dict[str, float],
                detector: Any = None) -> Callable[[int], Tally]:  # fmt: skip
    def work(index: int) -> Tally:
        # The shards share the flow table's size: while none fills its share, the whole table
        # never filled, and no flow was evicted (that would depend on the other shards' flows).
        share = max_flows // count + (index < max_flows % count)
        if detector is not None:
            detector.defer_thresholds = True  # this process's copy; applied after the merge
        analysis = Analysis(_pipeline(share, timeouts, detector, SHARD_MATCHES), None)
        _stream(files, analysis, shard=Shard(index, count))
        if analysis.pipeline.flows.evicted:
            raise Unshardable("a shard's flow table filled up")
        if analysis.pipeline.alerts_dropped:
            raise Unshardable("more rule matches than a shard keeps")
        return analysis.finish()

    return work


def _stream(files: list[str], analysis: Analysis, *, shard: Shard | None = None) -> None:
    """Feed every frame of ``files`` (or those of ``shard``) through the analysis's pipeline at
    full speed, and sweep ended and idle flows every SWEEP_EVERY frames of a file."""
    fast = FastPath(analysis.pipeline, shard)
    for name in files:
        try:
            fast.read(name, Path(name).name, SWEEP_EVERY, analysis.collect)
        except CaptureFileError as exc:
            analysis.tally.errors.append(str(exc))
    analysis.pipeline.finish()
    analysis.collect()


def _replay(
    files: list[str],
    analysis: Analysis,
    *,
    realtime: bool,
    save: Callable[[Packet | None, float, int, bytes, int, str], None] | None,
) -> None:
    """What :func:`_stream` does, frame by frame through Pipeline.feed: in real time if asked,
    and handing each frame and its packet to ``save``."""
    pipeline = analysis.pipeline
    feed = pipeline.feed
    clock: tuple[float, float] | None = None  # (first capture time, wall time it maps to)
    for name in files:
        label = Path(name).name
        try:
            for n, (ts, linktype, data, wire_length) in enumerate(read_records(name), 1):
                if realtime:
                    if clock is None:
                        clock = (ts, time.monotonic())
                    delay = (ts - clock[0]) - (time.monotonic() - clock[1])
                    if delay > 0:
                        time.sleep(delay)
                packet = feed(ts, linktype, data, wire_length, label)
                if save is not None:
                    save(packet, ts, linktype, data, wire_length, label)
                if n % SWEEP_EVERY == 0:
                    pipeline.expire(pipeline.last_ts)
                    analysis.collect()
        except CaptureFileError as exc:
            analysis.tally.errors.append(str(exc))
    pipeline.finish()
    analysis.collect()
