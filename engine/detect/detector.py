"""Running rules over traffic. A :class:`RuleSet` is compiled once (and swapped whole on reload):
rules grouped by transport and port; the groups a packet's ports fall in share one Aho-Corasick
automaton per buffer over their rules' fast patterns, so a packet costs one scan per buffer
however many rules there are, and only the rules whose fast pattern occurs (plus those without
content) are evaluated in full.

The :class:`Detector` keeps what rules need across packets: per flow, the reassembled streams,
the HTTP parser and the flowbits; per rule, the threshold counters, its hits and the packets on
which its pcre ran out of time (``pcre_timeout``; the rule does not match there).

One file, though long: the detector's loop walks the rule set's routes, candidates and compiled
rules at every step, so the two are read together (the prefilter is engine/detect/patterns.py).
"""

from __future__ import annotations

import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.capture import protocols
from engine.capture.decode import ICMP, ICMPV6, TCP, UDP, Packet
from engine.capture.flows import Flow, flow_id
from engine.config import DetectConfig
from engine.detect.http import HttpParser
from engine.detect.match import Hit, PcreTimeout, inspect_rule
from engine.detect.patterns import Patterns
from engine.detect.rules import Action, Content, Rule
from engine.detect.stream import Stream
from engine.detect.thresholds import Tracker
from engine.model import AlertEvent, Severity

log = logging.getLogger("iotsec.detect")

TRANSPORTS = {"tcp": TCP, "udp": UDP, "icmp": ICMP, "icmpv6": ICMPV6}
# Application protocols that ride on TCP (the rest of our tags ride on UDP).
TCP_APPS = frozenset({"http", "tls", "ssh", "telnet", "mqtt", "modbus", "ftp", "smtp"})
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
MAX_FLOWS = 100_000
MAX_ADDRESSES = 65_536
MAX_ROUTES = 4096
# Ports a rule may list and still be indexed by them; wider rules go to the "any port" group.
MAX_INDEXED_PORTS = 64
ACTION_ORDER = {Action.PASS: 0, Action.DROP: 1, Action.REJECT: 2, Action.ALERT: 3}


@dataclass
class Compiled:
    """A rule ready for matching."""

    rule: Rule
    severity: Severity
    transport: int | None  # None: any IP protocol
    app: str | None  # an application tag the flow must carry
    fast: tuple[str, bytes] | None  # (buffer, lower-case pattern) for the prefilter
    # Where the fast pattern may end in its buffer (from offset/depth/startswith), if anchored.
    window: tuple[int, int] | None = None


@dataclass
class Group:
    always: list[int] = field(default_factory=list)  # rules without a fast pattern
    # buffer -> fast pattern -> the rules it selects: an index, or (index, least, most end)
    patterns: dict[str, dict[bytes, set[Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """What a packet between two ports meets: every group it falls in, merged once."""

    always: list[int]  # sorted
    # (buffer, what it needs, one automaton over the groups' patterns): what it needs is
    # PAYLOAD, HTTP (a request) or the flow tags whose packets have the buffer
    scans: tuple[tuple[str, Any, Patterns], ...]


PAYLOAD, HTTP = "payload", "http"
# The application buffers and the flow tags whose packets have them (see app_buffers).
APP_BUFFERS = {"dns.": frozenset({"dns", "mdns"}), "tls.": frozenset({"tls"}),
               "mqtt.": frozenset({"mqtt"})}  # fmt: skip


def _needs(buffer: str) -> Any:
    if buffer == "payload":
        return PAYLOAD
    if buffer.startswith("http."):
        return HTTP
    return next((apps for prefix, apps in APP_BUFFERS.items() if buffer.startswith(prefix)),
                frozenset())  # fmt: skip


class RuleSet:
    """Rules compiled for matching; immutable once built (its route cache aside)."""

    def __init__(self, rules: Iterable[Rule], severity: Any) -> None:
        ordered = sorted(rules, key=lambda r: ACTION_ORDER[r.action])
        self.rules = [_compile(rule, severity(rule)) for rule in ordered]
        self.groups: dict[tuple[int | None, int | None], Group] = {}
        for index, compiled in enumerate(self.rules):
            for key in _group_keys(compiled):
                group = self.groups.setdefault(key, Group())
                if compiled.fast is None:
                    group.always.append(index)
                else:
                    buffer, pattern = compiled.fast
                    window = compiled.window
                    group.patterns.setdefault(buffer, {}).setdefault(pattern, set()).add(
                        index if window is None else (index, *window)
                    )
        # A match ending in a stream's new bytes starts at most this far before them.
        self.overlap = max((len(c.fast[1]) for c in self.rules if c.fast), default=1) - 1
        # The flow tags some rule asks for (an application protocol in its header).
        self.apps = frozenset(c.app for c in self.rules if c.app is not None)
        self._routes: dict[tuple[int, int | None, int | None, str | None], Route] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def route(self, transport: int, sport: int, dport: int, app: str) -> Route:
        """The rules of the groups of a packet's transport and ports (ports no rule lists count
        as any) that its flow's tag allows: rules for another application protocol are left
        out (they could not match; and ``\x10``, MQTT's CONNECT, is in most binary payloads)."""
        groups = self.groups
        key = (transport, sport if (transport, sport) in groups else None,
               dport if (transport, dport) in groups else None,
               app if app in self.apps else None)  # fmt: skip
        route = self._routes.get(key)
        if route is None:
            rules = self.rules

            def allowed(entry: Any) -> bool:
                wanted = rules[entry if isinstance(entry, int) else entry[0]].app
                return wanted is None or wanted == key[3]

            always: set[int] = set()
            tables: dict[str, dict[bytes, set[Any]]] = {}
            for group_key in {(transport, key[2]), (transport, key[1]), (transport, None),
                              (None, None)}:  # fmt: skip
                group = groups.get(group_key)
                if group is not None:
                    always.update(filter(allowed, group.always))
                    for buffer, table in group.patterns.items():
                        for pattern, entries in table.items():
                            if kept := set(filter(allowed, entries)):
                                merged = tables.setdefault(buffer, {})
                                merged.setdefault(pattern, set()).update(kept)
            route = Route(sorted(always), tuple((b, _needs(b), Patterns(t))
                                                for b, t in tables.items()))  # fmt: skip
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            self._routes[key] = route
        return route

    def candidates(self, route: Route, buffers: Any, seen: set[int] | None = None,
                   scan_from: int = 0) -> list[int]:  # fmt: skip
        """The rules worth evaluating on a packet of ``route`` (its transport and ports), in
        evaluation order.

        ``seen``: for a reassembled stream, the rules whose fast pattern occurred in its
        earlier bytes; the payload is scanned from ``scan_from`` on, and what it shows is added.
        """
        found: set[int] | None = None
        payload, request, app = buffers.payload, buffers.request, buffers.app
        for buffer, needs, patterns in route.scans:
            if needs is PAYLOAD:
                if not payload:
                    continue
                if seen is not None:
                    patterns.scan(payload, scan_from, seen)
                    if seen:
                        found = set(seen) if found is None else found | seen
                    continue
                data: bytes | None = payload
            elif needs is HTTP:
                if request is None:
                    continue
                data = request.buffers.get(buffer)
            elif app in needs:
                data = buffers(buffer)
            else:
                continue
            if data:
                if found is None:
                    found = set()
                patterns.scan(data, 0, found)
        if not found:
            return route.always
        found.update(route.always)
        return sorted(found)


def _compile(rule: Rule, severity: Severity) -> Compiled:
    transport = TRANSPORTS.get(rule.proto)
    app = None
    if rule.proto not in TRANSPORTS and rule.proto != "ip":
        app = rule.proto
        transport = TCP if app in TCP_APPS else UDP
        if app == "dns":
            transport = None  # DNS rides on UDP and TCP
    positive = [c for c in rule.contents if not c.negated]
    chosen: Content | None = next((c for c in positive if c.fast_pattern), None)
    if chosen is None and positive:
        chosen = max(positive, key=lambda c: len(c.pattern))
    fast = (chosen.buffer, chosen.pattern.lower()) if chosen is not None else None
    return Compiled(rule, severity, transport, app, fast, _window(chosen))


def _window(content: Content | None) -> tuple[int, int] | None:
    """The least and most end offset of an absolute content's match, if it is anchored."""
    if content is None or content.relative or content.endswith:
        return None
    start = content.offset or 0
    if content.depth is not None:
        most = start + content.depth
    elif content.startswith:
        most = start + len(content.pattern)
    else:
        return None
    return start + len(content.pattern), most


def _group_keys(compiled: Compiled) -> list[tuple[int | None, int | None]]:
    """Where a rule is indexed: its transport and each of its (few) destination ports, else
    its source ports, else any port."""
    rule = compiled.rule
    transport = compiled.transport
    if transport not in (TCP, UDP):
        return [(transport, None)]
    for ports in (rule.dport, rule.sport):
        if ports.include and not ports.exclude:
            listed = [p for low, high in ports.include for p in range(low, high + 1)
                      if high - low < MAX_INDEXED_PORTS]  # fmt: skip
            if len(listed) <= MAX_INDEXED_PORTS and sum(
                high - low + 1 for low, high in ports.include
            ) == len(listed):
                keys = [(transport, p) for p in listed]
                if rule.bidirectional:
                    other = rule.sport if ports is rule.dport else rule.dport
                    if other.any:
                        return [(transport, None)]
                return keys
    return [(transport, None)]


@dataclass
class FlowState:
    start: float
    streams: tuple[Stream, Stream]  # to server, to client
    http: HttpParser = field(default_factory=HttpParser)
    bits: set[str] = field(default_factory=set)
    # Per direction: the route (of a rule set) that scanned the stream and the rules whose
    # fast pattern it found there, so each packet scans only the stream's new bytes.
    seen: list[tuple[Route, set[int]] | None] = field(default_factory=lambda: [None, None])
    # Whether what a rule asks of a packet that is constant for a flow and direction holds
    # (transport, addresses, ports, flow:to_server/to_client), by the rule's index times two
    # plus the direction, for the rule set whose rules they are.
    headers: tuple[RuleSet | None, dict[int, bool]] = (None, {})


@dataclass(frozen=True)
class Match:
    """A rule that fired on a packet: the alert to raise and what the response needs."""

    rule: Rule
    event: AlertEvent


class Detector:
    def __init__(self, ruleset: RuleSet, stream_depth: int = 65536,
                 pcre_timeout: float = DetectConfig.pcre_timeout) -> None:  # fmt: skip
        self.ruleset = ruleset
        self.stream_depth = stream_depth
        self.pcre_timeout = pcre_timeout
        self.thresholds = Tracker()
        # Matches of rules with a threshold or detection_filter are all returned, for whoever
        # merges the matches of several detectors (the shards of an analysis) to apply them.
        self.defer_thresholds = False
        self.hits: dict[int, int] = {}  # sid -> matches (before thresholds)
        self.pcre_timeouts: dict[int, int] = {}  # sid -> packets its pcre gave up on
        self._flows: OrderedDict[tuple[Any, ...], FlowState] = OrderedDict()
        self._addresses: dict[str, Any] = {}

    def forget(self, flow: Flow) -> None:
        """A flow ended: its streams and bits go."""
        self._flows.pop(flow.key, None)

    def bare(self, transport: int, sport: int, dport: int, app: str) -> bool:
        """Whether a packet without payload may fire a rule: some rule of its transport, ports
        and flow tag has no content to look for."""
        return bool(self.ruleset.route(transport, sport, dport, app).always)

    def inspect(self, packet: Packet, flow: Flow) -> list[Match]:
        """The rules that fire on ``packet`` (already accounted to ``flow``)."""
        state = self._state(flow)
        to_server = packet.src == flow.src and packet.sport == flow.sport
        payload, new_from, streamed = self._payload(packet, state, to_server)
        ruleset = self.ruleset  # one set for the whole packet, however a reload swaps it
        route = ruleset.route(packet.proto, packet.sport, packet.dport, flow.app)
        if not payload and not route.always:
            return []  # no bytes to look at and no rule without content: nothing can fire
        buffers = _Buffers(packet, flow.app, payload, state, to_server, streamed)
        if state.headers[0] is not ruleset:
            state.headers = (ruleset, {})
        headers = state.headers[1]
        seen: set[int] | None = None
        scan_from = 0
        if streamed:
            side = 0 if to_server else 1
            scanned = state.seen[side]
            if scanned is None or scanned[0] is not route:
                # New rules (a reload, or the flow's tag changed): the stream is scanned whole.
                scanned = state.seen[side] = (route, set())
            else:
                scan_from = max(0, new_from - ruleset.overlap)
            seen = scanned[1]
        matches: list[Match] = []
        # Each HTTP request completed by this packet is inspected with its own buffers.
        requests = buffers.http_requests() if flow.app == "http" else None
        for request in requests or (None,):
            buffers.request = request
            for index in ruleset.candidates(route, buffers, seen, scan_from):
                compiled = ruleset.rules[index]
                slot = index * 2 + to_server
                holds = headers.get(slot)
                if holds is None:
                    holds = headers[slot] = self._constant(compiled, packet, to_server)
                if not holds:
                    continue
                hit = self._evaluate(compiled, packet, flow, buffers, new_from)
                if hit is None:
                    continue
                rule = compiled.rule
                if rule.action is Action.PASS:
                    return matches  # pass: nothing after it fires on this packet
                match = self._fire(compiled, packet, flow, hit)
                if match is not None:
                    matches.append(match)
        return matches

    # -- one rule -----------------------------------------------------------------------------

    def _constant(self, compiled: Compiled, packet: Packet, to_server: bool) -> bool:
        """What ``compiled`` asks of every packet of this flow and direction alike."""
        if compiled.transport is not None and packet.proto != compiled.transport:
            return False
        rule = compiled.rule
        option = rule.flow
        if option is not None and option.to_server is not None and option.to_server != to_server:
            return False
        return self._header(rule, packet)

    def _evaluate(self, compiled: Compiled, packet: Packet, flow: Flow, buffers: _Buffers,
                  new_from: int) -> Hit | bool | None:  # fmt: skip
        """The rest of a rule, once :meth:`_constant` holds."""
        rule = compiled.rule
        if compiled.app is not None and flow.app != compiled.app:
            return None
        if rule.flow is not None and not _established_holds(rule, flow, packet):
            return None
        if rule.flags is not None and (packet.proto != TCP or not _flags(rule, packet.flags)):
            return None
        if rule.dsize is not None and not rule.dsize.test(len(packet.payload)):
            return None
        if rule.itype is not None and (
            packet.proto not in (ICMP, ICMPV6) or not rule.itype.test(packet.sport)
        ):
            return None
        if rule.icode is not None and (
            packet.proto not in (ICMP, ICMPV6) or not rule.icode.test(packet.flags)
        ):
            return None
        if rule.urilen is not None:
            uri = buffers("http.uri.raw")
            if uri is None or not rule.urilen.test(len(uri)):
                return None
        for bit in rule.flowbits:
            if bit.command in ("isset", "isnotset"):
                have = [name in buffers.state.bits for name in bit.names]
                held = any(have) if bit.any_of else all(have)
                if held != (bit.command == "isset"):
                    return None
        hit: Hit | bool | None = True
        if rule.inspections or rule.bsize:
            # no_stream: the packet's own payload, not the reassembled stream.
            own = rule.flow is not None and rule.flow.stream is False
            try:
                hit = inspect_rule(rule, buffers.packet_only() if own else buffers,
                                   0 if own else new_from, self.pcre_timeout)  # fmt: skip
            except PcreTimeout:
                self._pcre_timed_out(rule, packet)
                return None
            if hit is None:
                return None
        for bit in rule.flowbits:
            bits = buffers.state.bits
            if bit.command == "set":
                bits.update(bit.names)
            elif bit.command == "unset":
                bits.difference_update(bit.names)
            elif bit.command == "toggle":
                bits.symmetric_difference_update(bit.names)
        return hit

    def _pcre_timed_out(self, rule: Rule, packet: Packet) -> None:
        """Count a packet on which ``rule``'s pcre gave up. Only the first is logged: a flood
        of packets made for a slow pattern must not flood the log too."""
        count = self.pcre_timeouts.get(rule.sid, 0)
        self.pcre_timeouts[rule.sid] = count + 1
        if not count:
            log.warning("sid %d (%s:%d): its pcre ran out of time (%g s) on a packet from %s to "
                        "%s, so the rule does not match it; such packets are counted as the "
                        "rule's pcre_timeouts (rules.list), this is logged once per rule",
                        rule.sid, rule.file, rule.line, self.pcre_timeout, packet.src,
                        packet.dst)  # fmt: skip

    def _header(self, rule: Rule, packet: Packet) -> bool:
        if self._one_way(rule, packet.src, packet.sport, packet.dst, packet.dport):
            return True
        return rule.bidirectional and self._one_way(rule, packet.dst, packet.dport, packet.src,
                                                    packet.sport)  # fmt: skip

    def _one_way(self, rule: Rule, src: str, sport: int, dst: str, dport: int) -> bool:
        if not (rule.sport.matches(sport) and rule.dport.matches(dport)):
            return False
        if (rule.src.include or rule.src.exclude) and not rule.src.matches(self._address(src)):
            return False
        return not (rule.dst.include or rule.dst.exclude) or rule.dst.matches(self._address(dst))

    def _address(self, text: str) -> Any:
        address = self._addresses.get(text)
        if address is None:
            if len(self._addresses) >= MAX_ADDRESSES:
                self._addresses.clear()
            address = self._addresses[text] = ipaddress.ip_address(text)
        return address

    def _fire(self, compiled: Compiled, packet: Packet, flow: Flow,
              hit: Hit | bool) -> Match | None:  # fmt: skip
        rule = compiled.rule
        self.hits[rule.sid] = self.hits.get(rule.sid, 0) + 1
        if not self.defer_thresholds and not admits(self.thresholds, rule, packet.src,
                                                    packet.dst, packet.ts):  # fmt: skip
            return None
        if rule.noalert:
            return None
        evidence: dict[str, Any] = {
            "sid": rule.sid, "rev": rule.rev, "gid": rule.gid, "msg": rule.msg,
            "classtype": rule.classtype, "action": rule.action.value,
            "proto": protocols.transport_tag(packet.proto), "app": flow.app,
            "src": packet.src, "sport": packet.sport, "dst": packet.dst, "dport": packet.dport,
            "flow": {"key": flow_id(flow), "src": flow.src, "sport": flow.sport, "dst": flow.dst,
                     "dport": flow.dport, "start": flow.start,
                     "proto": protocols.transport_tag(flow.proto)},
            "rule_file": rule.file, "rule_line": rule.line,
        }  # fmt: skip
        if isinstance(hit, Hit):
            evidence["match"] = {
                "buffer": hit.buffer, "offset": hit.start, "before": _shown(hit.before),
                "matched": _shown(hit.matched), "after": _shown(hit.after),
            }  # fmt: skip
        attacker, target = _sides(rule, packet, flow)
        event = AlertEvent(
            severity=compiled.severity, source="rules", rule=str(rule.sid), title=rule.msg,
            src=packet.src, dst=packet.dst, evidence=evidence, ts=packet.ts,
            attacker=attacker, target=target,
        )  # fmt: skip
        return Match(rule, event)

    # -- flows --------------------------------------------------------------------------------

    def _state(self, flow: Flow) -> FlowState:
        state = self._flows.get(flow.key)
        if state is None or state.start != flow.start:
            depth = self.stream_depth
            state = FlowState(flow.start, (Stream(depth), Stream(depth)))
            self._flows[flow.key] = state
            if len(self._flows) > MAX_FLOWS:
                self._flows.popitem(last=False)
        else:
            self._flows.move_to_end(flow.key)
        return state

    def _payload(
        self, packet: Packet, state: FlowState, to_server: bool
    ) -> tuple[bytes, int, bool]:
        """What ``payload`` content sees: for TCP the reassembled stream of this direction
        (matches must end in the new bytes), past ``stream_depth`` the packet alone; and
        whether it is the stream, grown by this packet."""
        if packet.proto != TCP or not self.stream_depth:
            return packet.payload, 0, False
        stream = state.streams[0 if to_server else 1]
        if stream.full:
            return packet.payload, 0, False
        new_from = stream.add(packet.seq, packet.payload, syn=bool(packet.flags & SYN))
        if new_from is None:
            return b"", 0, False  # a retransmission or an early segment: nothing new
        return bytes(stream.data), new_from, True


def _sides(rule: Rule, packet: Packet, flow: Flow) -> tuple[str, str]:
    """(attacker, target) of a match: as the rule's ``target`` says, else the side that opened
    the flow is the attacker (a server answering, with a login prompt say, is not)."""
    if rule.target == "dest_ip":
        return packet.src, packet.dst
    if rule.target == "src_ip":
        return packet.dst, packet.src
    if packet.src == flow.src and packet.sport == flow.sport:
        return packet.src, packet.dst
    return packet.dst, packet.src


def admits(tracker: Tracker, rule: Rule, src: str, dst: str, ts: float) -> bool:
    """Whether a match of ``rule`` passes its detection_filter and threshold (and count it)."""
    for limit in (rule.detection_filter, rule.threshold):
        if limit is not None and not tracker.allows(rule.sid, limit, src, dst, ts):
            return False
    return True


def _shown(raw: bytes) -> str:
    """Matched bytes as text an operator can read safely: printable ASCII, else \\xNN."""
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else f"\\x{b:02x}" for b in raw)


def _established_holds(rule: Rule, flow: Flow, packet: Packet) -> bool:
    option = rule.flow
    assert option is not None
    if option.established is not None:
        if packet.proto == TCP:
            established = flow.state in ("SF", "FIN") or (
                flow.state == "OTH" and flow.packets_in > 0 and flow.packets_out > 0
            )
        else:
            established = flow.packets_in > 0 and flow.packets_out > 0
        if established != option.established:
            return False
    return True


def _flags(rule: Rule, flags: int) -> bool:
    option = rule.flags
    assert option is not None
    seen = flags & ~option.ignore & 0xFF
    if option.modifier == "*":
        return bool(seen & option.flags)
    if option.modifier == "!":
        return not seen & option.flags
    if option.modifier == "+":
        return seen & option.flags == option.flags
    return seen == option.flags


class _Buffers:
    """The buffers of one packet, made when a rule first asks for them."""

    def __init__(self, packet: Packet, app: str, payload: bytes, state: FlowState,
                 to_server: bool, streamed: bool) -> None:  # fmt: skip
        self.packet = packet
        self.app = app
        self.payload = payload
        self.streamed = streamed
        self.state = state
        self.to_server = to_server
        self.request: Any = None
        self._requests: list[Any] | None = None
        self._app: dict[str, bytes] | None = None

    def __call__(self, name: str) -> bytes | None:
        if name == "payload":
            return self.payload
        if name.startswith("http."):
            if self.request is None:
                return None
            return self.request.buffers.get(name)
        return self._app_buffers().get(name)

    def packet_only(self) -> Callable[[str], bytes | None]:
        """These buffers, but ``payload`` is the packet's own, not the stream's."""
        payload = self.packet.payload
        return lambda name: payload if name == "payload" else self(name)

    def http_requests(self) -> list[Any]:
        if self._requests is None:
            self._requests = []
            if self.app == "http" and self.to_server and self.packet.proto == TCP:
                # A request can only complete where the client's stream grew (its bytes are
                # the payload buffer then); without a kept stream, each packet stands alone.
                if self.streamed:
                    self._requests = self.state.http.feed(self.payload)
                elif not self.state.streams[0].data:
                    self._requests = self.state.http.feed(self.packet.payload)
        return self._requests

    def _app_buffers(self) -> dict[str, bytes]:
        if self._app is None:
            self._app = app_buffers(self.packet, self.app)
        return self._app


def app_buffers(packet: Packet, app: str) -> dict[str, bytes]:
    """DNS, TLS and MQTT buffers of one packet, from the protocol parsers of the tagger."""
    payload = packet.payload
    found: dict[str, bytes] = {}
    if not payload:
        return found
    if app in ("dns", "mdns"):
        name = protocols.dns_query_name(payload[2:] if packet.proto == TCP else payload)
        if name is not None:
            found["dns.query"] = name
    elif app == "tls":
        _, details = protocols.inspect(packet.proto, packet.sport, packet.dport, payload)
        if "sni" in details:
            found["tls.sni"] = details["sni"].encode()
    elif app == "mqtt":
        _, details = protocols.inspect(packet.proto, packet.sport, packet.dport, payload)
        if "client_id" in details:
            found["mqtt.connect.clientid"] = details["client_id"].encode()
        if "username" in details:
            found["mqtt.connect.username"] = details["username"].encode()
        if details.get("topics"):
            found["mqtt.publish.topic"] = details["topics"][0].encode()
    return found
