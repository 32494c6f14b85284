"""Probing the IoT UDP services on loopback: the lab sensor's CoAP server (aiocoap), a real
snmpd, and responders whose answers are built by other implementations (aiocoap, scapy) or
were sent by real devices (the SSDP and mDNS captures in tests/data). Each service is named with its
findings and evidence; a closed or silent port gives nothing within the timeout; truncated and
mangled answers are noted in the details, never raised."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial

import aiocoap
import aiocoap.resource as resource
import pytest
from aiocoap.optiontypes import BlockOption
from scapy.asn1.asn1 import ASN1_STRING
from scapy.layers.dns import DNS, DNSRR, DNSRRSRV
from scapy.layers.inet import UDP
from scapy.layers.ntp import NTPControl, NTPHeader
from scapy.layers.snmp import SNMP, SNMPget, SNMPresponse, SNMPvarbind
from scapy.utils import rdpcap

from engine.lab.coap_device import Firmware, Temperature
from engine.model import Severity
from engine.scan.udp import transport as udp_probes
from engine.scan.udp.coap import coap_probe
from engine.scan.udp.mdns import mdns_probe
from engine.scan.udp.ntp import ntp_probe
from engine.scan.udp.probe import probe_udp
from engine.scan.udp.snmp import snmp_probe
from engine.scan.udp.ssdp import ssdp_probe
from tests.conftest import require_tool, wait_for
from tests.test_capture_decode import pcap

pytestmark = pytest.mark.timeout(30)

# Longer than 127 bytes, as many are: the agent's answer needs BER long-form lengths.
SYS_DESCR = (
    "Linux sensor 3.10.14 #1 PREEMPT Tue Mar 3 10:12:54 CST 2020 armv7l "
    "(IoT sensor firmware 2.1.0, build 20200303, board rev C)"
)
NTPD_VERSION = "ntpd 4.2.8p15@1.3728-o Wed Sep 23 11:46:38 UTC 2020 (1)"
NTP_VARIABLES = (
    f'version="{NTPD_VERSION}", processor="armv7l", system="Linux/4.14.98", leap=0, '
    "stratum=2, precision=-20, rootdelay=18.383, rootdisp=22.108, refid=192.0.2.10, "
    "reftime=0xe9a3b1c2.5a3b1c2d, clock=0xe9a3b3f0.1a2b3c4d, peer=4711, tc=10, mintc=3, "
    "offset=-0.116, frequency=-12.345, sys_jitter=0.251, clk_jitter=0.118, clk_wander=0.004"
)
Answer = Callable[[bytes], list[bytes]]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Responder(asyncio.DatagramProtocol):
    """A loopback UDP server: each request is kept and answered with what ``answer`` gives."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.requests.append(data)
        for reply in self.answer(data):
            self.transport.sendto(reply, addr)


@contextlib.asynccontextmanager
async def serving(answer: Answer, host: str = "127.0.0.1") -> AsyncIterator[tuple[int, Responder]]:
    loop = asyncio.get_running_loop()
    transport, responder = await loop.create_datagram_endpoint(
        lambda: Responder(answer), local_addr=(host, 0)
    )
    try:
        yield transport.get_extra_info("sockname")[1], responder
    finally:
        transport.close()


# -- the services ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lab_coap_server(core: bool = True) -> AsyncIterator[int]:
    """The lab sensor's resources (engine.lab.coap_device) served by aiocoap on loopback;
    without ``core``, no /.well-known/core."""
    root = resource.Site()
    if core:
        root.add_resource(
            [".well-known", "core"], resource.WKCResource(root.get_resources_as_linkheader)
        )
    root.add_resource(["sensors", "temperature"], Temperature())
    root.add_resource(["firmware"], Firmware())
    port = free_udp_port()
    context = await aiocoap.Context.create_server_context(root, bind=("127.0.0.1", port))
    try:
        yield port
    finally:
        await context.shutdown()


def coap_answer(request: bytes) -> list[bytes]:
    """A constrained device's piggybacked answer, encoded by aiocoap: the first block of a
    longer resource list (Block2, more to come)."""
    try:
        query = aiocoap.Message.decode(request)
    except Exception:  # a responder ignores what is not CoAP, whatever aiocoap makes of it
        return []
    if query.code != aiocoap.GET or query.opt.uri_path != (".well-known", "core"):
        return []
    links = b'</door>;rt="lock";if="core.a",</light>;title="a, b"'
    reply = aiocoap.Message(code=aiocoap.CONTENT, content_format=40, payload=links)
    reply.mtype, reply.mid, reply.token = aiocoap.ACK, query.mid, query.token
    reply.opt.block2 = BlockOption.BlockwiseTuple(0, True, 6)
    return [reply.encode()]


def ssdp_answers() -> Answer:
    """A MiniUPnPd router answering M-SEARCH ssdp:all for its root device and gateway device,
    with the headers of the NOTIFY it sent in the recorded capture."""
    notify = bytes(rdpcap(str(pcap("sv_ssdp.pcap")))[0][UDP].payload)
    kept = [line for line in notify.split(b"\r\n")[1:]
            if not line.upper().startswith((b"HOST:", b"NTS:"))]  # fmt: skip
    root = b"\r\n".join([b"HTTP/1.1 200 OK", b"EXT:",
                         *(b"ST:" + line[3:] if line.upper().startswith(b"NT:") else line
                           for line in kept)])  # fmt: skip
    gateway_type = b"urn:schemas-upnp-org:device:InternetGatewayDevice:1"
    gateway = root.replace(b"ST: upnp:rootdevice", b"ST: " + gateway_type).replace(
        b"::upnp:rootdevice", b"::" + gateway_type
    )

    def answer(request: bytes) -> list[bytes]:
        search = request.startswith(b"M-SEARCH * HTTP/1.1\r\n") and b"ssdp:discover" in request
        return [root, gateway] if search and b"\r\nST: ssdp:all\r\n" in request else []

    return answer


def snmp_answer(request: bytes, *, other_id: bool = False) -> list[bytes]:
    """An agent (scapy's encoder) that answers a GET with the community "public" (with
    ``other_id``, as if to another request)."""
    try:
        query = SNMP(request)
    except Exception:
        return []
    if query.community.val != b"public" or not isinstance(query.PDU, SNMPget):
        return []
    binding = SNMPvarbind(oid=query.PDU.varbindlist[0].oid, value=ASN1_STRING(SYS_DESCR))
    pdu = SNMPresponse(id=query.PDU.id.val + other_id, varbindlist=[binding])
    reply = SNMP(version=query.version, community=query.community, PDU=pdu)
    return [bytes(reply)]


def mdns_answer(request: bytes) -> list[bytes]:
    """A device with CoAP and a web page answering as RFC 6762 §6.7 says (id and question
    echoed), its names compressed (scapy's encoder)."""
    try:
        query = DNS(request)
    except Exception:
        return []
    if query.qr or not query.qd or query.qd[0].qname != b"_services._dns-sd._udp.local.":
        return []
    enumeration = "_services._dns-sd._udp.local"
    reply = DNS(
        id=query.id, qr=1, aa=1, qd=query.qd,
        an=[DNSRR(rrname=enumeration, type="PTR", rdata="_coap._udp.local"),
            DNSRR(rrname=enumeration, type="PTR", rdata="_http._tcp.local")],
        ar=[DNSRRSRV(rrname="sensor._coap._udp.local", target="sensor-7.local", port=5683),
            DNSRR(rrname="sensor-7.local", type="A", rdata="127.0.0.1"),
            DNSRR(rrname="sensor-7.local", type="TXT", rdata=["fw=2.1.0", "model=S7"])],
    ).compress()  # fmt: skip
    return [bytes(reply)]


def ntp_server(*, control: str = "variables", fragment: int = 200, gps: bool = False) -> Answer:
    """ntpd as shipped (scapy's encoder): stratum 2 from 192.0.2.10 (or stratum 1 from its own
    GPS clock) and its system variables to a READVAR in fragments of ``fragment`` bytes; with
    `restrict noquery` (``control="none"``) no mode 6 answer, or an error one."""

    def answer(request: bytes) -> list[bytes]:
        mode = request[0] & 0x7 if request else 0
        if mode == 3 and len(request) == 48:
            source = {"stratum": 1, "ref_id": b"GPS"} if gps else {"id": "192.0.2.10"}
            reply = bytearray(bytes(NTPHeader(version=4, mode=4, ref=3_920_000_000,
                                              recv=3_920_000_001, sent=3_920_000_001,
                                              **source)))  # fmt: skip
            reply[24:32] = request[40:48]  # the origin timestamp echoes the client's
            return [bytes(reply)]
        if mode == 6 and control != "none" and len(request) == 12:
            sequence = NTPControl(request).sequence
            if control == "error":
                return [bytes(NTPControl(response=1, err=1, op_code=2, sequence=sequence))]
            data = NTP_VARIABLES.encode()
            pieces = [data[at : at + fragment] for at in range(0, len(data), fragment)]
            return [bytes(NTPControl(response=1, more=int(i < len(pieces) - 1), op_code=2,
                                     sequence=sequence, offset=i * fragment, data=piece))
                    for i, piece in enumerate(pieces)]  # fmt: skip
        return []

    return answer


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real net-snmp agent on a loopback port with the read-only community "public"."""
    binary = require_tool("snmpd")
    directory = tmp_path_factory.mktemp("snmpd")
    config = directory / "agent.conf"
    # "interfaces" may read only the interfaces subtree (1.3.6.1.2.1.2), not sysDescr.
    config.write_text(f"rocommunity public 127.0.0.1\nrocommunity interfaces 127.0.0.1 "
                      f".1.3.6.1.2.1.2\nsysDescr {SYS_DESCR}\n")  # fmt: skip
    (directory / "persist").mkdir()  # where snmpd saves its state, not /var/lib/snmp
    log = directory / "snmpd.log"
    port = free_udp_port()
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(directory / "persist"), "MIBS": ""}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-f", "-Lo", "-C", "-c", str(config), f"udp:127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        # net-snmp logs its version once its sockets are open.
        wait_for(lambda: "NET-SNMP version" in log.read_text() or proc.poll() is not None,
                 "snmpd to start", timeout=10)  # fmt: skip
        assert proc.poll() is None, log.read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- each probe ------------------------------------------------------------------------------------


async def test_coap_lists_the_lab_sensors_resources() -> None:
    async with lab_coap_server() as port:
        service, findings = await coap_probe("127.0.0.1", port, 2.0)
    assert (service.port, service.proto, service.service) == (port, "udp", "coap")
    assert (service.details["code"], service.details["content_format"]) == ("2.05", 40)
    paths = [r["path"] for r in service.details["resources"]]
    assert {"/sensors/temperature", "/firmware", "/.well-known/core"} <= set(paths)
    assert service.product == "aiocoap" and service.version[0].isdigit()  # its rel=impl-info
    assert "/sensors/temperature" in service.banner
    [finding] = findings
    assert (finding.kind, finding.severity, finding.port, finding.proto) == (
        "coap-exposed", Severity.MEDIUM, port, "udp")  # fmt: skip
    assert "/sensors/temperature" in finding.evidence and "/firmware" in finding.evidence
    assert "DTLS" in finding.fix and "LAN" in finding.fix


async def test_coap_first_block_with_attributes() -> None:
    async with serving(coap_answer) as (port, _):
        service, findings = await coap_probe("127.0.0.1", port, 1.0)
    assert service.details["resources"] == [
        {"path": "/door", "rt": "lock", "if": "core.a"},
        {"path": "/light", "title": "a, b"},
    ]
    assert service.details["more_resources"] is True
    assert findings[0].evidence == "GET /.well-known/core answered 2.05: /door (rt=lock), /light"


async def test_coap_separate_response_after_an_empty_ack() -> None:
    def answer(request: bytes) -> list[bytes]:
        empty_ack = aiocoap.Message(code=aiocoap.EMPTY)
        empty_ack.mtype, empty_ack.mid = aiocoap.ACK, int.from_bytes(request[2:4], "big")
        empty_ack.token = b""
        return [empty_ack.encode(), *coap_answer(request)]

    async with serving(answer) as (port, _):
        service, _ = await coap_probe("127.0.0.1", port, 1.0)
    assert service.service == "coap" and len(service.details["resources"]) == 2


async def test_coap_without_a_resource_list_or_resetting() -> None:
    async with lab_coap_server(core=False) as port:
        service, findings = await coap_probe("127.0.0.1", port, 1.0)
    assert (service.service, service.details["code"]) == ("coap", "4.04")
    assert findings[0].evidence == "GET /.well-known/core answered 4.04: no resources"

    def reset(request: bytes) -> list[bytes]:
        return [bytes([0x70, 0x00]) + request[2:4]]  # RST, the request's message id

    async with serving(reset) as (port, _):
        service, _ = await coap_probe("127.0.0.1", port, 1.0)
    assert (service.service, service.details["code"]) == ("coap", "reset")


async def test_ssdp_unicast_search_finds_the_router() -> None:
    async with serving(ssdp_answers()) as (port, responder):
        service, findings = await ssdp_probe("127.0.0.1", port, 2.0)
    request = responder.requests[0].decode()
    assert request.startswith("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n")
    assert (service.service, service.product, service.version) == ("upnp", "MiniUPnPd", "1.6")
    assert service.details["location"] == "http://192.168.1.1:7406/rootDesc.xml"  # "lOCATION:"
    assert service.details["st"] == [
        "upnp:rootdevice", "urn:schemas-upnp-org:device:InternetGatewayDevice:1"]  # fmt: skip
    [finding] = findings
    assert (finding.kind, finding.severity) == ("upnp-exposed", Severity.MEDIUM)
    assert "UPnP" in finding.title and "unicast" in finding.title
    assert "MiniUPnPd/1.6" in finding.evidence
    assert "http://192.168.1.1:7406/rootDesc.xml" in finding.evidence
    assert "Disable UPnP" in finding.fix


async def test_snmp_default_community_on_a_real_agent(snmpd: int) -> None:
    service, findings = await snmp_probe("127.0.0.1", snmpd, 2.0)
    assert (service.service, service.details["sysDescr"]) == ("snmp", SYS_DESCR)
    assert service.details["communities"] == ["public"] and service.banner == SYS_DESCR
    [finding] = findings
    assert (finding.kind, finding.severity, finding.port) == (
        "snmp-default-community", Severity.HIGH, snmpd)  # fmt: skip
    assert '"public"' in finding.evidence and SYS_DESCR in finding.evidence
    assert "SNMPv3" in finding.fix


async def test_snmp_answers_only_the_community_it_has(snmpd: int) -> None:
    secret, secret_or_private, public_or_private = await asyncio.gather(
        snmp_probe("127.0.0.1", snmpd, 0.4, community="secret"),
        snmp_probe("127.0.0.1", snmpd, 0.4, community="secret", try_private=True),
        snmp_probe("127.0.0.1", snmpd, 0.4, try_private=True),
    )
    assert secret is None and secret_or_private is None
    service, findings = public_or_private
    assert service.details["communities"] == ["public"]
    assert [f.title for f in findings] == ['SNMP answers the community "public"']


async def test_snmp_community_without_sysdescr_in_its_view(snmpd: int) -> None:
    """The agent accepts the community but sysDescr is outside its view: the community is
    still readable, which is the finding."""
    service, findings = await snmp_probe("127.0.0.1", snmpd, 1.0, community="interfaces")
    assert (service.service, service.details["sysDescr"], service.banner) == ("snmp", "", "")
    assert findings[0].evidence.endswith("sysDescr: noSuchObject")


async def test_snmp_long_community_is_sent_intact() -> None:
    community = "c0mmunity-" * 12  # the message needs BER long-form lengths
    async with serving(lambda request: []) as (port, responder):
        assert await snmp_probe("127.0.0.1", port, 0.2, community=community) is None
    request = SNMP(responder.requests[0])
    assert request.community.val == community.encode()
    assert request.PDU.varbindlist[0].oid.val == "1.3.6.1.2.1.1.1.0"


async def test_mdns_service_types_from_a_compressed_answer() -> None:
    async with serving(mdns_answer) as (port, responder):
        service, findings = await mdns_probe("127.0.0.1", port, 2.0)
    assert b"\xc0" in mdns_answer(responder.requests[0])[0]  # names really are compressed
    assert service.service == "mdns"
    assert service.details["services"] == ["_coap._udp.local", "_http._tcp.local"]
    assert service.details["hosts"] == {"sensor-7.local": ["127.0.0.1"]}
    assert "sensor._coap._udp.local SRV sensor-7.local:5683" in service.details["records"]
    assert "sensor-7.local TXT fw=2.1.0 model=S7" in service.details["records"]
    [finding] = findings
    assert (finding.kind, finding.severity) == ("mdns-exposed", Severity.LOW)
    assert finding.evidence == "services: _coap._udp.local, _http._tcp.local"


async def test_mdns_answer_captured_from_a_real_host() -> None:
    """The answer a host multicast in the recorded capture (id 0, compressed names), sent back
    to the query: its names and addresses are what the probe reports."""
    real = bytes(rdpcap(str(pcap("zeek_mdns.pcap")))[3][UDP].payload)
    async with serving(lambda request: [real]) as (port, _):
        service, findings = await mdns_probe("127.0.0.1", port, 2.0)
    addresses = service.details["hosts"]["johanna-QEMU-Virtual-Machine.local"]
    assert {"10.0.2.7", "fd52:429e:c03c:8235:883c:d6ff:fee1:4dc4"} <= set(addresses)
    assert service.details["services"] == [] and "malformed" not in service.details
    assert "johanna-QEMU-Virtual-Machine.local" in findings[0].evidence


async def test_ntp_server_with_mode6_open() -> None:
    async with serving(ntp_server()) as (port, _):
        service, findings = await ntp_probe("127.0.0.1", port, 2.0)
    assert service.service == "ntp"
    assert (service.details["stratum"], service.details["refid"]) == (2, "192.0.2.10")
    assert (service.product, service.version) == ("ntpd", "4.2.8p15")
    assert service.details["variables"]["clk_wander"] == "0.004"  # from the last fragment
    assert "malformed" not in service.details
    assert service.banner.startswith("NTPv4 stratum 2, refid 192.0.2.10; ntpd 4.2.8p15")
    [finding] = findings
    assert (finding.kind, finding.severity) == ("ntp-mode6", Severity.MEDIUM)
    assert NTPD_VERSION in finding.evidence
    assert "restrict default noquery" in finding.fix


async def test_ntp_server_with_noquery_has_no_finding() -> None:
    async with serving(ntp_server(control="none", gps=True)) as (port, _):
        service, findings = await ntp_probe("127.0.0.1", port, 0.3)
    assert (service.service, service.details["stratum"], findings) == ("ntp", 1, [])
    assert service.banner == "NTPv4 stratum 1, refid GPS"


async def test_ntp_mode6_refused_with_an_error_has_no_finding() -> None:
    async with serving(ntp_server(control="error")) as (port, _):
        service, findings = await ntp_probe("127.0.0.1", port, 0.3)
    assert (service.service, service.details["control"], findings) == (
        "ntp", "refused (error bit set)", [])  # fmt: skip


async def test_ipv6_loopback() -> None:
    async with (
        serving(ntp_server(), host="::1") as (ntp, _),
        serving(ssdp_answers(), host="::1") as (ssdp, _),
    ):
        results = await probe_udp("::1", [ntp, ssdp], timeout=0.5)
    assert [(s.service, [f.kind for f in fs]) for s, fs in results] == [
        ("ntp", ["ntp-mode6"]), ("upnp", ["upnp-exposed"])]  # fmt: skip


# -- all at once, silence and rubbish --------------------------------------------------------------


async def test_probe_udp_names_every_service_on_unusual_ports(snmpd: int) -> None:
    """Off their well-known ports every probe is tried, and the one that reads the answer
    names the service; a closed port gives nothing."""
    closed = free_udp_port()
    async with (
        lab_coap_server() as coap,
        serving(ssdp_answers()) as (ssdp, _),
        serving(mdns_answer) as (mdns, _),
        serving(ntp_server()) as (ntp, _),
    ):
        started = time.monotonic()
        results = await probe_udp("127.0.0.1", [coap, ssdp, snmpd, closed, mdns, ntp],
                                  timeout=0.6)  # fmt: skip
        elapsed = time.monotonic() - started
    found = {s.port: (s.service, [f.kind for f in fs]) for s, fs in results}
    assert found == {
        coap: ("coap", ["coap-exposed"]),
        ssdp: ("upnp", ["upnp-exposed"]),
        snmpd: ("snmp", ["snmp-default-community"]),
        mdns: ("mdns", ["mdns-exposed"]),
        ntp: ("ntp", ["ntp-mode6"]),
    }
    assert [s.port for s, _ in results] == [coap, ssdp, snmpd, mdns, ntp]
    assert elapsed < 0.6 + udp_probes.GATHER + 0.3
    for service, findings in results:
        assert service.to_json()["proto"] == "udp"
        assert all(f.to_json()["proto"] == "udp" for f in findings)


async def test_closed_and_silent_ports_give_nothing_within_the_timeout() -> None:
    closed = free_udp_port()
    started = time.monotonic()
    assert await probe_udp("127.0.0.1", [closed], timeout=2.0) == []
    assert time.monotonic() - started < 0.5  # ICMP port unreachable ends every probe's wait
    async with serving(lambda request: []) as (silent, responder):
        started = time.monotonic()
        assert await probe_udp("127.0.0.1", [silent], timeout=0.4) == []
        elapsed = time.monotonic() - started
    assert 0.38 < elapsed < 0.7
    assert len(responder.requests) == 2 * 6  # six requests (NTP's two), each resent once only


async def test_one_resend_when_the_first_request_is_lost() -> None:
    answer = ntp_server(control="none")
    seen: list[bytes] = []

    def lossy(request: bytes) -> list[bytes]:
        seen.append(request)
        return answer(request) if len(seen) > 2 else []

    async with serving(lossy) as (port, _):
        service, _ = await ntp_probe("127.0.0.1", port, 0.4)
    assert service.details["stratum"] == 2
    assert [r[0] & 0x7 for r in seen].count(3) == 2


def other_id(at: int, size: int, answer: Answer) -> Answer:
    """``answer`` with the ``size`` bytes at ``at`` (the request's id) changed."""

    def changed(request: bytes) -> list[bytes]:
        reply = bytearray(answer(request)[0])
        reply[at : at + size] = bytes(b ^ 0x02 for b in reply[at : at + size])
        return [bytes(reply)]

    return changed


def pointer_loop(request: bytes) -> list[bytes]:
    """An mDNS answer whose record's name points at itself."""
    return [request[:2] + bytes.fromhex("8400 0000 0001 0000 0000") + b"\xc0\x0c" + bytes(10)]


@pytest.mark.parametrize(
    ("probe", "answer", "problem"),
    [
        (coap_probe, other_id(4, 4, coap_answer), "CoAP answer to another request (token)"),
        (mdns_probe, other_id(0, 2, mdns_answer), "DNS answer to another query (id)"),
        (mdns_probe, pointer_loop, "DNS name pointers loop"),
        (ntp_probe, other_id(24, 8, ntp_server(control="none")), "another request (origin"),
        (snmp_probe, partial(snmp_answer, other_id=True), "SNMP answer to another request"),
    ],
)
async def test_answers_to_another_request_or_hostile_are_not_read(probe, answer, problem) -> None:
    async with serving(answer) as (port, _):
        service, findings = await probe("127.0.0.1", port, 0.3)
    assert (service.service, findings) == ("", [])
    assert problem in service.details["malformed"][0]


async def test_an_echo_service_is_not_mistaken_for_any(monkeypatch: pytest.MonkeyPatch) -> None:
    """A UDP echo (port 7, or a reflector) sends each request back: every probe sees its own
    question, which none takes for an answer."""
    monkeypatch.setattr(udp_probes, "GATHER", 0.05)
    probes = (coap_probe, ssdp_probe, snmp_probe, mdns_probe, ntp_probe)
    async with serving(lambda request: [request]) as (port, _):
        [(service, findings)] = await probe_udp("127.0.0.1", [port], timeout=0.5)
        each = await asyncio.gather(*(probe("127.0.0.1", port, 0.5) for probe in probes))
    assert (service.service, findings, service.details["probe"]) == ("", [], "coap")
    assert service.details["malformed"] == ["not a CoAP response (code 0.01)"]
    assert [(s.service, s.details["probe"], f) for s, f in each] == [
        ("", name, []) for name in ("coap", "ssdp", "snmp", "mdns", "ntp")]  # fmt: skip


class Mangler:
    """Answers each request with a good answer cut short (at each of the first lengths in
    turn, then anywhere) or with a few of its bytes changed; the rest of an answer of several
    datagrams is kept."""

    def __init__(self, good: Answer, seed: int) -> None:
        self.good = good
        self.rng = random.Random(seed)
        self.sent = 0

    def __call__(self, request: bytes) -> list[bytes]:
        good = self.good(request)
        if not good:
            return []
        first = bytearray(good[0])
        self.sent += 1
        if self.sent <= 100:
            cut = self.sent - 1 if self.sent <= 60 else self.rng.randrange(len(first))
            return [bytes(first[:cut]), *good[1:]]
        for _ in range(self.rng.randint(1, 4)):
            first[self.rng.randrange(len(first))] = self.rng.randrange(256)
        return [bytes(first), *good[1:]]


# Each probe, and what makes the answerer that gives it good answers.
PROBES: dict[str, tuple[Callable, Callable[[], Answer]]] = {
    "coap": (coap_probe, lambda: coap_answer),
    "ssdp": (ssdp_probe, ssdp_answers),
    "snmp": (snmp_probe, lambda: snmp_answer),
    "mdns": (mdns_probe, lambda: mdns_answer),
    "ntp": (ntp_probe, ntp_server),
}


@pytest.mark.parametrize("name", list(PROBES))
async def test_truncated_and_mangled_answers_never_raise(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hundred truncations and a hundred corruptions of a good answer: the probe gives a
    service, with the problem in its details when it could not read the answer, or nothing,
    and never raises."""
    monkeypatch.setattr(udp_probes, "GATHER", 0.05)
    probe, answerer = PROBES[name]
    mangler = Mangler(answerer(), seed=len(name))
    results = []
    async with serving(mangler) as (port, _):
        for _ in range(2):  # in batches, so that the responder's socket does not overflow
            results += await asyncio.gather(*(probe("127.0.0.1", port, 1.0) for _ in range(100)))
    answered = [r for r in results if r is not None]
    assert len(answered) > 150 and mangler.sent >= 200
    unread = [s for s, _ in answered if s.details.get("malformed")]
    assert unread, "no mangled answer was noted as such"
    for service, findings in answered:
        assert service.to_json()["port"] == port
        assert all(finding.to_json()["port"] == port for finding in findings)
        if not service.service:
            assert (service.details["probe"], findings) == (name, [])


@pytest.mark.parametrize("name", list(PROBES))
async def test_a_truncated_answer_is_noted(name: str) -> None:
    """A third of each datagram: what can still be read is (an SSDP status line and some
    headers, a CoAP header), else the service is unknown; either way the details say why."""
    probe, answerer = PROBES[name]
    good = answerer()
    async with serving(lambda r: [d[: len(d) // 3] for d in good(r)]) as (port, _):
        service, findings = await probe("127.0.0.1", port, 0.5)
    assert service.details["malformed"] and service.banner
    if name in ("coap", "ssdp"):
        assert service.service == {"coap": "coap", "ssdp": "upnp"}[name]
    else:
        assert (service.service, findings, service.details["probe"]) == ("", [], name)


def test_names_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="names are not resolved"):
        asyncio.run(probe_udp("sensor.lan"))
    with pytest.raises(ValueError, match="outside 1-65535"):
        asyncio.run(probe_udp("127.0.0.1", [0]))
