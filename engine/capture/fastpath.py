"""The fast path of offline analysis: a frame of the common kind (Ethernet or raw IP; IPv4
without options or IPv6 without extension headers; TCP, UDP, ICMP or ICMPv6) is accounted
straight from the file's buffer, its flow found by its raw header bytes, without a Packet; any
other frame goes through the pipeline.

Why: ``iotsec analyze`` reads hundreds of thousands of frames a second, and on the general path
most of that time goes to copying each frame, building and reading its Packet, and making the
text of its addresses and its flow's key. How it stays equal to the general path: every check
below is one that Decoder.decode, FlowTable.add and Pipeline.feed make, in the same order, and
a frame that fails one is handed to the pipeline whole, to be decoded (or counted as malformed)
there. tests/test_capture_analyze.py compares the two paths on real captures and on their
frames cut short, garbled and reframed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from engine.capture import protocols
from engine.capture.decode import (
    ICMP,
    ICMP_ANSWERS,
    ICMPV6,
    IPV6_EXTENSIONS,
    IPV6_FRAGMENT,
    LINK_ETHERNET,
    LINK_IPV4,
    LINK_IPV6,
    LINK_RAW,
    TCP,
    UDP,
)
from engine.capture.flows import STATE_FLAGS, SYN, TCP_NEXT_STATE, Flow
from engine.capture.pcapfile import Chunk, read_chunks
from engine.capture.pipeline import Pipeline
from engine.capture.shard import MIX_PRIME, Shard, Unshardable

_RAW_LINKS = frozenset((LINK_RAW, LINK_IPV4, LINK_IPV6))
_WITH_PORTS = frozenset((TCP, UDP))
_NOT_TRANSPORTS = IPV6_EXTENSIONS | {IPV6_FRAGMENT}
# IPv4 without options: version and header length, total length, fragment, protocol, the
# addresses (as numbers, for the shard's mix) and the first 4 bytes of the transport header
# (the ports, or ICMP's type, code and checksum) ...
_IPV4 = struct.Struct("!BxHxxHxB2xIIHH")
# ... the same after an Ethernet header's ethertype ...
_ETHERNET_IPV4 = struct.Struct("!12xH" + _IPV4.format[1:])
# ... and IPv6: version, payload length, next header, the addresses as 64-bit words, the ports.
_IPV6 = struct.Struct("!B3xHBx4QHH")

# What the raw header of a frame finds: its flow, whether the frame is from the flow's source
# address and port (counted "out"), and whether it is from its source address (the TCP state's
# "initiator").
Seen = tuple[Flow, bool, bool]


class FastPath:
    """Feeds capture files to ``pipeline``: all their frames, or those ``shard`` owns."""

    def __init__(self, pipeline: Pipeline, shard: Shard | None = None) -> None:
        self.pipeline = pipeline
        # The frames of the common kind are accounted here, not by the pipeline: one that
        # keeps packets, finds facts in them or counts them as they come cannot be fed so.
        if pipeline.needs_packets:
            raise ValueError("the fast path feeds only a pipeline without ring, facts or counts")
        # Rules see the packets they can act on, decoded after the frame is accounted here.
        self.detector = pipeline.detector
        self.shard = shard
        # Each transport's flows by the raw addresses and ports (ICMP: type) of a frame: one
        # dict hit instead of two address texts, a key and its lookup. The table empties them
        # whenever a flow ends.
        self._seen: dict[int, dict[bytes, Seen]] = {
            proto: pipeline.flows.cache() for proto in (TCP, UDP, ICMP, ICMPV6)
        }

    def read(self, path: str, iface: str, every: int, sweep: Callable[[], None]) -> None:
        """Feed the frames of one file; after every ``every`` of them, expire idle flows and
        call ``sweep``. Capture time must never run backwards in a shard (:class:`Unshardable`).
        """
        chunks, stopped, n = read_chunks(path), None, 0
        while (chunk := chunks.send(stopped)) is not None:
            stopped, n = self._walk(chunk, n, iface, every, sweep)

    def _walk(self, chunk: Chunk, n: int, iface: str, every: int,
              sweep: Callable[[], None]) -> tuple[int, int]:  # fmt: skip
        """Feed the whole records of one chunk (``n`` frames of the file came before); where
        the walk stopped, and how many frames of the file it has read then."""
        pipeline, shard = self.pipeline, self.shard
        table = pipeline.flows
        touch, idle, active = table.touch, table.idle_timeout, table.active_timeout
        account, inspect = pipeline.account, pipeline.inspect
        tcp_seen, udp_seen = self._seen[TCP], self._seen[UDP]
        icmp_seen, icmpv6_seen = self._seen[ICMP], self._seen[ICMPV6]
        icmp_answers, icmpv6_answers = ICMP_ANSWERS[ICMP], ICMP_ANSWERS[ICMPV6]
        mine = shard.mine if shard is not None else None
        detector = self.detector
        decode, detect = pipeline.decoder.decode, pipeline.detect
        bare = detector.bare if detector is not None else None
        # Globals and attributes as locals: this loop runs for every frame.
        ether_ipv4, ipv4, ipv6 = _ETHERNET_IPV4.unpack_from, _IPV4.unpack_from, _IPV6.unpack_from
        ethernet, raw_links, not_transports = LINK_ETHERNET, _RAW_LINKS, _NOT_TRANSPORTS
        tcp, udp, with_ports, prime = TCP, UDP, _WITH_PORTS, MIX_PRIME
        next_state, state_flags = TCP_NEXT_STATE, STATE_FLAGS
        inspected = protocols.INSPECT_PACKETS
        # What Pipeline.feed counts, counted here. The latest time is that of every frame, the
        # shard's or not, as every shard expires flows by it.
        frames = wire_bytes = passed_on = 0
        first, latest = pipeline.first_ts, pipeline.last_ts
        sweep_at = (n // every + 1) * every  # the file's frame after which to sweep next

        linktype, unit, record, longest, buf = chunk
        unpack_record, header = record.unpack_from, record.size
        pos, end_of_chunk = 0, len(buf)
        while pos + header <= end_of_chunk:
            # The sweep after a frame is made before the next one, as a frame that is not
            # this shard's continues the loop early.
            if n == sweep_at:
                pipeline.expire(latest)
                sweep()
                sweep_at += every
            # The record, walked as read_records walks it, without copying the frame.
            seconds, units, caplen, wire_length = unpack_record(buf, pos)
            start = pos + header
            stop = start + caplen
            if stop > end_of_chunk or caplen > longest:
                break
            pos = stop
            ts = seconds + units * unit
            n += 1
            if ts >= latest:
                latest = ts
            elif shard is not None:
                raise Unshardable("capture time runs backwards")
            if not first:
                first = ts

            # The link and IP headers: ``l4`` is where the transport header starts when both
            # are of the common kind. They also tell whose frame it is, in a shard: a frame of
            # another shard is skipped, and ``ours`` says this shard's is known to be so.
            l4, version, ours = 0, 0, mine is None
            if linktype == ethernet and caplen >= 38:
                ethertype, head, total, fragment, proto, src, dst, p1, p2 = ether_ipv4(buf, start)
                ip = start + 14
                version = 4 if ethertype == 0x0800 else 6 if ethertype == 0x86DD else 0
            elif linktype in raw_links and caplen >= 24:
                ip = start
                version = buf[ip] >> 4
                if version == 4:
                    head, total, fragment, proto, src, dst, p1, p2 = ipv4(buf, ip)
            if version == 4:
                if head == 0x45:  # version 4, a header of 20 bytes
                    if mine is not None:
                        mix = src ^ dst ^ (p1 ^ p2 if proto in with_ports else 0)
                        if not mine[mix % prime]:
                            continue
                        ours = True
                    if not fragment & 0x3FFF:
                        end = ip + total if total >= 20 and ip + total < stop else stop
                        l4, addresses = ip + 20, ip + 12
                        icmp, seen_icmp, answers = ICMP, icmp_seen, icmp_answers
            elif version == 6 and stop - ip >= 44:
                head, length, proto, a, b, c, d, p1, p2 = ipv6(buf, ip)
                if head >> 4 == 6 and proto not in not_transports:
                    if mine is not None:
                        mix = a ^ b ^ c ^ d ^ (p1 ^ p2 if proto in with_ports else 0)
                        if not mine[mix % prime]:
                            continue
                        ours = True
                    end = min(ip + 40 + length, stop)
                    l4, addresses = ip + 40, ip + 8
                    icmp, seen_icmp, answers = ICMPV6, icmpv6_seen, icmpv6_answers

            # The transport header, checked as Decoder.decode checks it; ``seen`` holds the
            # flows of the transport when it is of the common kind.
            seen = None
            if l4:
                if proto == tcp:
                    if end >= l4 + 20:
                        offset = (buf[l4 + 12] >> 4) * 4
                        if offset >= 20 and end >= l4 + offset:
                            seen, key, payload = tcp_seen, buf[addresses : l4 + 4], l4 + offset
                            sport, dport, flags = p1, p2, buf[l4 + 13]
                elif proto == udp:
                    if end >= l4 + 8:
                        seen, key, payload = udp_seen, buf[addresses : l4 + 4], l4 + 8
                        sport, dport = p1, p2
                elif proto == icmp and end >= l4 + 4:
                    seen, key, payload = seen_icmp, buf[addresses : l4 + 1], l4 + 4
                    # As the decoder does: the type and the type that answers it as "ports".
                    sport = p1 >> 8
                    dport = answers.get(sport, sport)

            if seen is None:  # not of the common kind: the pipeline decodes it
                data = buf[start:stop]
                if ours or shard.owns(data, linktype):
                    frames += 1
                    wire_bytes += wire_length
                    passed_on += 1
                    account(ts, linktype, data, wire_length, iface)
                continue

            # The frame accounted as FlowTable.add and Pipeline.feed account its packet.
            hit = seen.get(key)
            if hit is not None:
                flow = hit[0]
                if ts - flow.last > idle or ts - flow.start > active:
                    hit = None
                else:
                    touch(flow.key)
            if hit is None:
                hit = self._find(proto, buf[addresses:l4], sport, dport, ts, iface, seen, key)
            flow, out, initiator = hit
            frames += 1
            wire_bytes += wire_length
            if out:
                flow.packets_out += 1
                flow.bytes_out += wire_length or caplen
            else:
                flow.packets_in += 1
                flow.bytes_in += wire_length or caplen
            if ts > flow.last:
                flow.last = ts
            if proto == tcp:
                flow.state = next_state[flow.state, flags & state_flags, initiator]
            if payload < end and flow.inspected < inspected:
                inspect(flow, proto, sport, dport, buf[payload:end])
            # What Pipeline.account does next, for the packets rules can act on: those with a
            # payload, those some content-less rule may match, and the first of each direction
            # of a TCP flow and its SYNs (where the rules' stream reassembly starts).
            if bare is not None and (
                payload < end
                or (
                    proto == tcp
                    and (flags & SYN or (flow.packets_out if out else flow.packets_in) == 1)
                )
                or bare(proto, sport, dport, flow.app)
            ):
                packet = decode(buf[start:stop], linktype, ts, wire_length)
                if packet is not None:  # it is: the checks above are the decoder's
                    passed_on += 1  # counted as decoded there
                    packet.app = flow.app
                    detect(packet, flow)
        if n == sweep_at:
            pipeline.expire(latest)
            sweep()

        pipeline.frames += frames
        pipeline.bytes += wire_bytes
        pipeline.decoder.decoded += frames - passed_on  # the pipeline counted those it decoded
        pipeline.first_ts, pipeline.last_ts = first, latest
        return pos, n

    def _find(self, proto: int, raw: bytes, sport: int, dport: int, ts: float, iface: str,
              seen: dict[bytes, Seen], key: bytes) -> Seen:  # fmt: skip
        """The flow of a frame not in ``seen`` (``raw``: its addresses), found or started as
        FlowTable.add and Pipeline.feed find or start it, and remembered in ``seen``."""
        pipeline = self.pipeline
        src, dst = pipeline.decoder.names(raw)
        flow, ended = pipeline.flows.find(proto, src, sport, dst, dport, ts)
        if ended:
            pipeline.end_flows(ended)
        if not flow.app:
            flow.app = protocols.port_tag(proto, flow.sport, flow.dport)
            flow.iface = iface
        initiator = src == flow.src
        found = seen[key] = (flow, initiator and sport == flow.sport, initiator)
        return found
