"""Offline capture analysis rate: `iotsec analyze` against tshark and a scapy read loop.

Writes a mixed IoT capture (classic pcap, Ethernet; by default 200,000 packets in a few
thousand flows: TCP handshakes and teardowns around MQTT, HTTP, TLS with SNI and Modbus/TCP,
DNS, CoAP, plain UDP, ICMP, some IPv6 and a few ARP, every length and checksum valid), then
times each reader over it in its own child process, wall time and the child's peak RSS:
`iotsec analyze FILE --json --no-rules` (decode + flows, no rules), `tshark -n -q -z conv,ip
-r FILE` and scapy's `PcapReader`.
Targets: >= 250,000 packets/s, >= 3x tshark, <= 200 MB peak RSS.

Run: .venv/bin/python bench/traffic_offline.py [--packets 200000] [--keep FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from struct import Struct

TARGET_RATE, TARGET_VS_TSHARK, TARGET_RSS_MB = 250_000, 3.0, 200
SCAPY_LOOP = """\
import sys
from scapy.all import PcapReader
count = 0
for _ in PcapReader(sys.argv[1]):
    count += 1
print(count)
"""

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10
ETHERTYPE = {4: 0x0800, 6: 0x86DD, 0: 0x0806}
BROADCAST = b"\xff" * 6

ETH = Struct("!6s6sH")
MACS = Struct("!6s6s")
IPV4 = Struct("!BBHHHBBH4s4s")
IPV6 = Struct("!IHBB16s16s")
ADDRS4, ADDRS6 = Struct("!4s4s"), Struct("!16s16s")
TCP_HEADER = Struct("!HHIIBBHHH")
TCP_VARYING = Struct("!HHII")  # ports, seq, ack
UDP_HEADER = Struct("!HHHH")
PORTS = Struct("!HH")
ICMP_ECHO = Struct("!BBHHH")
ARP = Struct("!HHBBH6s4s6s4s")
ARP_ADDRS = Struct("!6s4s6s4s")
U16 = Struct("!H")
PCAP_HEADER = Struct("<IHHiIII")
RECORD = Struct("<IIII")


# --- templates: a frame built once, with offsets of what each packet changes ---


@dataclass(frozen=True)
class Template:
    """A whole frame with zero addresses, ports, sequence numbers, message id and checksums."""

    frame: bytes
    family: int  # 4, 6, or 0 for ARP (then proto is the ARP operation)
    proto: int
    l4: int  # where the transport header starts
    checksum_at: int
    message_at: int  # a 16-bit message id (DNS, CoAP, Modbus, ICMP echo), or -1


def template(
    family: int, proto: int, flags: int = 0, payload: bytes = b"", app_id: int = -1
) -> Template:
    """An Ethernet/IP/transport frame; ``flags`` is the ICMP type for ICMP, ``app_id`` the
    offset of the message id in the payload."""
    if proto == TCP:
        header = TCP_HEADER.pack(0, 0, 0, 0, 5 << 4, flags, 64240, 0, 0)
        checksum_at = 16
    elif proto == UDP:
        header = UDP_HEADER.pack(0, 0, 8 + len(payload), 0)
        checksum_at = 6
    else:
        header = ICMP_ECHO.pack(flags, 0, 0, 0, 0)
        checksum_at, app_id = 2, -2  # the echo sequence number, just before the payload
    segment = header + payload
    if family == 4:
        ip = IPV4.pack(0x45, 0, 20 + len(segment), 0, 0x4000, 64, proto, 0, bytes(4), bytes(4))
    else:
        ip = IPV6.pack(6 << 28, len(segment), proto, 64, bytes(16), bytes(16))
    frame = ETH.pack(bytes(6), bytes(6), ETHERTYPE[family]) + ip + segment
    l4 = 14 + len(ip)
    message_at = -1 if app_id == -1 else l4 + len(header) + app_id
    return Template(frame, family, proto, l4, l4 + checksum_at, message_at)


def arp_template(op: int) -> Template:
    body = ARP.pack(1, 0x0800, 6, 4, op, bytes(6), bytes(4), bytes(6), bytes(4))
    return Template(ETH.pack(bytes(6), bytes(6), ETHERTYPE[0]) + body, 0, op, 14, -1, -1)


def checksum(data: bytes | bytearray, extra: int = 0) -> int:
    """The Internet checksum (with ``extra`` added to the sum, for a pseudo-header). As
    2**16 == 1 (mod 0xFFFF), the one's complement sum of the 16-bit words is the whole
    big-endian number modulo 0xFFFF, and its complement is the negation."""
    number = int.from_bytes(data, "big")
    if len(data) & 1:
        number <<= 8
    return -(number + extra) % 0xFFFF


@dataclass(frozen=True)
class Endpoints:
    """The two ends of one flow; an ICMP echo flow's client port is its identifier."""

    client: bytes
    server: bytes
    client_mac: bytes
    server_mac: bytes
    client_port: int
    server_port: int


def fill(ends: Endpoints, t: Template, from_client: bool, seq: int, ack: int, message: int,
         ip_id: int) -> bytes:  # fmt: skip
    """The template's frame with this packet's addresses, ports, numbers and checksums."""
    buf = bytearray(t.frame)
    if from_client:
        src, dst, smac, dmac = ends.client, ends.server, ends.client_mac, ends.server_mac
        sport, dport = ends.client_port, ends.server_port
    else:
        src, dst, smac, dmac = ends.server, ends.client, ends.server_mac, ends.client_mac
        sport, dport = ends.server_port, ends.client_port
    if t.family == 0:
        request = t.proto == 1
        MACS.pack_into(buf, 0, BROADCAST if request else dmac, smac)
        ARP_ADDRS.pack_into(buf, 22, smac, src, bytes(6) if request else dmac, dst)
        return bytes(buf)
    MACS.pack_into(buf, 0, dmac, smac)
    l4 = t.l4
    if t.family == 4:
        U16.pack_into(buf, 18, ip_id)
        ADDRS4.pack_into(buf, 26, src, dst)
        U16.pack_into(buf, 24, checksum(buf[14:34]))
    else:
        ADDRS6.pack_into(buf, 22, src, dst)
    if t.proto == TCP:
        TCP_VARYING.pack_into(buf, l4, sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF)
    elif t.proto == UDP:
        PORTS.pack_into(buf, l4, sport, dport)
    else:
        U16.pack_into(buf, l4 + 4, ends.client_port)
    if t.message_at >= 0:
        U16.pack_into(buf, t.message_at, message & 0xFFFF)
    segment = buf[l4:]
    # TCP, UDP and ICMPv6 sum a pseudo-header of addresses, protocol and length too.
    pseudo = 0 if t.proto == ICMP else int.from_bytes(src + dst) + t.proto + len(segment)
    # A UDP checksum of 0 means "none", so UDP sends it as 0xFFFF.
    sum_ = checksum(segment, pseudo) or (0xFFFF if t.proto == UDP else 0)
    U16.pack_into(buf, t.checksum_at, sum_)
    return bytes(buf)


# --- application payloads ---


def mqtt_connect(client_id: bytes) -> bytes:
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + U16.pack(len(client_id)) + client_id
    return bytes([0x10, len(body)]) + body


def mqtt_publish(topic: bytes, message: bytes) -> bytes:
    body = U16.pack(len(topic)) + topic + message
    return bytes([0x30, len(body)]) + body


def http_response(body: bytes) -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return head.encode() + b"\r\n\r\n" + body


def tls_record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return bytes([content_type]) + U16.pack(version) + U16.pack(len(body)) + body


def tls_handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def tls_client_hello(server_name: bytes) -> bytes:
    name = b"\x00" + U16.pack(len(server_name)) + server_name
    sni = U16.pack(len(name)) + name
    extensions = (
        U16.pack(0) + U16.pack(len(sni)) + sni  # server_name
        + U16.pack(43) + U16.pack(3) + b"\x02\x03\x04"  # supported_versions: TLS 1.3
        + U16.pack(10) + U16.pack(4) + b"\x00\x02\x00\x1d"  # supported_groups: x25519
    )  # fmt: skip
    suites = b"\x13\x01\x13\x02\xc0\x2f\xc0\x2b"
    hello = (b"\x03\x03" + bytes(range(32)) + b"\x00" + U16.pack(len(suites)) + suites
             + b"\x01\x00" + U16.pack(len(extensions)) + extensions)  # fmt: skip
    return tls_record(22, tls_handshake(1, hello), version=0x0301)


def tls_server_hello() -> bytes:
    hello = b"\x03\x03" + bytes(range(32, 64)) + b"\x00" + b"\xc0\x2f" + b"\x00" + U16.pack(0)
    return tls_record(22, tls_handshake(2, hello))


def modbus_read(count: int) -> tuple[bytes, bytes]:
    """A Read Holding Registers request and its response (transaction id at offset 0)."""
    request = Struct("!HHHBBHH").pack(0, 0, 6, 1, 3, 0, count)
    values = b"".join(U16.pack(200 + i) for i in range(count))
    response = Struct("!HHHBBB").pack(0, 0, 3 + len(values), 1, 3, len(values))
    return request, response + values


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


def dns_exchange(name: str, address: bytes) -> tuple[bytes, bytes]:
    """A query for the A record of ``name`` and an answer of ``address`` (id at offset 0)."""
    question = dns_name(name) + Struct("!HH").pack(1, 1)
    query = Struct("!HHHHHH").pack(0, 0x0100, 1, 0, 0, 0) + question
    answer = Struct("!HHHIH").pack(0xC00C, 1, 1, 300, 4) + address
    response = Struct("!HHHHHH").pack(0, 0x8180, 1, 1, 0, 0) + question + answer
    return query, response


def coap_exchange(path: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A confirmable GET of ``/path`` and its piggybacked 2.05 Content (message id at 2)."""
    request = Struct("!BBH").pack(0x40, 0x01, 0) + bytes([0xB0 | len(path)]) + path
    response = Struct("!BBH").pack(0x60, 0x45, 0) + b"\xff" + value
    return request, response


# --- flows: each yields (template, from_client, seq, ack, message id) for its packets ---


class Templates:
    """Every frame the generator writes, each built once on first use (a few dozen)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, int, bytes, int], Template] = {}
        self.arp_request, self.arp_reply = arp_template(1), arp_template(2)

    def get(
        self, family: int, proto: int, flags: int = 0, payload: bytes = b"", app_id: int = -1
    ) -> Template:
        key = (family, proto, flags, payload, app_id)
        if key not in self._cache:
            self._cache[key] = template(family, proto, flags, payload, app_id)
        return self._cache[key]

    def __len__(self) -> int:
        return len(self._cache) + 2


Step = tuple[Template, bool, int, int, int]


def tcp_session(
    tt: Templates,
    rng: random.Random,
    family: int,
    exchanges: list[tuple[bytes, bytes | None]],
    app_id: int = -1,
) -> Iterator[Step]:
    """Handshake; per exchange a request, then a response the client ACKs or the server's ACK;
    FIN both ways and the last ACK. The exchange's index is its message id."""
    c, s = rng.getrandbits(32), rng.getrandbits(32)
    ack = tt.get(family, TCP, ACK)
    yield tt.get(family, TCP, SYN), True, c, 0, 0
    yield tt.get(family, TCP, SYN | ACK), False, s, c + 1, 0
    c, s = c + 1, s + 1
    yield ack, True, c, s, 0
    for i, (request, response) in enumerate(exchanges):
        yield tt.get(family, TCP, PSH | ACK, request, app_id), True, c, s, i
        c += len(request)
        if response is None:
            yield ack, False, s, c, 0
            continue
        yield tt.get(family, TCP, PSH | ACK, response, app_id), False, s, c, i
        s += len(response)
        yield ack, True, c, s, 0
    yield tt.get(family, TCP, FIN | ACK), True, c, s, 0
    yield tt.get(family, TCP, FIN | ACK), False, s, c + 1, 0
    yield ack, True, c + 1, s + 1, 0


def udp_exchanges(
    tt: Templates, family: int, count: int, request: bytes, response: bytes | None = None,
    app_id: int = -1,
) -> Iterator[Step]:  # fmt: skip
    """``count`` requests, each answered when there is a response, numbered from 0."""
    ask = tt.get(family, UDP, 0, request, app_id)
    answer = tt.get(family, UDP, 0, response, app_id) if response is not None else None
    for i in range(count):
        yield ask, True, 0, 0, i
        if answer is not None:
            yield answer, False, 0, 0, i


def pings(tt: Templates, family: int, count: int) -> Iterator[Step]:
    request, reply = (8, 0) if family == 4 else (128, 129)
    proto, payload = (ICMP if family == 4 else ICMPV6), bytes(range(56))
    for seq in range(1, count + 1):
        yield tt.get(family, proto, request, payload), True, 0, 0, seq
        yield tt.get(family, proto, reply, payload), False, 0, 0, seq


def arp(tt: Templates) -> Iterator[Step]:
    yield tt.arp_request, True, 0, 0, 0
    yield tt.arp_reply, False, 0, 0, 0


@dataclass(frozen=True)
class Kind:
    """One kind of flow: its share of the flows, protocol and server port."""

    name: str
    weight: int
    family: int
    proto: int
    port: int


KINDS = [
    Kind("mqtt", 14, 4, TCP, 1883), Kind("http", 12, 4, TCP, 80), Kind("tls", 12, 4, TCP, 443),
    Kind("modbus", 10, 4, TCP, 502), Kind("tcp", 5, 4, TCP, 7777), Kind("dns", 10, 4, UDP, 53),
    Kind("coap", 10, 4, UDP, 5683), Kind("udp", 8, 4, UDP, 9000), Kind("icmp", 5, 4, ICMP, 0),
    Kind("http", 4, 6, TCP, 80), Kind("dns", 4, 6, UDP, 53), Kind("icmp", 3, 6, ICMPV6, 0),
    Kind("arp", 1, 0, 0, 0),
]  # fmt: skip
HTTP_GET = b"GET /status HTTP/1.1\r\nHost: cam.lan\r\nUser-Agent: iotsec-bench\r\n\r\n"


def steps(kind: Kind, tt: Templates, rng: random.Random) -> Iterator[Step]:
    """The packets of one flow of ``kind``: 5 to 40 exchanges over TCP, 20 to 60 otherwise."""
    family, n = kind.family, rng.randint(5, 40)
    if kind.name == "mqtt":
        connect = mqtt_connect(f"sensor-{rng.randrange(2)}".encode()), b"\x20\x02\x00\x00"
        publish = mqtt_publish(f"site/dev{rng.randrange(2)}/temp".encode(), b"21.5"), None
        ping = b"\xc0\x00", b"\xd0\x00"
        exchanges = [connect, *(ping if i % 10 == 9 else publish for i in range(n))]
        return tcp_session(tt, rng, family, exchanges)
    if kind.name == "http":
        return tcp_session(tt, rng, family, [(HTTP_GET, http_response(b'{"status":"ok"}'))] * n)
    if kind.name == "tls":
        hello = tls_client_hello(f"api{rng.randrange(3)}.vendor.example".encode())
        data = tls_record(23, bytes(96)), tls_record(23, bytes(240))
        return tcp_session(tt, rng, family, [(hello, tls_server_hello()), *[data] * n])
    if kind.name == "modbus":
        return tcp_session(tt, rng, family, [modbus_read(4)] * n, app_id=0)
    if kind.name == "tcp":
        return tcp_session(tt, rng, family, [(bytes(64), bytes(512))] * n)
    n = rng.randint(20, 60)
    if kind.name == "dns":
        query = dns_exchange(f"dev{rng.randrange(2)}.lan", bytes([10, 77, 0, 10]))
        return udp_exchanges(tt, family, n, *query, app_id=0)
    if kind.name == "coap":
        return udp_exchanges(tt, family, n, *coap_exchange(b"temp", b"21.5"), app_id=2)
    if kind.name == "udp":
        return udp_exchanges(tt, family, n * 2, bytes(48))
    if kind.name == "icmp":
        return pings(tt, family, n)
    return arp(tt)


# --- the capture file ---


def address(family: int, network: int, host: int) -> bytes:
    if family == 6:
        return b"\xfd\x00\x00\x77" + bytes(10) + bytes([network, host])
    return bytes([10, 77, network, host])


def mac(addr: bytes) -> bytes:
    return b"\x02" + addr[-5:] if len(addr) == 16 else b"\x02\x00" + addr


@dataclass(frozen=True)
class Generated:
    """What :func:`generate` wrote and how long it took."""

    packets: int
    flows: int
    templates: int
    size: int
    seconds: float


def generate(path: Path, packets: int, seed: int = 4, active: int = 64) -> Generated:
    """Write ``packets`` frames of ``active`` interleaved flows, new flows replacing ended ones."""
    started = time.perf_counter()
    rng, tt = random.Random(seed), Templates()
    weights = [k.weight for k in KINDS]
    seen: set[tuple] = set()

    def new_flow() -> tuple[Endpoints, Iterator[Step]]:
        kind = rng.choices(KINDS, weights)[0]
        family = kind.family or 4
        while True:
            client = address(family, 1 + rng.randrange(4), 1 + rng.randrange(250))
            server = address(family, 0, 10 + rng.randrange(20))
            client_port = 32768 + rng.randrange(28000)
            key = (family, client, server, kind.proto, client_port, kind.port)
            if key not in seen or kind.name == "arp":
                break
        if kind.name != "arp":
            seen.add(key)
        ends = Endpoints(client, server, mac(client), mac(server), client_port, kind.port)
        return ends, steps(kind, tt, rng)

    flows = [new_flow() for _ in range(active)]
    written, usec, chunk = 0, 0, []
    with path.open("wb") as out:
        out.write(PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        while written < packets:
            slot = rng.randrange(active)
            ends, flow = flows[slot]
            step = next(flow, None)
            if step is None:
                flows[slot] = new_flow()
                continue
            frame = fill(ends, *step, written & 0xFFFF)
            usec += 20 + (written * 7919) % 61
            sec = 1_700_000_000 + usec // 1_000_000
            chunk.append(RECORD.pack(sec, usec % 1_000_000, len(frame), len(frame)) + frame)
            written += 1
            if len(chunk) == 4096:
                out.write(b"".join(chunk))
                chunk.clear()
        out.write(b"".join(chunk))
    seconds = time.perf_counter() - started
    return Generated(written, len(seen), len(tt), path.stat().st_size, seconds)


# --- the readers ---


@dataclass(frozen=True)
class Run:
    """One reader's child process: wall time, its peak RSS and what it printed."""

    seconds: float
    peak_rss_mb: float
    stdout: str


def measure(argv: list[str]) -> Run:
    """Run ``argv`` and reap it with wait4, so the peak RSS is this child's own."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
        assert proc.stdout is not None
        with proc.stdout:
            out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            detail = errors.read().decode(errors="replace").strip()[-2000:]
            sys.exit(f"{' '.join(argv)} exited with {proc.returncode}:\n{detail}")
    return Run(seconds, usage.ru_maxrss / 1024, out.decode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--keep", type=Path, help="keep the generated pcap as FILE")
    args = parser.parse_args()
    iotsec = Path(sys.executable).with_name("iotsec")
    tshark = shutil.which("tshark")
    if tshark is None:
        sys.exit("tshark is missing (Debian package tshark; `sudo make deps` installs it)")
    with tempfile.TemporaryDirectory(prefix="iotsec-bench-") as tmp:
        path = Path(tmp) / "mixed.pcap"
        made = generate(path, args.packets)
        print(f"generated {made.packets:,} packets, {made.flows:,} flows, "
              f"{made.size / 1e6:.1f} MB from {made.templates} templates "
              f"in {made.seconds:.1f} s")  # fmt: skip
        ours = measure([str(iotsec), "analyze", str(path), "--json", "--no-rules"])
        theirs = measure([tshark, "-n", "-q", "-z", "conv,ip", "-r", str(path)])
        scapy = measure([sys.executable, "-c", SCAPY_LOOP, str(path)])
        if args.keep:
            shutil.copyfile(path, args.keep)
    report = json.loads(ours.stdout)
    rates = {name: made.packets / run.seconds
             for name, run in (("ours", ours), ("tshark", theirs), ("scapy", scapy))}  # fmt: skip
    conversations = theirs.stdout.count("<->")
    print(f"{'reader':<36} {'wall s':>7} {'packets/s':>11} {'peak RSS MB':>12}")
    for label, run, rate in (
        ("iotsec analyze --no-rules", ours, rates["ours"]),
        (f"tshark -z conv,ip ({conversations:,} conv.)", theirs, rates["tshark"]),
        (f"scapy PcapReader ({int(scapy.stdout):,} pkts)", scapy, rates["scapy"]),
    ):
        print(f"{label:<36} {run.seconds:>7.2f} {rate:>11,.0f} {run.peak_rss_mb:>12.0f}")
    counted = report["packets"]
    agrees = "equal to" if counted == made.packets else "DIFFERENT from"
    print(f"iotsec analyze: packets={counted:,} ({agrees} generated {made.packets:,}), "
          f"flows={report['flows']:,}, malformed={report['malformed']:,}")  # fmt: skip
    protocols = sorted(report["protocols"].items(), key=lambda item: -item[1])
    print("  protocols: " + ", ".join(f"{tag} {count:,}" for tag, count in protocols))
    vs_tshark, vs_scapy = rates["ours"] / rates["tshark"], rates["ours"] / rates["scapy"]
    print(f"ours/tshark {vs_tshark:.2f}x, ours/scapy {vs_scapy:.1f}x")
    for target, met in (
        (f">= {TARGET_RATE:,} packets/s", rates["ours"] >= TARGET_RATE),
        (f">= {TARGET_VS_TSHARK:g}x tshark", vs_tshark >= TARGET_VS_TSHARK),
        (f"<= {TARGET_RSS_MB} MB peak RSS", ours.peak_rss_mb <= TARGET_RSS_MB),
    ):
        print(f"target {target}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
