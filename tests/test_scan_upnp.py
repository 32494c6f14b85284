"""Fetching the UPnP description an SSDP answer points at, on loopback only: the search is
answered with the headers of the MiniUPnPd router in the recorded capture, its LOCATION moved to
a small HTTP server here. A router's gateway description gives the upnp-gateway finding; a
media renderer's is described without it; a LOCATION on another address, a name or https is
never contacted; malformed, oversized, DTD-declaring, cut-short and silent answers are reported
with the reason, never raised."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from scapy.layers.inet import UDP
from scapy.utils import rdpcap

from engine.model import Severity
from engine.scan import upnp
from engine.scan.findings import Finding, Service
from engine.scan.udp.ssdp import ssdp_probe
from engine.scan.upnp import Description, fetch_description, gateway_signs
from tests.test_capture_decode import pcap
from tests.test_scan_udp import serving, ssdp_answers

pytestmark = pytest.mark.timeout(60)

IGD = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
WAN_IP = "urn:schemas-upnp-org:service:WANIPConnection:1"


def notify_header(name: bytes) -> str:
    """A header of the NOTIFY the router sent in the recorded capture."""
    notify = bytes(rdpcap(str(pcap("sv_ssdp.pcap")))[0][UDP].payload)
    found = re.search(rb"(?im)^" + name + rb":\s*([^\r\n]*)", notify)
    assert found, f"no {name!r} in the capture"
    return found.group(1).decode()


SERVER = notify_header(b"SERVER")  # "UPnP/Tomato 1.28.7500 ... MiniUPnPd/1.6"
UUID = notify_header(b"USN").split("::", 1)[0]


def service_xml(kind: str, ident: str, path: str) -> str:
    return (f"<service><serviceType>urn:schemas-upnp-org:service:{kind}</serviceType>"
            f"<serviceId>urn:upnp-org:serviceId:{ident}</serviceId>"
            f"<controlURL>/ctl/{path}</controlURL><eventSubURL>/evt/{path}</eventSubURL>"
            f"<SCPDURL>/{path}.xml</SCPDURL></service>")  # fmt: skip


# As MiniUPnPd 1.6 lays out its rootDesc.xml, with the router's identity from the capture.
GATEWAY_XML = f"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">
<specVersion><major>1</major><minor>0</minor></specVersion>
<device>
<deviceType>{IGD}</deviceType>
<friendlyName>Tomato router</friendlyName>
<manufacturer>Tomato</manufacturer>
<manufacturerURL>http://www.polarcloud.com/tomato/</manufacturerURL>
<modelDescription>Tomato router</modelDescription>
<modelName>Tomato router</modelName>
<modelNumber>1.28.7500 MIPSR2Toastman-RT K26 USB Ext</modelNumber>
<modelURL>http://www.polarcloud.com/tomato/</modelURL>
<serialNumber>00000000</serialNumber>
<UDN>{UUID}</UDN>
<serviceList>{service_xml("Layer3Forwarding:1", "L3Forwarding1", "L3F")}</serviceList>
<deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<friendlyName>WANDevice</friendlyName>
<manufacturer>MiniUPnP</manufacturer>
<manufacturerURL>http://miniupnp.free.fr/</manufacturerURL>
<modelDescription>WAN Device</modelDescription>
<modelName>WAN Device</modelName>
<modelNumber>20110729</modelNumber>
<serialNumber>00000000</serialNumber>
<UDN>{UUID[:-1]}1</UDN>
<UPC>000000000000</UPC>
<serviceList>{service_xml("WANCommonInterfaceConfig:1", "WANCommonIFC1", "CmnIfCfg")}</serviceList>
<deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<friendlyName>WANConnectionDevice</friendlyName>
<manufacturer>MiniUPnP</manufacturer>
<modelName>MiniUPnPd</modelName>
<modelNumber>20110729</modelNumber>
<UDN>{UUID[:-1]}2</UDN>
<serviceList>{service_xml("WANIPConnection:1", "WANIPConn1", "IPConn")}</serviceList>
</device></deviceList>
</device></deviceList>
<presentationURL>http://192.168.1.1:80/</presentationURL>
</device>
</root>
"""

# A network audio player (DLNA renderer); the DLNA element has a prefix of its own.
RENDERER_SERVICES = "".join(
    f"""
      <service>
        <serviceType>urn:schemas-upnp-org:service:{name}:1</serviceType>
        <serviceId>urn:upnp-org:serviceId:{name}</serviceId>
        <controlURL>/upnp/control/{name}</controlURL>
        <eventSubURL>/upnp/event/{name}</eventSubURL>
        <SCPDURL>/upnp/{name}.xml</SCPDURL>
      </service>"""
    for name in ("RenderingControl", "ConnectionManager", "AVTransport")
)
RENDERER_XML = f"""<?xml version="1.0" encoding="utf-8"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" xmlns:dlna="urn:schemas-dlna-org:device-1-0">
  <specVersion><major>1</major><minor>0</minor></specVersion>
  <device>
    <dlna:X_DLNADOC>DMR-1.50</dlna:X_DLNADOC>
    <deviceType>urn:schemas-upnp-org:device:MediaRenderer:1</deviceType>
    <friendlyName>Living Room Speaker</friendlyName>
    <manufacturer>Acme Audio</manufacturer>
    <manufacturerURL>http://www.acme-audio.example/</manufacturerURL>
    <modelDescription>Wireless network speaker</modelDescription>
    <modelName>StreamAmp 200</modelName>
    <modelNumber>SA-200</modelNumber>
    <serialNumber>SA200-0042-7781</serialNumber>
    <UDN>uuid:5f9ec1b3-ed59-79bb-4530-00a0de8c1a20</UDN>
    <presentationURL>/web/index.html</presentationURL>
    <serviceList>{RENDERER_SERVICES}
    </serviceList>
  </device>
</root>
"""


def ok(body: str | bytes, *, length: bool = True) -> bytes:
    """A 200 answer as MiniUPnPd sends it (with the capture's SERVER), ``body`` as is."""
    data = body.encode() if isinstance(body, str) else body
    head = (f'HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset="utf-8"\r\nConnection: close\r\n'
            f"Server: {SERVER}\r\nExt:\r\n")  # fmt: skip
    if length:
        head += f"Content-Length: {len(data)}\r\n"
    return head.encode() + b"\r\n" + data


@contextlib.asynccontextmanager
async def http_server(
    answer: bytes | Callable[[], bytes] | None, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback HTTP server that keeps each request's head and answers it with ``answer``
    (None: says nothing until the client gives up) and closes."""
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            requests.append(await reader.readuntil(b"\r\n\r\n"))
            if answer is None:
                await reader.read()  # until the client closes
            else:
                writer.write(answer() if callable(answer) else answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, 0)
    try:
        yield server.sockets[0].getsockname()[1], requests
    finally:
        server.close()
        await server.wait_closed()


def ssdp_pointing_at(location: str) -> Callable[[bytes], list[bytes]]:
    """The captured router's answers to M-SEARCH, its LOCATION replaced by ``location``."""
    answers = ssdp_answers()
    return lambda request: [re.sub(rb"(?im)^(location:[ \t]*)[^\r\n]*", rb"\g<1>" +
                                   location.encode(), d) for d in answers(request)]  # fmt: skip


@dataclass
class Searched:
    """What an SSDP search of a loopback device found, and what its HTTP server was asked."""

    location: str
    port: int  # the SSDP responder's
    service: Service
    findings: list[Finding]
    requests: list[bytes]


async def search(
    answer: bytes,
    url: str = "http://127.0.0.1:{port}/rootDesc.xml",
    *,
    server_host: str = "127.0.0.1",
    scanned: str = "127.0.0.1",
) -> Searched:
    """Probe ``scanned``, whose SSDP answer gives ``url`` (``{port}`` the HTTP server's, which
    listens on ``server_host`` and answers ``answer``) as its LOCATION."""
    async with http_server(answer, host=server_host) as (http_port, requests):
        location = url.format(port=http_port)
        async with serving(ssdp_pointing_at(location), host=scanned) as (port, _):
            service, findings = await ssdp_probe(scanned, port, 2.0)
        await asyncio.sleep(0.05)  # a connection made would have been served by now
    return Searched(location, port, service, findings, requests)


# -- through the SSDP probe ------------------------------------------------------------------------


async def test_a_gateway_description_gives_the_upnp_gateway_finding() -> None:
    found = await search(ok(GATEWAY_XML))
    location, service, findings = found.location, found.service, found.findings
    [request] = found.requests
    assert request.startswith(b"GET /rootDesc.xml HTTP/1.0\r\nHost: 127.0.0.1\r\n")
    assert service.details["location"] == location
    [description] = service.details["descriptions"]
    assert description["location"] == location and "problem" not in description
    assert (description["deviceType"], description["friendlyName"]) == (IGD, "Tomato router")
    assert (description["manufacturer"], description["UDN"]) == ("Tomato", UUID)
    assert description["services"] == [{
        "serviceType": "urn:schemas-upnp-org:service:Layer3Forwarding:1",
        "controlURL": "/ctl/L3F"}]  # fmt: skip
    [wan] = description["devices"]
    [connection] = wan["devices"]
    assert connection["deviceType"] == "urn:schemas-upnp-org:device:WANConnectionDevice:1"
    assert connection["services"] == [{"serviceType": WAN_IP, "controlURL": "/ctl/IPConn"}]
    assert (service.product, service.version) == (
        "Tomato router", "1.28.7500 MIPSR2Toastman-RT K26 USB Ext")  # fmt: skip
    assert service.details["server"] == SERVER  # the UPnP stack is still there
    exposed, gateway = findings
    assert exposed.kind == "upnp-exposed"
    assert (gateway.kind, gateway.severity, gateway.port, gateway.proto) == (
        "upnp-gateway", Severity.HIGH, found.port, "udp")  # fmt: skip
    assert gateway.evidence == (f"{location}: deviceType {IGD}; serviceType {WAN_IP} at "
                                "controlURL /ctl/IPConn")  # fmt: skip
    assert "Disable UPnP IGD" in gateway.fix and "AddPortMapping" in gateway.fix
    assert gateway.to_json()["evidence"] == gateway.evidence  # plain text, nothing to escape


async def test_a_media_renderer_is_described_but_is_no_gateway() -> None:
    found = await search(ok(RENDERER_XML), "http://127.0.0.1:{port}/description.xml")
    assert len(found.requests) == 1
    [description] = found.service.details["descriptions"]
    assert description == {
        "location": found.location,
        "deviceType": "urn:schemas-upnp-org:device:MediaRenderer:1",
        "friendlyName": "Living Room Speaker",
        "manufacturer": "Acme Audio",
        "manufacturerURL": "http://www.acme-audio.example/",
        "modelName": "StreamAmp 200",
        "modelNumber": "SA-200",
        "modelDescription": "Wireless network speaker",
        "serialNumber": "SA200-0042-7781",
        "UDN": "uuid:5f9ec1b3-ed59-79bb-4530-00a0de8c1a20",
        "presentationURL": "/web/index.html",
        "services": [
            {"serviceType": f"urn:schemas-upnp-org:service:{name}:1",
             "controlURL": f"/upnp/control/{name}"}
            for name in ("RenderingControl", "ConnectionManager", "AVTransport")
        ],
    }  # fmt: skip
    assert (found.service.product, found.service.version) == ("Acme Audio StreamAmp 200", "SA-200")
    assert [f.kind for f in found.findings] == ["upnp-exposed"]


async def test_over_ipv6_the_same_address_is_fetched() -> None:
    found = await search(ok(GATEWAY_XML), "http://[::1]:{port}/rootDesc.xml", server_host="::1",
                         scanned="::1")  # fmt: skip
    assert found.requests[0].startswith(b"GET /rootDesc.xml HTTP/1.0\r\nHost: [::1]\r\n")
    assert found.service.details["descriptions"][0]["deviceType"] == IGD
    assert [f.kind for f in found.findings] == ["upnp-exposed", "upnp-gateway"]


@pytest.mark.parametrize(
    ("url", "server_host", "reason"),
    [
        ("http://127.0.0.2:{port}/rootDesc.xml", "127.0.0.2",
         "not fetched: LOCATION points at 127.0.0.2, not at 127.0.0.1 which answered"),
        ("http://[::1]:{port}/rootDesc.xml", "::1", "not fetched: LOCATION points at ::1"),
        ("http://localhost:{port}/rootDesc.xml", "127.0.0.1",
         "not fetched: LOCATION names the host 'localhost', and names are not resolved"),
        ("https://127.0.0.1:{port}/rootDesc.xml", "127.0.0.1",
         "not fetched: LOCATION is https (only plain http descriptions are read)"),
        ("ftp://127.0.0.1:{port}/rootDesc.xml", "127.0.0.1", "not fetched: LOCATION is not an"),
        ("http://127.0.0.1:{port}/root Desc.xml", "127.0.0.1", "path has characters"),
    ],
)  # fmt: skip
async def test_a_location_elsewhere_is_never_contacted(
    url: str, server_host: str, reason: str
) -> None:
    found = await search(ok(GATEWAY_XML), url, server_host=server_host)
    assert found.requests == []
    [description] = found.service.details["descriptions"]
    assert description["location"] == found.location and reason in description["problem"]
    assert "deviceType" not in description
    assert (found.service.product, found.service.version) == ("MiniUPnPd", "1.6")  # SERVER's
    assert [f.kind for f in found.findings] == ["upnp-exposed"]


async def test_an_unreadable_description_keeps_the_search_answer() -> None:
    found = await search(ok(BILLION_LAUGHS))
    assert len(found.requests) == 1
    [description] = found.service.details["descriptions"]
    assert "DOCTYPE" in description["problem"] and "deviceType" not in description
    assert [f.kind for f in found.findings] == ["upnp-exposed"]


# -- what cannot be read ---------------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE root [\n<!ENTITY lol0 "lol">\n'
    + "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">\n' for n in range(1, 10))
    + "]>\n<root><device><friendlyName>&lol9;</friendlyName></device></root>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE root [<!ENTITY leak SYSTEM "file:///etc/passwd">]>\n'
    "<root><device><friendlyName>&leak;</friendlyName></device></root>"
)
OVERSIZED = GATEWAY_XML.replace("<serviceList>", "<!--" + "x" * 70_000 + "--><serviceList>", 1)


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (ok(BILLION_LAUGHS), "declares a DOCTYPE"),
        (ok(EXTERNAL_ENTITY), "declares a DOCTYPE"),
        (ok(GATEWAY_XML[: len(GATEWAY_XML) // 2]), "XML unreadable: unclosed token"),
        (ok("<root><device><friendlyName>x</device></root>"), "XML unreadable: mismatched tag"),
        (ok('<?xml version="1.0" encoding="shift_jis"?><root/>'), "XML unreadable"),
        (ok("<html><body>It works!</body></html>"),
         "not a UPnP description: its root element is <html>"),
        (ok("<root><specVersion/></root>"), "not a UPnP description: no <device>"),
        (ok(OVERSIZED), "description of 7"),  # its Content-Length says so
        (ok(OVERSIZED, length=False), "description larger than 64 KiB: not read"),
        (ok(GATEWAY_XML)[:-200], "description cut short"),
        (ok(GATEWAY_XML)[:40], "HTTP answer cut short in its headers"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
         "the description was not served: 'HTTP/1.1 404 Not Found'"),
        (b"SSH-2.0-dropbear_2019.78\r\n", "not an HTTP answer: 'SSH-2.0-dropbear_2019.78"),
        (b"", "the connection closed without an answer"),
        (b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n", "HTTP headers longer than"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "Content-Length unreadable"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         "chunked description unreadable"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n<root>",
         "chunked description cut short"),
    ],
    ids=["billion-laughs", "external-entity", "xml-cut-short", "mismatched-tag",
         "multibyte-encoding", "html", "no-device", "oversized", "oversized-no-length",
         "body-cut-short", "head-cut-short", "404", "not-http", "closed", "long-headers",
         "bad-length", "bad-chunk", "chunks-cut-short"],
)  # fmt: skip
async def test_what_cannot_be_read_is_reported(answer: bytes, problem: str) -> None:
    async with http_server(answer) as (http_port, requests):
        location = f"http://127.0.0.1:{http_port}/rootDesc.xml"
        description = await fetch_description("127.0.0.1", location, 2.0)
    assert len(requests) == 1
    assert (description.location, description.device) == (location, None)
    assert problem in description.problem


async def test_a_silent_server_or_a_closed_port_is_reported() -> None:
    async with http_server(None) as (http_port, requests):
        location = f"http://127.0.0.1:{http_port}/rootDesc.xml"
        silent = await fetch_description("127.0.0.1", location, 0.3)
    assert len(requests) == 1 and silent.problem == "no whole description within 0.3 s"
    closed = await fetch_description("127.0.0.1", location, 1.0)  # the server is gone
    assert closed.device is None and closed.problem.startswith("fetch failed: ")


async def test_a_chunked_description_is_read() -> None:
    body = GATEWAY_XML.encode()
    chunks = [body[at : at + 700] for at in range(0, len(body), 700)]
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed
    async with http_server(answer) as (http_port, _):
        description = await fetch_description("127.0.0.1", f"http://127.0.0.1:{http_port}/", 2.0)
    assert description.problem == "" and description.device is not None
    assert description.device.friendly_name == "Tomato router"
    assert gateway_signs(description)[-1] == f"serviceType {WAN_IP} at controlURL /ctl/IPConn"


async def test_a_port_mapping_service_alone_makes_a_gateway() -> None:
    """A gateway that does not say it is an IGD, but offers WANPPPConnection somewhere."""
    ppp = (GATEWAY_XML.replace(IGD, "urn:schemas-upnp-org:device:Basic:1")
           .replace("WANIPConnection:1", "WANPPPConnection:1")
           .replace("/ctl/IPConn", "/ctl/PPPConn"))  # fmt: skip
    async with http_server(ok(ppp)) as (http_port, _):
        description = await fetch_description("127.0.0.1", f"http://127.0.0.1:{http_port}/", 2.0)
    assert gateway_signs(description) == [
        "serviceType urn:schemas-upnp-org:service:WANPPPConnection:1 at controlURL /ctl/PPPConn"
    ]
    assert gateway_signs(Description("http://127.0.0.1/", problem="not read")) == []


async def test_nesting_and_lists_are_bounded() -> None:
    services = "".join(service_xml(f"Thing{n}:1", f"Thing{n}", f"t{n}") for n in range(40))
    nested = "<device><deviceType>deep</deviceType><deviceList>" * 200
    nested += "</deviceList></device>" * 200
    wide = "".join(f"<device><friendlyName>d{n}</friendlyName></device>" for n in range(60))
    xml = (f"<root><device><serviceList>{services}</serviceList><deviceList>{nested}{wide}"
           "</deviceList></device></root>")  # fmt: skip
    async with http_server(ok(xml)) as (http_port, _):
        description = await fetch_description("127.0.0.1", f"http://127.0.0.1:{http_port}/", 2.0)
    device = description.device
    assert device is not None and len(device.services) == upnp.SERVICE_LIMIT
    assert len(list(device.walk())) == upnp.DEVICE_LIMIT
    levels, level = 0, [device]
    while level:
        levels, level = levels + 1, [child for d in level for child in d.devices]
    assert levels == upnp.DEPTH_LIMIT
    for left_out in ("services after the first 32", "nested deeper than 4 levels",
                     "devices after the first 32"):  # fmt: skip
        assert left_out in description.problem


async def test_mangled_descriptions_never_raise() -> None:
    """Two hundred truncations and corruptions of the gateway's answer: each gives a
    description or a problem, never an exception."""
    rng = random.Random(1900)
    good = ok(GATEWAY_XML)

    def mangled() -> bytes:
        data = bytearray(good)
        if rng.random() < 0.5:
            return bytes(data[: rng.randrange(len(data))])
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)

    async with http_server(mangled) as (http_port, requests):
        location = f"http://127.0.0.1:{http_port}/rootDesc.xml"
        results = []
        for _ in range(4):
            results += await asyncio.gather(
                *(fetch_description("127.0.0.1", location, 2.0) for _ in range(50))
            )
    assert len(requests) == 200
    assert all(isinstance(r, Description) for r in results)
    assert any(r.device is None and r.problem for r in results)
    assert all(r.device is not None or r.problem for r in results)
