"""Protocol tagging on the real captures: the tags, what they found, and what they must not."""

from __future__ import annotations

import random
import socket
import ssl
import struct

import pytest

from engine.capture import protocols
from engine.capture.analyze import analyze
from engine.capture.decode import TCP, UDP
from engine.capture.pcapfile import read_frames
from engine.capture.pipeline import Pipeline
from tests.test_capture_decode import COUNTS, pcap

# Every packet of each recorded capture carries this tag (the mDNS file also has IGMP and ICMPv6).
TAGS = {
    "sv_mqtt311_pub_userpass.pcap": {"mqtt": 12},
    "zeek_mqtt.pcap": {"mqtt": 19},
    "sv_telnet_ppa.pcap": {"telnet": 92},
    "sv_ssdp.pcap": {"ssdp": 1},
    "sv_modbus.pcap": {"modbus": 99},
    "sv_dns_a_aaaa_mx.pcap": {"dns": 6},
    "zeek_mdns.pcap": {"mdns": 18, "igmp": 3, "icmpv6": 3},
    "sv_snmpv2c_get.pcap": {"snmp": 8},
    "zeek_http_basic_auth.pcap": {"http": 12},
    "zeek_tls_expired_cert.pcap": {"tls": 49},
}


def flows_of(name: str) -> list:
    pipeline = Pipeline(facts=True)
    for frame in read_frames(pcap(name)):
        pipeline.feed(frame.ts, frame.linktype, frame.data, frame.wire_length, "file")
    pipeline.finish()
    return pipeline


@pytest.mark.parametrize(("name", "tags"), sorted(TAGS.items()))
def test_every_packet_gets_its_protocol_tag(name: str, tags: dict[str, int]) -> None:
    summary = analyze([pcap(name)])
    assert summary["protocols"] == tags
    assert sum(tags.values()) == COUNTS[name]


def test_mqtt_connect_with_cleartext_credentials() -> None:
    (flow,) = flows_of("sv_mqtt311_pub_userpass.pcap").ended
    assert flow.app == "mqtt"
    assert flow.details["client_id"] == "myvoiceismypassport"
    assert flow.details["username"] == "user"
    assert flow.details["password"] is True
    assert "'pass'" not in repr(flow.details)  # the secret itself is not kept
    summary = analyze([pcap("sv_mqtt311_pub_userpass.pcap")])
    assert summary["cleartext"][0]["cleartext"] == ["mqtt password"]


def test_anonymous_mqtt_has_no_credentials() -> None:
    flows = flows_of("zeek_mqtt.pcap").ended
    assert {f.app for f in flows} == {"mqtt"}
    for flow in flows:
        assert flow.details["client_id"].startswith("paho/")
        assert flow.details["password"] is False
        assert "username" not in flow.details
    assert analyze([pcap("zeek_mqtt.pcap")])["cleartext"] == []


def test_http_basic_auth_host_and_user_agent() -> None:
    (flow,) = flows_of("zeek_http_basic_auth.pcap").ended
    assert flow.app == "http" and flow.dport == 8000  # found by payload, not by port
    details = flow.details
    assert (details["method"], details["host"]) == ("GET", "172.24.133.205:8000")
    assert details["user_agent"].startswith("python-requests/")
    assert details["basic_auth"] is True and details["username"] == "test"


def test_modbus_function_codes_and_exceptions() -> None:
    flows = flows_of("sv_modbus.pcap").ended
    functions = {code for f in flows for code in f.details.get("functions", [])}
    assert {1, 3, 5, 6, 8, 43} <= functions
    assert any(f.details.get("exceptions") for f in flows)


def test_dns_and_mdns_names() -> None:
    dns = flows_of("sv_dns_a_aaaa_mx.pcap").ended
    assert sorted(q for f in dns for q in f.details["queries"]) == [
        "A google.com", "AAAA google.com", "MX google.com",
    ]  # fmt: skip
    mdns = flows_of("zeek_mdns.pcap")
    hosts = {h for f in mdns.ended for h in f.details.get("hosts", [])}
    assert "johanna-QEMU-Virtual-Machine.local" in hosts
    announced = [fact for fact in mdns.facts if fact["kind"] == "mdns"]
    assert announced and announced[0]["hosts"] == ["johanna-QEMU-Virtual-Machine.local"]


def test_ssdp_notify_is_a_fact_about_the_router() -> None:
    pipeline = flows_of("sv_ssdp.pcap")
    (flow,) = pipeline.ended
    assert flow.details["method"] == "NOTIFY"
    assert "MiniUPnPd/1.6" in flow.details["server"]
    kinds = {fact["kind"]: fact for fact in pipeline.facts}
    assert kinds["ssdp"]["location"] == "http://192.168.1.1:7406/rootDesc.xml"
    assert kinds["host"] == {**kinds["host"], "ip": "192.168.1.1", "mac": "e0:91:f5:73:8c:c2"}


def test_snmp_community_is_present_but_not_kept() -> None:
    flows = flows_of("sv_snmpv2c_get.pcap").ended
    assert {(f.app, f.details["version"], f.details["community"]) for f in flows} == {
        ("snmp", "2c", True)
    }


def test_telnet_and_tls_versions() -> None:
    (telnet,) = flows_of("sv_telnet_ppa.pcap").ended
    assert telnet.details["negotiation"] is True
    tls = flows_of("zeek_tls_expired_cert.pcap").ended
    assert {(f.details["client_version"], f.details["version"]) for f in tls} == {
        ("TLS 1.2", "TLS 1.0")
    }


def test_every_new_mac_ip_pair_is_one_fact() -> None:
    pipeline = flows_of("sv_modbus.pcap")
    pairs = [(f["mac"], f["ip"]) for f in pipeline.facts if f["kind"] == "host"]
    assert len(pairs) == len(set(pairs))
    assert {ip for _, ip in pairs} == {"10.0.0.57", "10.0.0.3", "10.0.0.8", "10.0.0.9"}


def test_tls_client_hello_from_openssl_gives_sni_and_versions() -> None:
    context = ssl.create_default_context()
    conn = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                            server_hostname="camera.example")  # fmt: skip
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    tag, found = protocols.inspect(TCP, 50000, 8883, outgoing.read())
    assert tag == "tls"
    assert found["sni"] == "camera.example"
    assert found["client_version"] == "TLS 1.3"


def _dhcp_request(hostname: bytes, vendor: bytes) -> bytes:
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, 0x1234, 0, 0,
                         b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4,
                         bytes.fromhex("02a1b2c3d4e5") + b"\0" * 10, b"", b"")  # fmt: skip
    options = (b"\x35\x01\x03" + bytes([12, len(hostname)]) + hostname
               + bytes([60, len(vendor)]) + vendor + b"\x32\x04" + socket.inet_aton("10.1.2.3")
               + b"\xff")  # fmt: skip
    return header + b"\x63\x82\x53\x63" + options


def test_dhcp_hostname_and_vendor_class() -> None:
    tag, found = protocols.inspect(UDP, 68, 67, _dhcp_request(b"cam-01", b"udhcp 1.36.1"))
    assert tag == "dhcp"
    assert found == {**found, "hostname": "cam-01", "vendor_class": "udhcp 1.36.1",
                     "client_mac": "02:a1:b2:c3:d4:e5", "type": "REQUEST",
                     "requested_ip": "10.1.2.3"}  # fmt: skip


def test_coap_method_and_path() -> None:
    # CON GET, token 0x42, Uri-Path "sensors" / "temp"
    message = bytes([0x41, 0x01, 0x12, 0x34, 0x42, 0xB7]) + b"sensors" + bytes([0x04]) + b"temp"
    assert protocols.inspect(UDP, 40000, 5683, message) == (
        "coap", {"method": "GET", "uri": "/sensors/temp"},
    )  # fmt: skip


def test_hostile_payloads_never_raise() -> None:
    rng = random.Random(7)
    seeds = [
        _dhcp_request(b"x", b"y"),
        b"\x10\x20\x00\x04MQTT\x04\xc2\x00\x3c\x00\x01a",
        b"GET / HTTP/1.1\r\nAuthorization: Basic !!!\r\n\r\n",
        b"\x16\x03\x01\x00\x50\x01",
    ]
    ports = [1883, 80, 443, 502, 23, 53, 5353, 1900, 67, 5683, 161, 123, 22, 9999]
    for _ in range(20_000):
        base = rng.choice(seeds)
        payload = bytearray(base[: rng.randrange(len(base) + 1)])
        for _ in range(rng.randrange(4)):
            if payload:
                payload[rng.randrange(len(payload))] = rng.randrange(256)
        payload += rng.randbytes(rng.randrange(8))
        proto = rng.choice((TCP, UDP))
        tag, found = protocols.inspect(proto, rng.randrange(65536), rng.choice(ports),
                                       bytes(payload))  # fmt: skip
        assert isinstance(tag, str) and isinstance(found, dict)
