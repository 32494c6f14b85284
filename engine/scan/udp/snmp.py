"""SNMP (RFC 3416, BER of X.690: only what a GET of sysDescr needs): a v2c GET with the
communities a device should not accept, built and parsed here, and a finding per accepted one."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from engine.model import Severity
from engine.scan.findings import Finding, Service
from engine.scan.udp.transport import Malformed, Result, exchange, unknown

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
        raise Malformed("BER element truncated")
    tag, first = data[at], data[at + 1]
    at += 2
    length = first
    if first & 0x80:
        size = first & 0x7F
        if not 0 < size <= 4 or at + size > len(data):
            raise Malformed("BER length unreadable")
        length = int.from_bytes(data[at : at + size], "big")
        at += size
    if at + length > len(data):
        raise Malformed("BER element truncated")
    return tag, data[at : at + length], at + length


def _expect(data: bytes, at: int, tag: int) -> tuple[bytes, int]:
    found, content, end = _tlv(data, at)
    if found != tag:
        raise Malformed(f"BER tag 0x{found:02x} where 0x{tag:02x} was expected")
    return content, end


def _ber_value_int(content: bytes) -> int:
    if not content:
        raise Malformed("empty BER integer")
    return int.from_bytes(content, "big", signed=True)


def _ber_value_oid(content: bytes) -> str:
    arcs, value = [], 0
    for byte in content:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not content or content[-1] & 0x80:
        raise Malformed("BER object identifier truncated")
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
        raise Malformed("SNMP answer to another request (request-id)")
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
    datagrams = await exchange(address, port, _snmp_get(community, request_id, SYS_DESCR), timeout)
    if not datagrams:
        return None
    try:
        return datagrams[0], _snmp_answer(datagrams[0], request_id)
    except Malformed as exc:
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
        return None if answered is None else unknown(port, "snmp", answered[0], problems[0])
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
