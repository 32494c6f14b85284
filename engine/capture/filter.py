"""The display filter: which packets or flows an operator wants to see, in words tcpdump users
know: ``mqtt``, ``host 10.0.0.5``, ``src port 23``, ``net 10.0.0.0/8 and not tcp``.

Terms: ``[src|dst] host ADDR``, ``[src|dst] port N``, ``[src|dst] net CIDR``, a transport
(``tcp``, ``udp``, ``icmp``, ``icmpv6``, ``arp``, ``igmp``, ``ip``, ``ip6``) or a protocol tag
(``mqtt``, ``http``, ...), joined by ``and``/``&&``, ``or``/``||``, ``not``/``!`` and
parentheses. A filter applies to anything with ``src sport dst dport proto app`` attributes: a
flow (src is the initiator) or a packet.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from engine.capture.decode import ETH_ARP
from engine.capture.protocols import TAGS, TRANSPORTS

Predicate = Callable[[Any], bool]
TOKEN = re.compile(r"\s*(\(|\)|&&|\|\||!|[^\s()!]+)")
PROTOS = {name: number for number, name in TRANSPORTS.items()}
WORDS = sorted({*TAGS, *PROTOS, "ip", "ip6"})


class FilterError(ValueError):
    """A filter that does not parse; the message says what and where (column, from 1)."""


class Filter:
    def __init__(self, text: str, predicate: Predicate | None) -> None:
        self.text = text
        self._predicate = predicate

    def matches(self, item: Any) -> bool:
        return self._predicate is None or self._predicate(item)

    def __bool__(self) -> bool:
        return self._predicate is not None

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"


def parse_filter(text: str) -> Filter:
    """Compile ``text``; an empty filter matches everything."""
    tokens = [(m.group(1), m.start(1) + 1) for m in TOKEN.finditer(text)]
    if text.strip() and not tokens:
        raise FilterError("filter has no terms")
    if not tokens:
        return Filter(text, None)
    parser = _Parser(tokens)
    predicate = parser.expression()
    if parser.position < len(tokens):
        word, column = tokens[parser.position]
        raise FilterError(f"unexpected '{word}' at column {column}: expected 'and', 'or' or ')'")
    return Filter(text, predicate)


class _Parser:
    def __init__(self, tokens: list[tuple[str, int]]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str:
        return self.tokens[self.position][0].lower() if self.position < len(self.tokens) else ""

    def take(self, expected: str) -> tuple[str, int]:
        if self.position >= len(self.tokens):
            raise FilterError(f"filter ends early: expected {expected}")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expression(self) -> Predicate:
        left = self.conjunction()
        while self.peek() in ("or", "||"):
            self.position += 1
            right = self.conjunction()
            left = _or(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.negation()
        while self.peek() in ("and", "&&"):
            self.position += 1
            right = self.negation()
            left = _and(left, right)
        return left

    def negation(self) -> Predicate:
        if self.peek() in ("not", "!"):
            self.position += 1
            inner = self.negation()
            return lambda item: not inner(item)
        return self.primary()

    def primary(self) -> Predicate:
        word, column = self.take("a term such as 'host 10.0.0.5', 'port 23' or 'mqtt'")
        lowered = word.lower()
        if lowered == "(":
            inner = self.expression()
            closing, at = self.take("')'")
            if closing != ")":
                raise FilterError(f"expected ')' at column {at}, found '{closing}'")
            return inner
        direction = ""
        if lowered in ("src", "dst"):
            direction = lowered
            word, column = self.take(f"'host', 'port' or 'net' after '{lowered}'")
            lowered = word.lower()
            if lowered not in ("host", "port", "net"):
                raise FilterError(
                    f"expected 'host', 'port' or 'net' after '{direction}' at column {column}"
                )
        if lowered == "host":
            return _host(direction, *self.take("an address after 'host'"))
        if lowered == "port":
            return _port(direction, *self.take("a port number after 'port'"))
        if lowered == "net":
            return _net(direction, *self.take("a network such as 10.0.0.0/24 after 'net'"))
        return _protocol(lowered, word, column)


def _and(left: Predicate, right: Predicate) -> Predicate:
    return lambda item: left(item) and right(item)


def _or(left: Predicate, right: Predicate) -> Predicate:
    return lambda item: left(item) or right(item)


def _host(direction: str, value: str, column: int) -> Predicate:
    try:
        address = ipaddress.ip_address(value).compressed
    except ValueError:
        raise FilterError(f"'{value}' at column {column} is not an IP address") from None
    if direction == "src":
        return lambda item: item.src == address
    if direction == "dst":
        return lambda item: item.dst == address
    return lambda item: item.src == address or item.dst == address


def _port(direction: str, value: str, column: int) -> Predicate:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise FilterError(f"'{value}' at column {column} is not a port number (0-65535)")
    port = int(value)
    if direction == "src":
        return lambda item: item.sport == port and _has_ports(item)
    if direction == "dst":
        return lambda item: item.dport == port and _has_ports(item)
    return lambda item: (item.sport == port or item.dport == port) and _has_ports(item)


def _has_ports(item: Any) -> bool:
    return item.proto in (6, 17)


def _net(direction: str, value: str, column: int) -> Predicate:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise FilterError(
            f"'{value}' at column {column} is not a network (e.g. 10.0.0.0/24)"
        ) from None

    def inside(address: str) -> bool:
        try:
            return ipaddress.ip_address(address) in network
        except ValueError:
            return False

    if direction == "src":
        return lambda item: inside(item.src)
    if direction == "dst":
        return lambda item: inside(item.dst)
    return lambda item: inside(item.src) or inside(item.dst)


def _protocol(lowered: str, word: str, column: int) -> Predicate:
    if lowered in PROTOS:
        number = PROTOS[lowered]
        return lambda item: item.proto == number
    if lowered == "ip":
        return lambda item: item.proto != ETH_ARP and ":" not in item.src
    if lowered == "ip6":
        return lambda item: ":" in item.src
    if lowered in TAGS:
        return lambda item: item.app == lowered
    raise FilterError(
        f"unknown word '{word}' at column {column}: expected host, port, net, src, dst, not, "
        f"or a protocol ({', '.join(WORDS)})"
    )
