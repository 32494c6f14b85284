"""SSDP / UPnP (UPnP Device Architecture 1.1 §1.3): a unicast M-SEARCH, the descriptions its
answers point at (read by :mod:`engine.scan.upnp`), and the findings that follow from them."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from engine.model import Severity
from engine.scan import upnp
from engine.scan.findings import Finding, Service
from engine.scan.udp.transport import LIST_LIMIT, Malformed, Result, exchange, unknown

DESCRIPTION_LIMIT = 4  # UPnP descriptions fetched from one device (one per distinct LOCATION)
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
        raise Malformed(f"not an SSDP search response: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers.setdefault(name.strip().upper(), value.strip())
    return headers


async def ssdp_probe(address: str, port: int = 1900, timeout: float = 2.0) -> Result | None:
    """A unicast M-SEARCH for ``ssdp:all``: a UPnP stack answers with where its descriptions
    are, and those on ``address`` itself are fetched and read (see :mod:`engine.scan.upnp`)."""
    datagrams = await exchange(
        address, port, _SSDP_SEARCH, timeout, any_port=True, more=lambda _: True
    )
    if not datagrams:
        return None
    answers, problems = [], []
    for data in datagrams:
        try:
            answers.append(_ssdp_headers(data))
        except Malformed as exc:
            problems.append(str(exc))
            continue
        if not re.search(rb"\r?\n\r?\n", data):
            problems.append("SSDP answer cut short (no blank line after its headers)")
    if not answers:
        return unknown(port, "ssdp", datagrams[0], problems[0])
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
