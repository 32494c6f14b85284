"""CoAP (RFC 7252, link format RFC 6690): a confirmable GET of /.well-known/core, built and
parsed here, and the finding that a CoAP server answers anyone."""

from __future__ import annotations

import os
import re
from typing import Any

from engine.model import Severity
from engine.scan.findings import Finding, Service
from engine.scan.udp.transport import LIST_LIMIT, Malformed, Result, exchange, unknown

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
    raise Malformed("CoAP option header truncated or reserved (15)")


def _coap_answer(data: bytes, message_id: int, token: bytes) -> dict[str, Any]:
    """The code, options and payload of a CoAP response to our request."""
    if len(data) < 4:
        raise Malformed("CoAP header truncated")
    version, kind, token_length = data[0] >> 6, (data[0] >> 4) & 0x3, data[0] & 0x0F
    if version != 1 or token_length > 8:
        raise Malformed("not a CoAP message (version or token length)")
    code = data[1]
    if kind == 3 and code == 0 and int.from_bytes(data[2:4], "big") == message_id:
        return {"code": "reset", "options": [], "payload": b""}
    if code >> 5 not in (2, 4, 5):
        raise Malformed(f"not a CoAP response (code {code >> 5}.{code & 0x1F:02d})")
    if len(data) < 4 + token_length:
        raise Malformed("CoAP token truncated")
    if data[4 : 4 + token_length] != token:
        raise Malformed("CoAP answer to another request (token)")
    at, number, options = 4 + token_length, 0, []
    while at < len(data) and data[at] != 0xFF:
        delta, length = data[at] >> 4, data[at] & 0x0F
        delta, at = _coap_extended(data, at + 1, delta)
        length, at = _coap_extended(data, at, length)
        if at + length > len(data):
            raise Malformed("CoAP option truncated")
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
    datagrams = await exchange(
        address, port, _coap_request(message_id, token), timeout,
        counts=lambda d: not _coap_empty_ack(d),
    )  # fmt: skip
    if not datagrams:
        return None
    answers = [d for d in datagrams if not _coap_empty_ack(d)]
    if not answers:
        return unknown(port, "coap", datagrams[0], "an empty ACK, and no separate response")
    try:
        answer = _coap_answer(answers[0], message_id, token)
    except Malformed as exc:
        return unknown(port, "coap", answers[0], str(exc))
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
