"""Address and port variables (``$HOME_NET``, ``$HTTP_PORTS``, ...) and the address and port
fields of a rule's header that use them, with Suricata's semantics: lists nest, ``!`` negates
an element or a whole list, and a list keeps its positive elements minus its negated ones.

Suricata keeps the two kinds apart (address-groups and port-groups in suricata.yaml); our config
has one table, ``[detect.vars]``, so a name ending in ``_PORTS`` or ``_PORT`` is a port variable
and any other name an address variable.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from engine.config import ConfigError
from engine.detect.rules import AddressSet, Network, PortSet, RuleError

# Suricata's suricata.yaml defaults, and ours for IoT rules.
DEFAULT_VARS: dict[str, str] = {
    "HOME_NET": "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]",
    "EXTERNAL_NET": "!$HOME_NET",
    "HTTP_SERVERS": "$HOME_NET",
    "SMTP_SERVERS": "$HOME_NET",
    "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET",
    "TELNET_SERVERS": "$HOME_NET",
    "AIM_SERVERS": "$HOME_NET",
    "DC_SERVERS": "$HOME_NET",
    "DNP3_SERVER": "$HOME_NET",
    "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET",
    "MODBUS_SERVER": "$HOME_NET",
    "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
    "HTTP_PORTS": "80",
    "SHELLCODE_PORTS": "!80",
    "ORACLE_PORTS": "1521",
    "SSH_PORTS": "22",
    "DNP3_PORTS": "20000",
    "MODBUS_PORTS": "502",
    "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081",
    "VXLAN_PORTS": "4789",
    "TEREDO_PORTS": "3544",
    "MODBUS_CLIENTS": "$HOME_NET",
    "MQTT_PORTS": "[1883,8883]",
    "IOT_NET": "$HOME_NET",
}

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_PORT = 65535
ARTICLE = {"address": "an address", "port": "a port"}


def is_port_variable(name: str) -> bool:
    return name.endswith(("_PORTS", "_PORT"))


class Variables:
    """Variable definitions, and the address and port fields written with them."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        # Rules repeat the same few fields ($HOME_NET, any, $HTTP_PORTS) hundreds of times.
        self._addresses: dict[str, AddressSet] = {}
        self._ports: dict[str, PortSet] = {}

    def addresses(self, text: str) -> AddressSet:
        """An address field: ``any``, an address, a network, a range ``a-b``, ``$VAR``, ``!x``
        or a list ``[x, y, ...]`` of those."""
        if text not in self._addresses:
            self._addresses[text] = self._address_set(text, frozenset())
        return self._addresses[text]

    def ports(self, text: str) -> PortSet:
        """A port field: ``any``, ``N``, ``N:M``, ``N:``, ``:M``, ``$VAR``, ``!x`` or a list."""
        if text not in self._ports:
            self._ports[text] = self._port_set(text, frozenset())
        return self._ports[text]

    def check(self, name: str) -> None:
        """Raise RuleError if the variable ``name`` does not parse as its kind."""
        if is_port_variable(name):
            self._port_set(self.values[name], frozenset({name}))
        else:
            self._address_set(self.values[name], frozenset({name}))

    def _address_set(self, text: str, seen: frozenset[str]) -> AddressSet:
        include, exclude = self._split(text, "address", seen, _networks)
        include, exclude = _collapse(include), _collapse(exclude)
        if include and all(_covered(net, exclude) for net in include):
            raise RuleError(f"{text!r} matches no address (everything it lists is negated)")
        return AddressSet(tuple(include), tuple(exclude))

    def _port_set(self, text: str, seen: frozenset[str]) -> PortSet:
        include, exclude = self._split(text, "port", seen, lambda atom: [_port_range(atom)])
        include, exclude = _merge(include), _merge(exclude)
        if include and all(any(lo <= low and high <= hi for lo, hi in exclude)
                           for low, high in include):  # fmt: skip
            raise RuleError(f"{text!r} matches no port (everything it lists is negated)")
        return PortSet(tuple(include), tuple(exclude))

    def _split(self, text: str, kind: str, seen: frozenset[str],
               convert: Callable[[str], list[Any]]) -> tuple[list[Any], list[Any]]:  # fmt: skip
        """What a field includes and excludes; an ``any`` among the included makes that empty
        (any)."""
        include: list[Any] = []
        exclude: list[Any] = []
        everything = False
        for negated, atom in self._atoms(text, False, kind, seen):
            if atom.lower() == "any":
                if negated:
                    raise RuleError(f"'!any' matches no {kind}")
                everything = True
            else:
                (exclude if negated else include).extend(convert(atom))
        return ([] if everything else include), exclude

    def _atoms(self, text: str, negated: bool, kind: str,
               seen: frozenset[str]) -> Iterator[tuple[bool, str]]:  # fmt: skip
        """The plain elements of a field, variables expanded, each with its negation: a ``!``
        in front of a list negates each of its elements (as Suricata does)."""
        text = text.strip()
        if not text:
            raise RuleError(f"empty {kind} (a list with a stray ',' or '[]'?)")
        if text.startswith("!"):
            yield from self._atoms(text[1:], not negated, kind, seen)
        elif text.startswith("["):
            for element in _elements(text):
                yield from self._atoms(element, negated, kind, seen)
        elif text.startswith("$"):
            name = text[1:]
            yield from self._atoms(self._lookup(name, kind, seen), negated, kind, seen | {name})
        else:
            yield negated, text

    def _lookup(self, name: str, kind: str, seen: frozenset[str]) -> str:
        if name not in self.values:
            raise RuleError(f"undefined variable ${name}")
        if name in seen:
            raise RuleError(f"variable ${name} refers to itself")
        if (kind == "port") != is_port_variable(name):
            other = "address" if kind == "port" else "port"
            raise RuleError(f"${name} is {ARTICLE[other]} variable, not {ARTICLE[kind]}")
        return self.values[name]


def load_variables(overrides: Mapping[str, str], where: str = "config") -> Variables:
    """The default variables, overridden and extended by the config's ``[detect.vars]``; every
    variable is checked, and the first that does not parse is a ConfigError naming it."""
    values = dict(DEFAULT_VARS)
    for name, value in overrides.items():
        key = name.removeprefix("$")
        if not NAME.fullmatch(key):
            raise ConfigError(
                f"{where}: detect.vars: {name!r} is not a variable name (letters, digits, _)"
            )
        values[key] = value
    variables = Variables(values)
    # The user's own first, so that a bad HOME_NET is reported as itself, not as EXTERNAL_NET.
    for name in [*(n.removeprefix("$") for n in overrides), *DEFAULT_VARS]:
        try:
            variables.check(name)
        except RuleError as exc:
            raise ConfigError(f"{where}: detect.vars.{name}: {exc}") from None
    return variables


def _elements(text: str) -> list[str]:
    """The top-level elements of a list ``[a, [b, c], !d]``."""
    depth = 0
    elements: list[str] = []
    start = 1
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0 and index != len(text) - 1:
                raise RuleError(f"unexpected text after ']' in {text!r}")
        elif char == "," and depth == 1:
            elements.append(text[start:index])
            start = index + 1
    if depth != 0:
        raise RuleError(f"unbalanced '[' in {text!r}")
    elements.append(text[start:-1])
    return elements


def _networks(atom: str) -> list[Network]:
    try:
        if "-" in atom:
            first, last = (ipaddress.ip_address(part.strip()) for part in atom.split("-", 1))
            return list(ipaddress.summarize_address_range(first, last))
        return [ipaddress.ip_network(atom, strict=False)]
    except (ValueError, TypeError):
        raise RuleError(f"{atom!r} is not an IP address, network or range") from None


def _collapse(networks: list[Network]) -> list[Network]:
    v4 = [n for n in networks if n.version == 4]
    v6 = [n for n in networks if n.version == 6]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def _covered(network: Network, by: list[Network]) -> bool:
    return any(network.version == other.version and network.subnet_of(other)
               for other in by)  # fmt: skip


def _port_range(atom: str) -> tuple[int, int]:
    low_text, colon, high_text = atom.partition(":")
    if not colon:
        high_text = low_text
    try:
        low = int(low_text) if low_text.strip() else 0
        high = int(high_text) if high_text.strip() else MAX_PORT
    except ValueError:
        raise RuleError(f"{atom!r} is not a port, a range N:M or any") from None
    if not (0 <= low <= MAX_PORT and 0 <= high <= MAX_PORT):
        raise RuleError(f"port {atom!r} is out of range (0-{MAX_PORT})")
    if low > high:
        raise RuleError(f"port range {atom!r} is reversed")
    return low, high


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged
