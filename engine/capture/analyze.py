"""Offline analysis of capture files (``iotsec analyze``): stream pcap/pcapng files through the
capture pipeline, at full speed or in real time, and summarise them: packets, bytes, flows, top
talkers, protocols, malformed frames, and the flows that carry secrets in clear.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.capture.filter import Filter
from engine.capture.flows import Flow
from engine.capture.pcapfile import CaptureFileError, read_frames
from engine.capture.pcapwrite import PcapngWriter, PcapWriter, open_writer
from engine.capture.pipeline import Pipeline

# How often (in frames) ended flows are collected and idle ones expired.
SWEEP_EVERY = 4096
TOP = 10


@dataclass
class Talker:
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    apps: set[str] = field(default_factory=set)


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
    """The running summary of one ``analyze`` run."""

    def __init__(self, pipeline: Pipeline, on_flow: Callable[[Flow], None] | None) -> None:
        self.pipeline = pipeline
        self.on_flow = on_flow
        self.flows = 0
        self.talkers: dict[str, Talker] = {}
        self.cleartext: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.written = 0

    def collect(self) -> None:
        ended, self.pipeline.ended = self.pipeline.ended, []
        for flow in ended:
            self.flows += 1
            for host in {flow.src, flow.dst}:
                talker = self.talkers.get(host)
                if talker is None:
                    talker = self.talkers[host] = Talker()
                talker.packets += flow.packets
                talker.bytes += flow.bytes
                talker.flows += 1
                talker.apps.add(flow.app)
            secrets = cleartext(flow)
            if secrets and len(self.cleartext) < 100:
                self.cleartext.append({**flow_record(flow), "cleartext": secrets})
            if self.on_flow is not None:
                self.on_flow(flow)

    def summary(self, files: list[str]) -> dict[str, Any]:
        p = self.pipeline
        top = sorted(self.talkers.items(), key=lambda kv: kv[1].bytes, reverse=True)[:TOP]
        return {
            "files": files,
            "packets": p.frames,
            "bytes": p.bytes,
            "start": p.first_ts or None,
            "end": p.last_ts or None,
            "duration": round(p.last_ts - p.first_ts, 6) if p.frames else 0.0,
            "flows": self.flows,
            "flows_evicted": p.flows.evicted,
            "decoded": p.decoder.decoded,
            "malformed": p.decoder.malformed,
            "fragments": p.decoder.fragments,
            "unsupported": p.decoder.unsupported,
            "protocols": dict(sorted(p.protocols.items(), key=lambda kv: -kv[1])),
            "top_talkers": [
                {
                    "host": host,
                    "packets": t.packets,
                    "bytes": t.bytes,
                    "flows": t.flows,
                    "apps": sorted(t.apps),
                }
                for host, t in top
            ],
            "cleartext": self.cleartext,
            "errors": self.errors,
            **({"written": self.written} if self.written else {}),
        }


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
) -> dict[str, Any]:
    """Stream every file through one pipeline and return the summary.

    A damaged file is reported in ``errors`` (what was read before the damage counts) and the
    next file is read. ``write_to`` receives the frames that pass ``display_filter``.
    """
    pipeline = Pipeline(max_flows=max_flows, idle_timeout=idle_timeout,
                        active_timeout=active_timeout, ring_bytes=0, facts=False)  # fmt: skip
    analysis = Analysis(pipeline, on_flow)
    files = [str(p) for p in paths]
    out = open(write_to, "wb") if write_to else None  # noqa: SIM115 - closed below
    writer: PcapWriter | PcapngWriter | None = None
    wanted = display_filter if display_filter else None
    clock: tuple[float, float] | None = None  # (first capture time, wall time it maps to)
    try:
        for name in files:
            label = Path(name).name
            try:
                for n, frame in enumerate(read_frames(Path(name)), 1):
                    if realtime:
                        if clock is None:
                            clock = (frame.ts, time.monotonic())
                        delay = (frame.ts - clock[0]) - (time.monotonic() - clock[1])
                        if delay > 0:
                            time.sleep(delay)
                    packet = pipeline.feed(frame.ts, frame.linktype, frame.data,
                                           frame.wire_length, label)  # fmt: skip
                    if out is not None and (
                        wanted is None or (packet is not None and wanted.matches(packet))
                    ):
                        if writer is None:
                            writer = open_writer(out, str(write_to), frame.linktype)
                        writer.write(frame.ts, frame.data, frame.wire_length, frame.linktype,
                                     label)  # fmt: skip
                    if n % SWEEP_EVERY == 0:
                        pipeline.expire(pipeline.last_ts)
                        analysis.collect()
            except CaptureFileError as exc:
                analysis.errors.append(str(exc))
        pipeline.finish()
        analysis.collect()
    finally:
        if out is not None:
            if writer is None:  # nothing matched: still leave a valid, empty file
                open_writer(out, str(write_to), 1)
            out.close()
    analysis.written = writer.count if writer is not None else 0
    return analysis.summary(files)
