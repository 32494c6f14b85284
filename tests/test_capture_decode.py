"""The pcap/pcapng readers and the fast decoder, on the real captures in tests/data."""

from __future__ import annotations

import random
import struct
from collections import Counter
from pathlib import Path

import pytest

from engine.capture.decode import ETH_ARP, TCP, UDP, Decoder
from engine.capture.pcapfile import CaptureFileError, read_frames
from tests.conftest import DATA

PCAPS = DATA / "pcaps"
# Packet counts from the data's MANIFEST.
COUNTS = {
    "sv_mqtt311_pub_userpass.pcap": 12, "zeek_mqtt.pcap": 19, "sv_telnet_ppa.pcap": 92,
    "sv_ssdp.pcap": 1, "sv_modbus.pcap": 99, "sv_dns_a_aaaa_mx.pcap": 6, "zeek_mdns.pcap": 24,
    "sv_snmpv2c_get.pcap": 8, "zeek_http_basic_auth.pcap": 12, "zeek_tls_expired_cert.pcap": 49,
}  # fmt: skip


def pcap(name: str) -> Path:
    return PCAPS / name


def decoded(name: str) -> tuple[list, Decoder]:
    decoder = Decoder()
    packets = [
        decoder.decode(f.data, f.linktype, f.ts, f.wire_length) for f in read_frames(pcap(name))
    ]
    return packets, decoder


@pytest.mark.parametrize(("name", "count"), sorted(COUNTS.items()))
def test_every_frame_of_the_real_captures_is_read_and_decoded(name: str, count: int) -> None:
    packets, decoder = decoded(name)
    assert len(packets) == count
    assert decoder.malformed == 0 and decoder.fragments == 0
    assert all(p is not None for p in packets) or decoder.unsupported


@pytest.mark.parametrize(
    ("name", "proto", "port"),
    [
        ("sv_mqtt311_pub_userpass.pcap", TCP, 1883),
        ("sv_telnet_ppa.pcap", TCP, 23),
        ("sv_modbus.pcap", TCP, 502),
        ("sv_ssdp.pcap", UDP, 1900),
        ("sv_dns_a_aaaa_mx.pcap", UDP, 53),
        ("zeek_mdns.pcap", UDP, 5353),
        ("sv_snmpv2c_get.pcap", UDP, 161),
        ("zeek_http_basic_auth.pcap", TCP, 8000),
        ("zeek_tls_expired_cert.pcap", TCP, 443),
    ],
)
def test_transport_and_ports(name: str, proto: int, port: int) -> None:
    packets, _ = decoded(name)
    ports = Counter(
        p.sport if p.sport == port else p.dport for p in packets if p and p.proto == proto
    )
    assert ports[port] >= 1, ports.most_common(3)


def test_payloads_carry_the_application_bytes() -> None:
    packets, _ = decoded("sv_mqtt311_pub_userpass.pcap")
    connect = next(p for p in packets if p and p.payload[:1] == b"\x10")
    assert b"MQTT" in connect.payload and b"user" in connect.payload
    assert (connect.ip_version, connect.src, connect.dport) == (6, "::1", 1883)


def test_raw_ipv4_link_type() -> None:
    frames = list(read_frames(pcap("zeek_http_basic_auth.pcap")))
    assert {f.linktype for f in frames} == {228}
    packets, _ = decoded("zeek_http_basic_auth.pcap")
    assert any(b"Authorization: Basic" in p.payload for p in packets if p)


def test_truncated_and_random_frames_never_escape() -> None:
    frames = [f for name in COUNTS for f in read_frames(pcap(name))]
    decoder = Decoder()
    rng = random.Random(2026)
    for frame in frames:
        for cut in range(0, len(frame.data), 7):
            decoder.decode(frame.data[:cut], frame.linktype)
    for _ in range(20_000):
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        decoder.decode(junk, rng.choice([0, 1, 101, 113, 228, 229, 276, 999]))
    assert decoder.malformed > 1000
    assert decoder.decoded > 0


def test_arp() -> None:
    frame = (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x06"
             + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + b"\x02\x00\x00\x00\x00\x01"
             + bytes([10, 0, 0, 1]) + b"\x00" * 6 + bytes([10, 0, 0, 2]))  # fmt: skip
    packet = Decoder().decode(frame, 1)
    assert packet is not None and packet.proto == ETH_ARP
    assert (packet.src, packet.dst, packet.flags) == ("10.0.0.1", "10.0.0.2", 1)


def test_damaged_files_say_where(tmp_path: Path) -> None:
    data = pcap("sv_modbus.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 10])
    frames = []
    with pytest.raises(CaptureFileError, match=rf"{cut}: frame cut short at byte \d+"):
        frames.extend(read_frames(cut))
    assert len(frames) == COUNTS["sv_modbus.pcap"] - 1  # everything before the damage arrived
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"hello world")
    with pytest.raises(CaptureFileError, match="not a pcap or pcapng file"):
        list(read_frames(junk))


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_headers_agree_with_scapys_full_dissection(name: str) -> None:
    """Scapy dissects every layer (slowly); the fast decoder must read the same headers."""
    from scapy.layers.inet import IP
    from scapy.layers.inet import TCP as ScapyTCP
    from scapy.layers.inet import UDP as ScapyUDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import Padding

    decoder = Decoder()
    for frame in read_frames(pcap(name)):
        ours = decoder.decode(frame.data, frame.linktype)
        theirs = Ether(frame.data) if frame.linktype == 1 else IP(frame.data)
        ip = theirs.getlayer(IP) or theirs.getlayer(IPv6)
        assert ours is not None and ip is not None
        assert (ours.src, ours.dst) == (ip.src, ip.dst)
        transport = theirs.getlayer(ScapyTCP) or theirs.getlayer(ScapyUDP)
        if transport is not None:
            assert (ours.sport, ours.dport) == (transport.sport, transport.dport)
            # Ethernet trailer padding is not part of the IP datagram (scapy keeps it).
            payload = bytes(transport.payload)
            padding = transport.getlayer(Padding)
            if padding is not None:
                payload = payload[: len(payload) - len(padding.load)]
            assert ours.payload == payload


def test_pcapng_gives_the_same_frames(tmp_path: Path) -> None:
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcapng

    frames = list(read_frames(pcap("sv_modbus.pcap")))
    packets = []
    for frame in frames:
        packet = Ether(frame.data)
        packet.time = frame.ts
        packets.append(packet)
    out = tmp_path / "modbus.pcapng"
    wrpcapng(str(out), packets)
    again = list(read_frames(out))
    assert [f.data for f in again] == [f.data for f in frames]
    assert all(abs(a.ts - b.ts) < 1e-5 for a, b in zip(again, frames, strict=True))
