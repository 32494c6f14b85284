"""NTP (RFC 5905 client mode; mode 6 control, RFC 1305 appendix B): a client request and a
READVAR control query, built and parsed here, and the finding that mode 6 is answered."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import struct
from collections.abc import Callable
from typing import Any

from engine.model import Severity
from engine.scan.findings import Finding, Service
from engine.scan.udp.transport import LIST_LIMIT, Malformed, Result, exchange, unknown

_READVAR = 2
_NTP_VARIABLE = re.compile(r'\s*([\w.-]+)=("[^"]*"|[^,]*)')
_NTP_VERSION = re.compile(r"^(\S+)\s+([^\s@]+)")


def _ntp_client_request(nonce: bytes) -> bytes:
    """Version 4, mode 3; the transmit timestamp is a nonce the server echoes as origin."""
    return bytes([0x23]) + bytes(39) + nonce


def _ntp_server_answer(data: bytes, nonce: bytes) -> dict[str, Any]:
    if len(data) < 48:
        raise Malformed("NTP answer truncated")
    if data[0] & 0x7 != 4:
        raise Malformed(f"not an NTP server answer (mode {data[0] & 0x7})")
    if data[24:32] != nonce:
        raise Malformed("NTP answer to another request (origin timestamp)")
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
        raise Malformed("NTP control header truncated")
    flags = data[1]
    if data[0] & 0x7 != 6 or not flags & 0x80 or flags & 0x1F != _READVAR:
        raise Malformed("not an NTP control answer")
    answered, _, _, offset, count = struct.unpack_from(">HHHHH", data, 2)
    if answered != sequence:
        raise Malformed("NTP control answer to another request (sequence)")
    if 12 + count > len(data):
        raise Malformed("NTP control data truncated")
    return offset, data[12 : 12 + count], bool(flags & 0x20), bool(flags & 0x40)


def _ntp_fragments(datagrams: list[bytes], sequence: int) -> tuple[bytes, bool, bool, str]:
    """The data of a mode 6 answer put together, whether it all came, whether the server said
    it was an error, and the first fragment that could not be read."""
    pieces, last, error, problem = {}, None, False, ""
    for data in datagrams:
        try:
            offset, part, more, failed = _ntp_fragment(data, sequence)
        except Malformed as exc:
            problem = problem or str(exc)
            continue
        pieces[offset] = part
        error = error or failed
        if not more:
            last = offset
    if not pieces:
        raise Malformed(problem)
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
        except Malformed:
            return False

    return more


async def ntp_probe(address: str, port: int = 123, timeout: float = 2.0) -> Result | None:
    """A client request (mode 3) and a READVAR control query (mode 6), side by side."""
    nonce, sequence = os.urandom(8), int.from_bytes(os.urandom(2), "big")
    client, control = await asyncio.gather(
        exchange(address, port, _ntp_client_request(nonce), timeout),
        exchange(address, port, _ntp_control_request(sequence), timeout,
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
        except Malformed as exc:
            problems.append(f"mode 3: {exc}")
    variables: dict[str, str] = {}
    controlled = False  # a mode 6 answer came that could be read
    if control:
        try:
            data, whole, error, problem = _ntp_fragments(control, sequence)
        except Malformed as exc:
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
        return unknown(port, "ntp", (client or control)[0], "; ".join(problems))
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
