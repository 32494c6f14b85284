"""The description a UPnP device publishes at its SSDP LOCATION (UPnP Device Architecture 1.1
§2): fetched over plain HTTP from the address that answered the search and from no other host,
bounded in size and time, and read without a DTD; and the signs that the device is an Internet
gateway whose port mappings any LAN host may add."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

from engine.scan.probes import http_get

SIZE_LIMIT = 64 * 1024  # bytes of description read; a real one is a few KiB
HEAD_LIMIT = 8 * 1024  # bytes of HTTP status line and headers
DEPTH_LIMIT = 4  # levels of devices read, the root's included (an IGD has three)
DEVICE_LIMIT = 32  # devices read in all
SERVICE_LIMIT = 32  # services read per device
TEXT_LIMIT = 256  # characters kept of each field
# The chunk sizes and line ends that a chunked answer adds to its body.
_FRAMING = 4096

# Each field's UPnP element, and the attribute of Device that keeps it.
FIELDS = {
    "deviceType": "device_type",
    "friendlyName": "friendly_name",
    "manufacturer": "manufacturer",
    "manufacturerURL": "manufacturer_url",
    "modelName": "model_name",
    "modelNumber": "model_number",
    "modelDescription": "model_description",
    "serialNumber": "serial_number",
    "UDN": "udn",
    "presentationURL": "presentation_url",
}
_GATEWAY = re.compile(r"urn:schemas-upnp-org:device:InternetGatewayDevice:\d+", re.I)
# The services whose AddPortMapping action opens the gateway's firewall to whoever asks.
_PORT_MAPPING = re.compile(r"urn:schemas-upnp-org:service:WAN(?:IP|PPP)Connection:\d+", re.I)


class _Unreadable(Exception):
    """Why a description was not fetched or not read: its problem, never raised to the caller."""


@dataclass(frozen=True)
class UpnpService:
    service_type: str
    control_url: str


@dataclass(frozen=True)
class Device:
    """A device of a description, with the devices embedded in it."""

    device_type: str = ""
    friendly_name: str = ""
    manufacturer: str = ""
    manufacturer_url: str = ""
    model_name: str = ""
    model_number: str = ""
    model_description: str = ""
    serial_number: str = ""
    udn: str = ""
    presentation_url: str = ""
    services: tuple[UpnpService, ...] = ()
    devices: tuple[Device, ...] = ()

    def walk(self) -> Iterator[Device]:
        """This device and every device embedded in it, at any depth."""
        yield self
        for device in self.devices:
            yield from device.walk()

    @property
    def product(self) -> str:
        """The model name, after the maker's name unless it already starts with it."""
        maker = self.manufacturer.split(" ", 1)[0]
        if not self.model_name or self.model_name.lower().startswith(maker.lower()):
            return self.model_name or self.manufacturer
        return f"{self.manufacturer} {self.model_name}"

    def to_json(self) -> dict[str, Any]:
        """The fields present, under their UPnP element names."""
        out: dict[str, Any] = {name: getattr(self, attr) for name, attr in FIELDS.items()
                               if getattr(self, attr)}  # fmt: skip
        if self.services:
            out["services"] = [{"serviceType": s.service_type, "controlURL": s.control_url}
                               for s in self.services]  # fmt: skip
        if self.devices:
            out["devices"] = [device.to_json() for device in self.devices]
        return out


@dataclass(frozen=True)
class Description:
    """What was read at ``location``: the root device, or None, and the problem that kept it
    (or part of it) from being read."""

    location: str
    device: Device | None = None
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"location": self.location}
        if self.device is not None:
            out.update(self.device.to_json())
        if self.problem:
            out["problem"] = self.problem
        return out


def gateway_signs(description: Description) -> list[str]:
    """What shows that the device is an Internet gateway that maps ports for anyone on the LAN,
    as plain text: each InternetGatewayDevice type and each WANIPConnection or WANPPPConnection
    service with its control URL, in any of its devices. Empty for any other device."""
    if description.device is None:
        return []
    signs = []
    for device in description.device.walk():
        if _GATEWAY.fullmatch(device.device_type):
            signs.append(f"deviceType {device.device_type}")
        for service in device.services:
            if _PORT_MAPPING.fullmatch(service.service_type):
                control = service.control_url or "(none)"
                signs.append(f"serviceType {service.service_type} at controlURL {control}")
    return signs


async def fetch_description(address: str, location: str, timeout: float = 3.0) -> Description:
    """GET the description at ``location`` from ``address`` and read it — only when the URL is
    plain http and its host is ``address`` itself, an IP literal (no name is resolved and no
    other host is contacted) — within ``timeout`` seconds and :data:`SIZE_LIMIT` bytes. Never
    raises for what the device sends: what was not fetched or not read has a problem. An
    ``address`` that is not an IP literal is the caller's error (ValueError)."""
    try:
        port, target = _target(address, location)
        async with asyncio.timeout(timeout):
            body = await _get(address, port, target)
        return _read(location, body)
    except _Unreadable as exc:
        return Description(location, problem=str(exc))
    except TimeoutError:  # before OSError, of which it is a kind
        return Description(location, problem=f"no whole description within {timeout:g} s")
    except OSError as exc:
        return Description(location, problem=f"fetch failed: {exc}")


# -- which URL is fetched --------------------------------------------------------------------------


def _target(address: str, location: str) -> tuple[int, str]:
    """The port and request target of ``location``, if fetching it contacts only ``address``."""
    answered = ipaddress.ip_address(address.split("%", 1)[0])
    try:
        url = urlsplit(location)
        port = url.port
    except ValueError as exc:
        raise _Unreadable(f"not fetched: LOCATION unreadable ({exc})") from None
    if url.scheme == "https":
        raise _Unreadable("not fetched: LOCATION is https (only plain http descriptions are read)")
    if url.scheme != "http":
        raise _Unreadable("not fetched: LOCATION is not an http URL")
    host = url.hostname or ""
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        # A name could resolve anywhere: fetching it would let the device point the scanner
        # at a host outside the scope.
        raise _Unreadable(f"not fetched: LOCATION names the host {host!r}, and names are not "
                          "resolved") from None  # fmt: skip
    if literal != answered:
        raise _Unreadable(f"not fetched: LOCATION points at {literal}, not at {answered} which "
                          "answered the search (no other host is contacted)")  # fmt: skip
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    if not re.fullmatch(r"/[!-~]*", target):
        raise _Unreadable("not fetched: LOCATION's path has characters an HTTP request line "
                          "cannot carry")  # fmt: skip
    return port or 80, target


# -- HTTP ------------------------------------------------------------------------------------------


async def _get(address: str, port: int, target: str) -> bytes:
    """The body of the answer to GET ``target`` on ``address``."""
    # The connection is made to ``address``, never to the URL's host: they are equal anyway.
    reader, writer = await asyncio.open_connection(address, port, limit=HEAD_LIMIT)
    try:
        writer.write(http_get(address, path=target))
        await writer.drain()
        return await _body(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _body(reader: asyncio.StreamReader) -> bytes:
    """The body of a 200 answer within :data:`SIZE_LIMIT`, however it is framed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _Unreadable(f"HTTP headers longer than {HEAD_LIMIT // 1024} KiB") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _Unreadable("the connection closed without an answer") from None
        if not exc.partial.startswith(b"HTTP/"):
            raise _Unreadable(f"not an HTTP answer: {_start(exc.partial)!r}") from None
        raise _Unreadable("HTTP answer cut short in its headers") from None
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].strip()
    if not status.startswith("HTTP/"):
        raise _Unreadable(f"not an HTTP answer: {status[:80]!r}")
    if not re.fullmatch(r"HTTP/1\.[01] 200(?: .*)?", status):
        raise _Unreadable(f"the description was not served: {status[:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _chunked(reader)
    length = headers.get("content-length")
    if length is None:
        return await _until_closed(reader)
    if not re.fullmatch(r"[0-9]{1,12}", length):
        raise _Unreadable(f"Content-Length unreadable: {length[:20]!r}")
    if int(length) > SIZE_LIMIT:
        raise _Unreadable(f"description of {length} bytes, larger than {SIZE_LIMIT // 1024} "
                          "KiB: not read")  # fmt: skip
    try:
        return await reader.readexactly(int(length))
    except asyncio.IncompleteReadError as exc:
        raise _Unreadable(f"description cut short: {len(exc.partial)} of {length} "
                          "bytes") from None  # fmt: skip


def _start(data: bytes) -> str:
    return data[:40].decode("latin-1")


def _too_large() -> _Unreadable:
    return _Unreadable(f"description larger than {SIZE_LIMIT // 1024} KiB: not read")


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """A body without a length: all that comes until the server closes the connection."""
    data = b""
    while chunk := await reader.read(4096):
        data += chunk
        if len(data) > SIZE_LIMIT:
            raise _too_large()
    return data


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    """A chunked body (sent by some servers even to an HTTP/1.0 request), up to its last
    chunk: the server may keep the connection open after it."""
    data = b""
    while (body := _unchunk(data)) is None:
        chunk = await reader.read(4096)
        if not chunk:
            raise _Unreadable("chunked description cut short")
        data += chunk
        if len(data) > SIZE_LIMIT + _FRAMING:
            raise _too_large()
    return body


def _unchunk(data: bytes) -> bytes | None:
    """The body that chunked ``data`` carries; None while its last chunk has not arrived."""
    body, at = b"", 0
    while True:
        end = data.find(b"\r\n", at)
        if end < 0:
            return None
        size = data[at:end].split(b";", 1)[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size):
            raise _Unreadable(f"chunked description unreadable: chunk size {_start(size)!r}")
        if int(size, 16) == 0:
            return body
        at = end + 2 + int(size, 16)
        if at + 2 > len(data):
            return None
        body += data[end + 2 : at]
        at += 2


# -- XML -------------------------------------------------------------------------------------------


def _tree(data: bytes) -> Element:
    """``data`` as a tree whose tags are local names (devices get namespaces wrong, and the
    fields are known by name alone), refusing any DTD."""
    builder = TreeBuilder()
    parser = expat.ParserCreate()

    def doctype(*_: object) -> None:
        # Entities can be declared only in a DTD: refusing every DOCTYPE refuses external
        # entities (files, other hosts) and expansion bombs alike, whatever expat's version.
        raise _Unreadable("the description declares a DOCTYPE (entities could expand without "
                          "bound or reach other hosts): refused")  # fmt: skip

    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = lambda tag, attrs: builder.start(_local(tag), attrs)
    parser.EndElementHandler = lambda tag: builder.end(_local(tag))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except (expat.ExpatError, LookupError, ValueError) as exc:  # the last two: its encoding
        raise _Unreadable(f"XML unreadable: {exc}") from None
    return builder.close()


def _local(tag: str) -> str:
    return tag.rpartition(":")[2]


def _read(location: str, data: bytes) -> Description:
    root = _tree(data)
    if root.tag != "root":
        raise _Unreadable(f"not a UPnP description: its root element is <{root.tag[:40]}>")
    element = _child(root, "device")
    if element is None:
        raise _Unreadable("not a UPnP description: no <device> in its <root>")
    reader = _DeviceReader()
    device = reader.device(element, 1)
    return Description(location, device, "; ".join(dict.fromkeys(reader.left_out)))


def _child(element: Element | None, name: str) -> Element | None:
    return None if element is None else next((c for c in element if c.tag == name), None)


def _children(element: Element | None, name: str) -> list[Element]:
    return [] if element is None else [c for c in element if c.tag == name]


def _text(element: Element, name: str) -> str:
    child = _child(element, name)
    return "" if child is None else (child.text or "").strip()[:TEXT_LIMIT]


class _DeviceReader:
    """Reads a device and those embedded in it within the limits, noting what it left out."""

    def __init__(self) -> None:
        self.devices = 0
        self.left_out: list[str] = []

    def device(self, element: Element, depth: int) -> Device:
        self.devices += 1
        listed = _children(_child(element, "serviceList"), "service")
        if len(listed) > SERVICE_LIMIT:
            self.left_out.append(f"services after the first {SERVICE_LIMIT} of a device not read")
        services = tuple(UpnpService(_text(s, "serviceType"), _text(s, "controlURL"))
                         for s in listed[:SERVICE_LIMIT])  # fmt: skip
        embedded = []
        for child in _children(_child(element, "deviceList"), "device"):
            if depth >= DEPTH_LIMIT:
                self.left_out.append(f"devices nested deeper than {DEPTH_LIMIT} levels not read")
                break
            if self.devices >= DEVICE_LIMIT:
                self.left_out.append(f"devices after the first {DEVICE_LIMIT} not read")
                break
            embedded.append(self.device(child, depth + 1))
        fields = {attr: _text(element, name) for name, attr in FIELDS.items()}
        return Device(**fields, services=services, devices=tuple(embedded))
