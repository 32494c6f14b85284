"""What answers on the common IoT UDP ports: a CoAP GET of /.well-known/core, an SSDP M-SEARCH
(and the UPnP description it points at), an SNMPv2c GET of sysDescr, an mDNS service enumeration
and NTP client and mode 6 queries — each read-only, built and parsed here — and the findings that
follow from the answers."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import re
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from engine.model import Severity
from engine.scan import upnp
from engine.scan.findings import Finding, Service

DEFAULT_PORTS = (5683, 1900, 161, 5353, 123)
CONCURRENCY = 32  # ports probed at once; a port outside DEFAULT_PORTS gets every probe
GATHER = 0.3  # seconds to go on listening for the rest of a multi-datagram answer
LIST_LIMIT = 50  # resources, records, ... kept in a service's details
DESCRIPTION_LIMIT = 4  # UPnP descriptions fetched from one device (one per distinct LOCATION)
# Linux's IP_RECVERR and IPV6_RECVERR, which the socket module does not name: with them an
# unconnected socket is told of an ICMP port unreachable, as a connected one always is.
_RECVERR = {4: (socket.IPPROTO_IP, 11), 6: (socket.IPPROTO_IPV6, 25)}

Result = tuple[Service, list[Finding]]
Probe = Callable[[str, int, float], Awaitable[Result | None]]


class _Malformed(ValueError):
    """An answer that cannot be read; it is noted in the service's details, never raised."""


# -- sending and listening -------------------------------------------------------------------------


def _literal(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address (names are not resolved)") from None


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, host: ipaddress.IPv4Address | ipaddress.IPv6Address, any_port: bool):
        self.host = host
        self.any_port = any_port
        self.datagrams: list[bytes] = []
        self.refused = False
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # A connected socket hears only the target; an unconnected one (SSDP, whose answers may
        # come from another port) keeps what comes from the target's address.
        if self.any_port:
            try:
                if ipaddress.ip_address(str(addr[0]).split("%", 1)[0]) != self.host:
                    return
            except ValueError:
                return
        self.datagrams.append(data)
        self.arrived.set()

    def error_received(self, exc: Exception) -> None:
        # An ICMP port (or host) unreachable: nobody will answer.
        self.refused = True
        self.arrived.set()


def _unconnected(version: int) -> socket.socket:
    """A socket that hears every port of the target, and on Linux its ICMP errors too."""
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if sys.platform == "linux":
            sock.setsockopt(*_RECVERR[version], 1)
        sock.bind(("::" if version == 6 else "0.0.0.0", 0))
    except OSError:
        sock.close()
        raise
    return sock


async def _until(listener: _Listener, deadline: float, done: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    while not done():
        left = deadline - loop.time()
        if left <= 0:
            return
        listener.arrived.clear()
        try:
            await asyncio.wait_for(listener.arrived.wait(), left)
        except TimeoutError:
            return


async def _exchange(
    address: str,
    port: int,
    payload: bytes,
    timeout: float,
    *,
    any_port: bool = False,
    counts: Callable[[bytes], bool] = lambda _: True,
    more: Callable[[list[bytes]], bool] | None = None,
) -> list[bytes]:
    """Send ``payload`` and return what the target answers: the datagrams up to the first that
    ``counts`` as an answer, within ``timeout`` (sent once more at half time, as UDP loses
    packets), then, while ``more`` says the answer goes on, those within :data:`GATHER` seconds
    more. Empty: no answer, or the port is closed."""
    host = _literal(address)
    loop = asyncio.get_running_loop()
    listener = _Listener(host, any_port)
    try:
        if any_port:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: listener, sock=_unconnected(host.version)
            )
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: listener, remote_addr=(address, port)
            )
    except OSError:
        return []

    def answered() -> bool:
        return listener.refused or any(counts(d) for d in listener.datagrams)

    def send() -> None:
        if any_port:
            transport.sendto(payload, (address, port))
        else:
            transport.sendto(payload)

    try:
        start = loop.time()
        send()
        await _until(listener, start + timeout / 2, answered)
        if not answered():
            send()
            await _until(listener, start + timeout, answered)
        if more is not None and answered() and listener.datagrams:
            await _until(listener, loop.time() + GATHER, lambda: not more(listener.datagrams))
        return list(listener.datagrams)
    finally:
        transport.close()


def _summary(data: bytes, limit: int = 48) -> str:
    """A short, printable view of raw bytes."""
    text = repr(data[:limit])[2:-1]
    return f"{text}… ({len(data)} bytes)" if len(data) > limit else text


def _unknown(port: int, probe: str, data: bytes, problem: str) -> Result:
    """Something answered, but not in a form the probe reads."""
    details = {"probe": probe, "malformed": [problem]}
    return Service(port, "udp", banner=_summary(data), details=details), []


# -- CoAP (RFC 7252, link format RFC 6690) ---------------------------------------------------------

_COAP_CONTENT_FORMAT = 12
_COAP_BLOCK2 = 23
_LINK = re.compile(r'\s*<([^>]*)>((?:\s*;\s*[^;,=\s]+(?:\s*=\s*(?:"[^"]*"|[^;,]*))?)*)\s*(?:,|$)')
_LINK_PARAM = re.compile(r';\s*([^;,=\s]+)(?:\s*=\s*("[^"]*"|[^;,]*))?')
_IMPL_VERSION = re.compile(r"/([\w-]+)/?#version-([\w.+-]+)$")


def _coap_request(message_id: int, token: bytes) -> bytes:
    """A confirmable GET /.well-known/core (Uri-Path options ".well-known" and "core")."""
    header = bytes([0x40 | len(token), 0x01]) + message_id.to_bytes(2, "big") + token
    return header + bytes([0xB0 | 11]) + b".well-known" + bytes([0x04]) + b"core"


def _coap_empty_ack(data: bytes) -> bool:
    """The ACK a server sends before a separate (later) response."""
    return len(data) >= 2 and data[0] >> 4 == 0x6 and data[1] == 0


def _coap_extended(data: bytes, at: int, nibble: int) -> tuple[int, int]:
    if nibble < 13:
        return nibble, at
    if nibble == 13 and at < len(data):
        return data[at] + 13, at + 1
    if nibble == 14 and at + 2 <= len(data):
        return int.from_bytes(data[at : at + 2], "big") + 269, at + 2
    raise _Malformed("CoAP option header truncated or reserved (15)")


def _coap_answer(data: bytes, message_id: int, token: bytes) -> dict[str, Any]:
    """The code, options and payload of a CoAP response to our request."""
    if len(data) < 4:
        raise _Malformed("CoAP header truncated")
    version, kind, token_length = data[0] >> 6, (data[0] >> 4) & 0x3, data[0] & 0x0F
    if version != 1 or token_length > 8:
        raise _Malformed("not a CoAP message (version or token length)")
    code = data[1]
    if kind == 3 and code == 0 and int.from_bytes(data[2:4], "big") == message_id:
        return {"code": "reset", "options": [], "payload": b""}
    if code >> 5 not in (2, 4, 5):
        raise _Malformed(f"not a CoAP response (code {code >> 5}.{code & 0x1F:02d})")
    if len(data) < 4 + token_length:
        raise _Malformed("CoAP token truncated")
    if data[4 : 4 + token_length] != token:
        raise _Malformed("CoAP answer to another request (token)")
    at, number, options = 4 + token_length, 0, []
    while at < len(data) and data[at] != 0xFF:
        delta, length = data[at] >> 4, data[at] & 0x0F
        delta, at = _coap_extended(data, at + 1, delta)
        length, at = _coap_extended(data, at, length)
        if at + length > len(data):
            raise _Malformed("CoAP option truncated")
        number += delta
        options.append((number, data[at : at + length]))
        at += length
    payload = data[at + 1 :]
    return {"code": f"{code >> 5}.{code & 0x1F:02d}", "options": options, "payload": payload}


def _links(text: str) -> tuple[list[dict[str, str]], bool]:
    """The links of a CoRE link-format document, and whether all of it was read."""
    links: list[dict[str, str]] = []
    at = 0
    while at < len(text) and text[at:].strip():
        match = _LINK.match(text, at)
        if match is None or match.end() == at:
            return links, False
        link = {"path": match.group(1)}
        for name, value in _LINK_PARAM.findall(match.group(2)):
            link[name] = value.strip().strip('"')
        links.append(link)
        at = match.end()
    return links, True


def _coap_resource(link: dict[str, str]) -> str:
    rt = link.get("rt")
    return f"{link['path']} (rt={rt})" if rt else link["path"]


async def coap_probe(address: str, port: int = 5683, timeout: float = 2.0) -> Result | None:
    """GET /.well-known/core: the resources a CoAP server lists to anyone who asks."""
    message_id, token = int.from_bytes(os.urandom(2), "big"), os.urandom(4)
    datagrams = await _exchange(
        address, port, _coap_request(message_id, token), timeout,
        counts=lambda d: not _coap_empty_ack(d),
    )  # fmt: skip
    if not datagrams:
        return None
    answers = [d for d in datagrams if not _coap_empty_ack(d)]
    if not answers:
        return _unknown(port, "coap", datagrams[0], "an empty ACK, and no separate response")
    try:
        answer = _coap_answer(answers[0], message_id, token)
    except _Malformed as exc:
        return _unknown(port, "coap", answers[0], str(exc))
    details: dict[str, Any] = {"code": answer["code"]}
    service = Service(port, "udp", "coap", details=details)
    options = dict(answer["options"])
    text = answer["payload"].decode("utf-8", "replace")
    links: list[dict[str, str]] = []
    if answer["code"].startswith("2.") and text:
        links, whole = _links(text)
        if not whole:
            details["malformed"] = [f"link format unreadable after {len(links)} links"]
        details["resources"] = links[:LIST_LIMIT]
        block = options.get(_COAP_BLOCK2)
        if block is not None and int.from_bytes(block, "big") & 0x08:
            details["more_resources"] = True  # the first block of a block-wise transfer
    elif text:
        details["diagnostic"] = text[:200]
    if _COAP_CONTENT_FORMAT in options:
        details["content_format"] = int.from_bytes(options[_COAP_CONTENT_FORMAT], "big")
    for link in links:
        version = _IMPL_VERSION.search(link["path"]) if link.get("rel") == "impl-info" else None
        if version:
            service.product, service.version = version.group(1), version.group(2)
    resources = [_coap_resource(link) for link in links if link.get("rel") != "impl-info"]
    listed = ", ".join(resources[:LIST_LIMIT]) or "no resources"
    service.banner = f"CoAP {answer['code']}: {listed}"[:200]
    finding = Finding(
        "coap-exposed", Severity.MEDIUM,
        "CoAP server answers unauthenticated requests",
        f"GET /.well-known/core answered {answer['code']}: {listed}",
        "Restrict CoAP to the LAN (firewall UDP 5683 at the gateway) or require DTLS "
        "(coaps, UDP 5684) with per-device credentials.",
        port, "udp",
    )  # fmt: skip
    return service, [finding]


# -- SSDP / UPnP (UPnP Device Architecture 1.1 §1.3) -----------------------------------------------

_SSDP_SEARCH = (
    b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n'
    b"ST: ssdp:all\r\nUSER-AGENT: iotsec-scan UPnP/1.1\r\n\r\n"
)
_SERVER_PRODUCT = re.compile(r"([A-Za-z][\w.-]*)/(\d[\w.-]*)")


def _ssdp_headers(data: bytes) -> dict[str, str]:
    """The headers of an SSDP search response, names in upper case."""
    head = data.decode("latin-1").split("\r\n\r\n", 1)[0]
    lines = re.split(r"\r?\n", head)
    if not re.match(r"HTTP/1\.[01] 200\b", lines[0]):
        raise _Malformed(f"not an SSDP search response: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers.setdefault(name.strip().upper(), value.strip())
    return headers


async def ssdp_probe(address: str, port: int = 1900, timeout: float = 2.0) -> Result | None:
    """A unicast M-SEARCH for ``ssdp:all``: a UPnP stack answers with where its descriptions
    are, and those on ``address`` itself are fetched and read (see :mod:`engine.scan.upnp`)."""
    datagrams = await _exchange(
        address, port, _SSDP_SEARCH, timeout, any_port=True, more=lambda _: True
    )
    if not datagrams:
        return None
    answers, problems = [], []
    for data in datagrams:
        try:
            answers.append(_ssdp_headers(data))
        except _Malformed as exc:
            problems.append(str(exc))
            continue
        if not re.search(rb"\r?\n\r?\n", data):
            problems.append("SSDP answer cut short (no blank line after its headers)")
    if not answers:
        return _unknown(port, "ssdp", datagrams[0], problems[0])
    first = answers[0]
    server, location = first.get("SERVER", ""), first.get("LOCATION", "")
    details: dict[str, Any] = {
        "location": location,
        "server": server,
        "st": list(dict.fromkeys(a["ST"] for a in answers if "ST" in a))[:LIST_LIMIT],
        "usn": list(dict.fromkeys(a["USN"] for a in answers if "USN" in a))[:LIST_LIMIT],
    }
    locations = list(dict.fromkeys(a["LOCATION"] for a in answers if "LOCATION" in a))
    if len(locations) > 1:
        details["locations"] = locations[:LIST_LIMIT]
    if problems:
        details["malformed"] = problems
    # Several root devices (a router's IGD beside its media server) each have their own.
    descriptions = await asyncio.gather(*(upnp.fetch_description(address, url, timeout)
                                          for url in locations[:DESCRIPTION_LIMIT]))  # fmt: skip
    if descriptions:
        details["descriptions"] = [description.to_json() for description in descriptions]
    service = Service(port, "udp", "upnp", details=details)
    products = [(n, v) for n, v in _SERVER_PRODUCT.findall(server) if n.upper() != "UPNP"]
    if products:
        service.product, service.version = products[-1]
    # The model a description names says more than the UPnP stack in SERVER, which is kept.
    model = next((d.device for d in descriptions if d.device and d.device.product), None)
    if model is not None:
        service.product, service.version = model.product, model.model_number
    service.banner = f"{server} at {location}" if server else location
    findings = [Finding(
        "upnp-exposed", Severity.MEDIUM,
        "UPnP answers a unicast SSDP search",
        f"SERVER: {server}; LOCATION: {location}",
        "Disable UPnP on the device and on the gateway (or at least block UDP 1900 from outside "
        "the LAN): an answering SSDP stack amplifies reflected traffic and advertises the "
        "device's description and control URLs.",
        port, "udp",
    )]  # fmt: skip
    signs = {d.location: upnp.gateway_signs(d) for d in descriptions}
    if any(signs.values()):
        findings.append(Finding(
            "upnp-gateway", Severity.HIGH,
            "UPnP Internet gateway: any host on the LAN can open ports in its firewall",
            " | ".join(f"{url}: {'; '.join(shown)}" for url, shown in signs.items() if shown),
            "Disable UPnP IGD on the router, or restrict it (miniupnpd: secure_mode=yes and "
            "allow rules for the few hosts and ports that need it, then deny 0-65535 0.0.0.0/0 "
            "0-65535): AddPortMapping needs no password, so any program on any LAN host, malware "
            "included, can forward ports from the Internet to itself.",
            port, "udp",
        ))  # fmt: skip
    return service, findings


# -- SNMP (RFC 3416, BER of X.690: only what a GET of sysDescr needs) ------------------------------

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
_SNMP_V2C = 1
_GET_REQUEST, _GET_RESPONSE = 0xA0, 0xA2
_SNMP_EXCEPTIONS = {0x80: "noSuchObject", 0x81: "noSuchInstance", 0x82: "endOfMibView"}
_SNMP_ERRORS = {1: "tooBig", 2: "noSuchName", 3: "badValue", 4: "readOnly", 5: "genErr"}


def _ber(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _ber_int(value: int) -> bytes:
    return _ber(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _ber_oid(oid: str) -> bytes:
    arcs = [int(arc) for arc in oid.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return _ber(0x06, bytes(out))


def _tlv(data: bytes, at: int) -> tuple[int, bytes, int]:
    """The tag, content and end of the BER element at ``at``."""
    if at + 2 > len(data):
        raise _Malformed("BER element truncated")
    tag, first = data[at], data[at + 1]
    at += 2
    length = first
    if first & 0x80:
        size = first & 0x7F
        if not 0 < size <= 4 or at + size > len(data):
            raise _Malformed("BER length unreadable")
        length = int.from_bytes(data[at : at + size], "big")
        at += size
    if at + length > len(data):
        raise _Malformed("BER element truncated")
    return tag, data[at : at + length], at + length


def _expect(data: bytes, at: int, tag: int) -> tuple[bytes, int]:
    found, content, end = _tlv(data, at)
    if found != tag:
        raise _Malformed(f"BER tag 0x{found:02x} where 0x{tag:02x} was expected")
    return content, end


def _ber_value_int(content: bytes) -> int:
    if not content:
        raise _Malformed("empty BER integer")
    return int.from_bytes(content, "big", signed=True)


def _ber_value_oid(content: bytes) -> str:
    arcs, value = [], 0
    for byte in content:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not content or content[-1] & 0x80:
        raise _Malformed("BER object identifier truncated")
    top = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [top, arcs[0] - 40 * top, *arcs[1:]])


def _snmp_get(community: str, request_id: int, oid: str) -> bytes:
    binding = _ber(0x30, _ber_oid(oid) + _ber(0x05, b""))
    pdu = _ber(_GET_REQUEST, _ber_int(request_id) + _ber_int(0) + _ber_int(0)
               + _ber(0x30, binding))  # fmt: skip
    return _ber(0x30, _ber_int(_SNMP_V2C) + _ber(0x04, community.encode()) + pdu)


def _snmp_answer(data: bytes, request_id: int) -> dict[str, Any]:
    """The error status and first variable binding of a GetResponse to our request."""
    message, _ = _expect(data, 0, 0x30)
    _, at = _expect(message, 0, 0x02)
    _, at = _expect(message, at, 0x04)
    pdu, _ = _expect(message, at, _GET_RESPONSE)
    answered_id, at = _expect(pdu, 0, 0x02)
    if _ber_value_int(answered_id) != request_id:
        raise _Malformed("SNMP answer to another request (request-id)")
    status, at = _expect(pdu, at, 0x02)
    _, at = _expect(pdu, at, 0x02)
    bindings, _ = _expect(pdu, at, 0x30)
    binding, _ = _expect(bindings, 0, 0x30)
    oid, at = _expect(binding, 0, 0x06)
    tag, value, _ = _tlv(binding, at)
    error = _ber_value_int(status)
    answer: dict[str, Any] = {"oid": _ber_value_oid(oid), "value": None, "error": ""}
    if error:
        answer["error"] = _SNMP_ERRORS.get(error, f"error-status {error}")
    elif tag in _SNMP_EXCEPTIONS:
        answer["error"] = _SNMP_EXCEPTIONS[tag]
    elif tag == 0x04:
        answer["value"] = value.decode("utf-8", "replace")
    else:
        answer["value"] = value.hex()
    return answer


async def _snmp_ask(address: str, port: int, timeout: float,
                    community: str) -> tuple[bytes, dict[str, Any] | str] | None:  # fmt: skip
    """The answer to a GET of sysDescr with ``community``, or why it could not be read."""
    request_id = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
    datagrams = await _exchange(address, port, _snmp_get(community, request_id, SYS_DESCR), timeout)
    if not datagrams:
        return None
    try:
        return datagrams[0], _snmp_answer(datagrams[0], request_id)
    except _Malformed as exc:
        return datagrams[0], str(exc)


async def snmp_probe(
    address: str,
    port: int = 161,
    timeout: float = 2.0,
    *,
    community: str = "public",
    try_private: bool = False,
) -> Result | None:
    """A v2c GET of sysDescr.0 with ``community`` (and "private" with ``try_private``): an agent
    answers only a community it accepts."""
    communities = list(dict.fromkeys([community, *(["private"] if try_private else [])]))
    asked = await asyncio.gather(*(_snmp_ask(address, port, timeout, c) for c in communities))
    accepted = {c: a[1] for c, a in zip(communities, asked, strict=True)
                if a is not None and isinstance(a[1], dict)}  # fmt: skip
    problems = [f"community {c!r}: {a[1]}" for c, a in zip(communities, asked, strict=True)
                if a is not None and isinstance(a[1], str)]  # fmt: skip
    if not accepted:
        answered = next((a for a in asked if a is not None), None)
        return None if answered is None else _unknown(port, "snmp", answered[0], problems[0])
    descr = next((a["value"] for a in accepted.values() if a["value"]), "")
    details: dict[str, Any] = {"version": "v2c", "communities": list(accepted), "sysDescr": descr}
    if problems:
        details["malformed"] = problems
    service = Service(port, "udp", "snmp", banner=descr[:200], details=details)
    findings = []
    for name, answer in accepted.items():
        seen = f"sysDescr: {answer['value']}" if answer["value"] else f"sysDescr: {answer['error']}"
        findings.append(Finding(
            "snmp-default-community", Severity.HIGH,
            f'SNMP answers the community "{name}"',
            f'community "{name}" accepted (SNMPv2c GET {SYS_DESCR}); {seen}',
            "Disable SNMP v1/v2c on the device, or at least change the community to a secret "
            "one and restrict it to the management host; use SNMPv3 with authPriv.",
            port, "udp",
        ))  # fmt: skip
    return service, findings


# -- mDNS (RFC 6762 §6.7 unicast query, DNS-SD RFC 6763 §9 service enumeration) --------------------

SERVICES = "_services._dns-sd._udp.local"
_DNS_TYPES = {1: "A", 2: "NS", 5: "CNAME", 12: "PTR", 16: "TXT", 28: "AAAA", 33: "SRV", 47: "NSEC"}
_PTR, _A, _AAAA = 12, 1, 28


def _dns_query(query_id: int, name: str, qtype: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack(">6H", query_id, 0, 1, 0, 0, 0) + labels + struct.pack(">HH", qtype, 1)


def _dns_name(data: bytes, at: int) -> tuple[str, int]:
    """The (possibly compressed) name at ``at`` and where the record goes on after it."""
    labels: list[str] = []
    end, jumps, size = None, 0, 0
    while True:
        if at >= len(data):
            raise _Malformed("DNS name truncated")
        length = data[at]
        if length & 0xC0 == 0xC0:
            if at + 1 >= len(data):
                raise _Malformed("DNS name pointer truncated")
            jumps += 1
            if jumps > 64:
                raise _Malformed("DNS name pointers loop")
            end = at + 2 if end is None else end
            at = (length & 0x3F) << 8 | data[at + 1]
            continue
        if length & 0xC0:
            raise _Malformed("DNS label of an unknown type")
        at += 1
        if length == 0:
            return ".".join(labels), at if end is None else end
        if at + length > len(data):
            raise _Malformed("DNS label truncated")
        size += length + 1
        if size > 255:
            raise _Malformed("DNS name too long")
        labels.append(data[at : at + length].decode("utf-8", "replace"))
        at += length


def _dns_rdata(data: bytes, at: int, size: int, rtype: int) -> str:
    rdata = data[at : at + size]
    if rtype in (2, 5, _PTR):
        return _dns_name(data, at)[0]
    if rtype == _A and size == 4:
        return str(ipaddress.IPv4Address(rdata))
    if rtype == _AAAA and size == 16:
        return str(ipaddress.IPv6Address(rdata))
    if rtype == 33 and size >= 7:
        return f"{_dns_name(data, at + 6)[0]}:{int.from_bytes(rdata[4:6], 'big')}"
    if rtype == 16:
        strings, i = [], 0
        while i < size:
            strings.append(rdata[i + 1 : i + 1 + rdata[i]].decode("utf-8", "replace"))
            i += 1 + rdata[i]
        return " ".join(s for s in strings if s)
    return f"{size} bytes"


def _dns_records(data: bytes, query_id: int) -> list[tuple[str, int, str]]:
    """The records (name, type, data) of every section of a DNS response to our query."""
    if len(data) < 12:
        raise _Malformed("DNS header truncated")
    answered_id, flags, questions, *counts = struct.unpack_from(">6H", data)
    if not flags & 0x8000:
        raise _Malformed("not a DNS response")
    # Multicast-style answers carry id 0 (RFC 6762 §18.1) even when sent to a unicast query.
    if answered_id not in (query_id, 0):
        raise _Malformed("DNS answer to another query (id)")
    at = 12
    for _ in range(questions):
        at = _dns_name(data, at)[1] + 4
        if at > len(data):
            raise _Malformed("DNS question truncated")
    records = []
    for _ in range(sum(counts)):
        name, at = _dns_name(data, at)
        if at + 10 > len(data):
            raise _Malformed("DNS record truncated")
        rtype, _, _, size = struct.unpack_from(">HHIH", data, at)
        at += 10
        if at + size > len(data):
            raise _Malformed("DNS record data truncated")
        records.append((name, rtype, _dns_rdata(data, at, size, rtype)))
        at += size
    return records


async def mdns_probe(address: str, port: int = 5353, timeout: float = 2.0) -> Result | None:
    """A unicast query for the DNS-SD service types (``_services._dns-sd._udp.local`` PTR)."""
    query_id = int.from_bytes(os.urandom(2), "big") | 1
    datagrams = await _exchange(address, port, _dns_query(query_id, SERVICES, _PTR), timeout)
    if not datagrams:
        return None
    try:
        records = _dns_records(datagrams[0], query_id)
    except _Malformed as exc:
        return _unknown(port, "mdns", datagrams[0], str(exc))
    types = [r[2] for r in records if r[1] == _PTR and r[0].lower() == SERVICES]
    types = list(dict.fromkeys(types))
    hosts: dict[str, list[str]] = {}
    for name, rtype, value in records:
        if rtype in (_A, _AAAA) and (name in hosts or len(hosts) < LIST_LIMIT):
            hosts.setdefault(name, []).append(value)
    shown = [f"{n} {_DNS_TYPES.get(t, t)} {v}" for n, t, v in records]
    details: dict[str, Any] = {"services": types[:LIST_LIMIT], "hosts": hosts,
                               "records": shown[:LIST_LIMIT]}  # fmt: skip
    said = f"services: {', '.join(types)}" if types else f"records: {'; '.join(shown[:10])}"
    if not records:
        said = "an empty answer"
    service = Service(port, "udp", "mdns", banner=said[:200], details=details)
    finding = Finding(
        "mdns-exposed", Severity.LOW,
        "mDNS answers a unicast query",
        said,
        "Answer mDNS only on the local link: block UDP 5353 from other networks at the gateway "
        "and on the device, and turn mDNS off where nothing needs discovery.",
        port, "udp",
    )  # fmt: skip
    return service, [finding]


# -- NTP (RFC 5905 client mode; mode 6 control, RFC 1305 appendix B) -------------------------------

_READVAR = 2
_NTP_VARIABLE = re.compile(r'\s*([\w.-]+)=("[^"]*"|[^,]*)')
_NTP_VERSION = re.compile(r"^(\S+)\s+([^\s@]+)")


def _ntp_client_request(nonce: bytes) -> bytes:
    """Version 4, mode 3; the transmit timestamp is a nonce the server echoes as origin."""
    return bytes([0x23]) + bytes(39) + nonce


def _ntp_server_answer(data: bytes, nonce: bytes) -> dict[str, Any]:
    if len(data) < 48:
        raise _Malformed("NTP answer truncated")
    if data[0] & 0x7 != 4:
        raise _Malformed(f"not an NTP server answer (mode {data[0] & 0x7})")
    if data[24:32] != nonce:
        raise _Malformed("NTP answer to another request (origin timestamp)")
    stratum, refid = data[1], data[12:16]
    if stratum <= 1:  # a kiss code or a reference clock's name
        shown = refid.rstrip(b"\0").decode("ascii", "replace")
    else:
        shown = str(ipaddress.IPv4Address(refid))
    return {"version": (data[0] >> 3) & 0x7, "leap": data[0] >> 6, "stratum": stratum,
            "refid": shown}  # fmt: skip


def _ntp_control_request(sequence: int) -> bytes:
    """Version 2, mode 6, READVAR of the system variables (association 0)."""
    return struct.pack(">BBHHHHH", 0x16, _READVAR, sequence, 0, 0, 0, 0)


def _ntp_fragment(data: bytes, sequence: int) -> tuple[int, bytes, bool, bool]:
    """Offset, data, "more follow" and "error" of one fragment of a mode 6 answer."""
    if len(data) < 12:
        raise _Malformed("NTP control header truncated")
    flags = data[1]
    if data[0] & 0x7 != 6 or not flags & 0x80 or flags & 0x1F != _READVAR:
        raise _Malformed("not an NTP control answer")
    answered, _, _, offset, count = struct.unpack_from(">HHHHH", data, 2)
    if answered != sequence:
        raise _Malformed("NTP control answer to another request (sequence)")
    if 12 + count > len(data):
        raise _Malformed("NTP control data truncated")
    return offset, data[12 : 12 + count], bool(flags & 0x20), bool(flags & 0x40)


def _ntp_fragments(datagrams: list[bytes], sequence: int) -> tuple[bytes, bool, bool, str]:
    """The data of a mode 6 answer put together, whether it all came, whether the server said
    it was an error, and the first fragment that could not be read."""
    pieces, last, error, problem = {}, None, False, ""
    for data in datagrams:
        try:
            offset, part, more, failed = _ntp_fragment(data, sequence)
        except _Malformed as exc:
            problem = problem or str(exc)
            continue
        pieces[offset] = part
        error = error or failed
        if not more:
            last = offset
    if not pieces:
        raise _Malformed(problem)
    joined, at = b"", 0
    while at in pieces:
        joined += pieces[at]
        if at == last or not pieces[at]:
            break
        at += len(pieces[at])
    return joined, last is not None and at == last, error, problem


def _ntp_more(sequence: int) -> Callable[[list[bytes]], bool]:
    def more(datagrams: list[bytes]) -> bool:
        try:
            return not _ntp_fragments(datagrams, sequence)[1]
        except _Malformed:
            return False

    return more


async def ntp_probe(address: str, port: int = 123, timeout: float = 2.0) -> Result | None:
    """A client request (mode 3) and a READVAR control query (mode 6), side by side."""
    nonce, sequence = os.urandom(8), int.from_bytes(os.urandom(2), "big")
    client, control = await asyncio.gather(
        _exchange(address, port, _ntp_client_request(nonce), timeout),
        _exchange(address, port, _ntp_control_request(sequence), timeout,
                  more=_ntp_more(sequence)),
    )  # fmt: skip
    if not client and not control:
        return None
    details: dict[str, Any] = {}
    problems: list[str] = []
    server: dict[str, Any] | None = None
    if client:
        try:
            server = _ntp_server_answer(client[0], nonce)
            details.update(server)
        except _Malformed as exc:
            problems.append(f"mode 3: {exc}")
    variables: dict[str, str] = {}
    controlled = False  # a mode 6 answer came that could be read
    if control:
        try:
            data, whole, error, problem = _ntp_fragments(control, sequence)
        except _Malformed as exc:
            problems.append(f"mode 6: {exc}")
        else:
            controlled = True
            if problem:
                problems.append(f"mode 6: {problem}")
            if error:
                details["control"] = "refused (error bit set)"
            else:
                if not whole:
                    problems.append("mode 6: not all fragments came")
                text = data.decode("latin-1")
                variables = {k: v.strip('"') for k, v in _NTP_VARIABLE.findall(text)}
    if server is None and not controlled:
        return _unknown(port, "ntp", (client or control)[0], "; ".join(problems))
    if problems:
        details["malformed"] = problems
    service = Service(port, "udp", "ntp", details=details)
    said = (f"NTPv{server['version']} stratum {server['stratum']}, refid {server['refid']}"
            if server else "NTP")  # fmt: skip
    findings = []
    if variables:
        details["variables"] = dict(list(variables.items())[:LIST_LIMIT])
        release = variables.get("version", "")
        software = _NTP_VERSION.match(release)
        if software:
            service.product, service.version = software.group(1), software.group(2)
        said += f"; {release}" if release else ""
        shown = release or ", ".join(f"{k}={v}" for k, v in variables.items())
        findings.append(Finding(
            "ntp-mode6", Severity.MEDIUM,
            "NTP answers mode 6 (control) queries",
            f"READVAR answered: {shown}",
            "Add `restrict default noquery` (and `restrict -6 default noquery`) to ntp.conf: "
            "mode 6 answers are larger than the query, so they amplify reflected traffic, and "
            "they tell anyone the server's version.",
            port, "udp",
        ))  # fmt: skip
    service.banner = said[:200]
    return service, findings


# -- all of them -----------------------------------------------------------------------------------


def _probes(community: str, try_private: bool) -> dict[int, Probe]:
    snmp = functools.partial(snmp_probe, community=community, try_private=try_private)
    return {5683: coap_probe, 1900: ssdp_probe, 161: snmp, 5353: mdns_probe, 123: ntp_probe}


async def _identify(address: str, port: int, timeout: float,
                    probes: dict[int, Probe]) -> Result | None:  # fmt: skip
    """The probe of a well-known port, or on another port every probe, the first answer read
    winning over ones that were not."""
    chosen = [probes[port]] if port in probes else list(probes.values())
    results = await asyncio.gather(*(probe(address, port, timeout) for probe in chosen))
    answered = [r for r in results if r is not None]
    return next((r for r in answered if r[0].service), answered[0] if answered else None)


async def probe_udp(
    address: str,
    ports: list[int] | None = None,
    *,
    timeout: float = 2.0,
    community: str = "public",
    try_private: bool = False,
) -> list[Result]:
    """Probe ``ports`` (:data:`DEFAULT_PORTS` if None) in parallel: for each one that answers,
    what answers there and its findings, in the order of ``ports``."""
    _literal(address)  # a name is refused before anything is sent
    wanted = list(dict.fromkeys(DEFAULT_PORTS if ports is None else ports))
    for port in wanted:
        if not 0 < port < 65536:
            raise ValueError(f"UDP port {port} is outside 1-65535")
    probes = _probes(community, try_private)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(port: int) -> Result | None:
        async with limit:
            return await _identify(address, port, timeout, probes)

    results = await asyncio.gather(*(one(port) for port in wanted))
    return [r for r in results if r is not None]
