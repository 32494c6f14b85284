"""What a parsed rule is: Suricata's vocabulary (action, header, msg, sid, content with its
modifiers, flow, threshold, flowbits, ...) as small frozen dataclasses that the matcher reads.

A rule's contents are kept in the order the rule wrote them, each bound to the buffer it
inspects (``payload`` unless a sticky buffer such as ``http.uri`` came before it), because the
relative modifiers (``distance``, ``within``) refer to the previous match in the same buffer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum

import regex

# Buffers a content or pcre can inspect. "payload" is the packet's (or, for TCP, the
# reassembled stream's) bytes; the others come from parsing the flow's application protocol.
BUFFERS = frozenset({
    "payload",
    "http.method", "http.uri", "http.uri.raw", "http.user_agent", "http.host", "http.header",
    "http.header_names", "http.cookie", "http.content_type", "http.request_line",
    "http.protocol", "http.request_body", "http.accept_enc",
    "dns.query", "tls.sni",
    "mqtt.connect.clientid", "mqtt.connect.username", "mqtt.publish.topic",
})  # fmt: skip


class Action(Enum):
    ALERT = "alert"
    DROP = "drop"  # alert, and hand the source to the response policy
    REJECT = "reject"  # the same as drop, for us
    PASS = "pass"  # matching traffic raises nothing from later rules of the same packet


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AddressSet:
    """A rule's address field: ``any``, or networks to include minus networks to exclude."""

    include: tuple[Network, ...] = ()  # empty: any address
    exclude: tuple[Network, ...] = ()

    def matches(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.include and not any(address in net for net in self.include):
            return False
        return not any(address in net for net in self.exclude)


@dataclass(frozen=True)
class PortSet:
    """A rule's port field: ``any``, or ranges to include minus ranges to exclude."""

    include: tuple[tuple[int, int], ...] = ()  # inclusive ranges; empty: any port
    exclude: tuple[tuple[int, int], ...] = ()

    @property
    def any(self) -> bool:
        return not self.include and not self.exclude

    def matches(self, port: int) -> bool:
        if self.include and not any(low <= port <= high for low, high in self.include):
            return False
        return not any(low <= port <= high for low, high in self.exclude)


@dataclass(frozen=True)
class Content:
    """``content`` and its modifiers; offsets are in bytes of the buffer."""

    pattern: bytes
    buffer: str = "payload"
    negated: bool = False
    nocase: bool = False
    depth: int | None = None
    offset: int | None = None
    distance: int | None = None  # relative to the end of the previous match in this buffer
    within: int | None = None
    startswith: bool = False
    endswith: bool = False
    fast_pattern: bool = False

    @property
    def relative(self) -> bool:
        return self.distance is not None or self.within is not None


@dataclass(frozen=True)
class Pcre:
    """``pcre`` translated to the ``regex`` module's syntax; ``relative`` is the R flag."""

    regex: regex.Pattern[bytes]
    buffer: str = "payload"
    negated: bool = False
    relative: bool = False


@dataclass(frozen=True)
class IsDataAt:
    """``isdataat``: whether the buffer has a byte at this offset (``!``: has not)."""

    offset: int
    relative: bool = False
    negated: bool = False
    buffer: str = "payload"


# Every option that inspects a buffer, in rule order (the relative ones chain on the previous).
Inspection = Content | Pcre | IsDataAt


@dataclass(frozen=True)
class Comparison:
    """A numeric test as dsize, itype, icode, urilen and bsize write it: ``N``, ``!N``,
    ``<N``, ``>N``, ``<=N``, ``>=N`` or ``N<>M`` (exclusive range)."""

    op: str  # "=", "!=", "<", ">", "<=", ">=", "<>"
    value: int
    high: int = 0

    def test(self, n: int) -> bool:
        op = self.op
        if op == "=":
            return n == self.value
        if op == "!=":
            return n != self.value
        if op == "<":
            return n < self.value
        if op == ">":
            return n > self.value
        if op == "<=":
            return n <= self.value
        if op == ">=":
            return n >= self.value
        return self.value < n < self.high


@dataclass(frozen=True)
class FlowOption:
    """``flow``: the connection state and direction a rule applies to."""

    established: bool | None = None  # True: established; False: not_established
    to_server: bool | None = None  # True: to_server/from_client; False: to_client/from_server
    stateless: bool = False
    stream: bool | None = None  # only_stream (True) / no_stream (False)


@dataclass(frozen=True)
class TcpFlags:
    """``flags``: which of FSRPAUCE must be set (``+`` also others, ``*`` any of them, ``!``
    none of them), after masking out the flags in ``ignore``."""

    flags: int
    modifier: str = ""  # "", "+", "*", "!"
    ignore: int = 0


@dataclass(frozen=True)
class Threshold:
    """``threshold`` (types limit, threshold, both) or ``detection_filter`` (``kind`` filter)."""

    kind: str  # "limit", "threshold", "both", "filter"
    track: str  # "by_src", "by_dst", "by_rule", "by_both"
    count: int
    seconds: float


@dataclass(frozen=True)
class Flowbit:
    """``flowbits``: set, unset, toggle, isset, isnotset a named bit of the flow, or noalert."""

    command: str
    names: tuple[str, ...] = ()  # "a|b" tests any, "a&b" all (for isset/isnotset)
    any_of: bool = False


@dataclass(frozen=True)
class Rule:
    action: Action
    proto: str  # ip, tcp, udp, icmp, or an application tag (http, dns, mqtt, ...)
    src: AddressSet
    sport: PortSet
    dst: AddressSet
    dport: PortSet
    bidirectional: bool
    sid: int
    rev: int = 1
    gid: int = 1
    msg: str = ""
    classtype: str = ""
    priority: int | None = None  # from the rule, or else from its classtype
    references: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()
    inspections: tuple[Inspection, ...] = ()
    flow: FlowOption | None = None
    flags: TcpFlags | None = None
    dsize: Comparison | None = None
    itype: Comparison | None = None
    icode: Comparison | None = None
    urilen: Comparison | None = None
    bsize: tuple[tuple[str, Comparison], ...] = ()  # (buffer, size test)
    threshold: Threshold | None = None
    detection_filter: Threshold | None = None
    flowbits: tuple[Flowbit, ...] = ()
    # Suricata's ``target``: which side of a match is attacked, "src_ip" or "dest_ip" (the
    # other side is the attacker); empty: the side that opened the flow is the attacker.
    target: str = ""
    # Where it came from, for messages and the Rules view.
    file: str = ""
    line: int = 0
    text: str = field(default="", repr=False)

    @property
    def contents(self) -> tuple[Content, ...]:
        return tuple(i for i in self.inspections if isinstance(i, Content))

    @property
    def noalert(self) -> bool:
        return any(bit.command == "noalert" for bit in self.flowbits)


class RuleError(ValueError):
    """A rule (or a part of one) that cannot be used; the message is its Rejection's reason."""


@dataclass(frozen=True)
class Rejection:
    """A rule that did not load, and why: file, line, sid (0 if it had none) and the keyword."""

    file: str
    line: int
    sid: int
    reason: str

    def __str__(self) -> str:
        sid = f" sid {self.sid}:" if self.sid else ""
        return f"{self.file}:{self.line}:{sid} {self.reason}"
