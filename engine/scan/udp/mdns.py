"""mDNS (RFC 6762 §6.7 unicast query, DNS-SD RFC 6763 §9 service enumeration): a unicast query
for the service types a device announces, its DNS answer read here, and the finding that it
answers beyond the local link."""

from __future__ import annotations

import ipaddress
import os
import struct
from typing import Any

from engine.model import Severity
from engine.scan.findings import Finding, Service
from engine.scan.udp.transport import LIST_LIMIT, Malformed, Result, exchange, unknown

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
            raise Malformed("DNS name truncated")
        length = data[at]
        if length & 0xC0 == 0xC0:
            if at + 1 >= len(data):
                raise Malformed("DNS name pointer truncated")
            jumps += 1
            if jumps > 64:
                raise Malformed("DNS name pointers loop")
            end = at + 2 if end is None else end
            at = (length & 0x3F) << 8 | data[at + 1]
            continue
        if length & 0xC0:
            raise Malformed("DNS label of an unknown type")
        at += 1
        if length == 0:
            return ".".join(labels), at if end is None else end
        if at + length > len(data):
            raise Malformed("DNS label truncated")
        size += length + 1
        if size > 255:
            raise Malformed("DNS name too long")
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
        raise Malformed("DNS header truncated")
    answered_id, flags, questions, *counts = struct.unpack_from(">6H", data)
    if not flags & 0x8000:
        raise Malformed("not a DNS response")
    # Multicast-style answers carry id 0 (RFC 6762 §18.1) even when sent to a unicast query.
    if answered_id not in (query_id, 0):
        raise Malformed("DNS answer to another query (id)")
    at = 12
    for _ in range(questions):
        at = _dns_name(data, at)[1] + 4
        if at > len(data):
            raise Malformed("DNS question truncated")
    records = []
    for _ in range(sum(counts)):
        name, at = _dns_name(data, at)
        if at + 10 > len(data):
            raise Malformed("DNS record truncated")
        rtype, _, _, size = struct.unpack_from(">HHIH", data, at)
        at += 10
        if at + size > len(data):
            raise Malformed("DNS record data truncated")
        records.append((name, rtype, _dns_rdata(data, at, size, rtype)))
        at += size
    return records


async def mdns_probe(address: str, port: int = 5353, timeout: float = 2.0) -> Result | None:
    """A unicast query for the DNS-SD service types (``_services._dns-sd._udp.local`` PTR)."""
    query_id = int.from_bytes(os.urandom(2), "big") | 1
    datagrams = await exchange(address, port, _dns_query(query_id, SERVICES, _PTR), timeout)
    if not datagrams:
        return None
    try:
        records = _dns_records(datagrams[0], query_id)
    except Malformed as exc:
        return unknown(port, "mdns", datagrams[0], str(exc))
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
