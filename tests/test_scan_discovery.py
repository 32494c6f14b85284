"""Host discovery on a real segment: a scanner namespace and a device namespace whose macvlan
devices (each with its own MAC, from a vendor in the OUI database) hold 20 addresses of a /24;
ARP, ICMP and TCP sweeps run inside the scanner namespace. And the vendor of a MAC from
Wireshark's manuf file, as installed."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.scan import oui
from tests.conftest import require_root, require_tool, unavailable

# -- the vendor of a MAC ---------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    prefix: str  # hex digits: 6 for /24, 7 for /28, 9 for /36
    vendor: str


@pytest.fixture(scope="module")
def manuf() -> list[Entry]:
    """The entries of the installed manuf file (the long name, else the short one), read here
    with a plain regex as the oracle."""
    if not oui.MANUF.is_file():
        unavailable(f"{oui.MANUF} is missing (Debian package libwireshark-data)")
    line = re.compile(r"^([0-9A-F:]+)(?:/(28|36))?\t([^\t\n]+)(?:\t([^\t\n#]+))?", re.MULTILINE)
    found = []
    for address, bits, short, long in line.findall(oui.MANUF.read_text(encoding="utf-8")):
        digits = address.replace(":", "")
        found.append(Entry(digits[: int(bits or 24) // 4], (long or short).strip()))
    assert len(found) > 30000, "the manuf file looks truncated"
    return found


def mac(digits: str) -> str:
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2)).lower()


def in_block(prefix: str, rest: str = "") -> str:
    """A MAC inside ``prefix``: its digits, then ``rest``, padded with 1s."""
    return mac((prefix + rest).ljust(12, "1"))


def vendors_by_length(manuf: list[Entry]) -> dict[int, dict[str, str]]:
    tables: dict[int, dict[str, str]] = {}
    for entry in manuf:
        tables.setdefault(len(entry.prefix), {}).setdefault(entry.prefix, entry.vendor)
    return tables


def test_the_installed_manuf_file_is_the_database(manuf: list[Entry]) -> None:
    assert oui.database() == str(oui.MANUF)


def test_vendors_of_assigned_blocks_longest_prefix_first(manuf: list[Entry]) -> None:
    tables = vendors_by_length(manuf)
    globally_assigned = [p for p in tables[6] if int(p[:2], 16) & 0x03 == 0]
    for prefix in random.Random(7).sample(globally_assigned, 50):
        if not any(p.startswith(prefix) for p in (*tables[7], *tables[9])):
            assert oui.vendor(in_block(prefix)) == tables[6][prefix], prefix
    # An MA-S (/36) block inside an IEEE-registered /24: the /36's owner, not the registry.
    small = next(p for p in tables[9] if p[:6] in tables[6])
    assert oui.vendor(in_block(small)) == tables[9][small] != tables[6][small[:6]]
    medium = next(p for p in tables[7] if p[:6] in tables[6])
    assert oui.vendor(in_block(medium)) == tables[7][medium] != tables[6][medium[:6]]
    # An address of that /24 outside every /28 and /36 assigned in it: the /24's owner.
    parent = small[:6]
    free = next(
        f"{n:03X}" for n in range(4096)
        if parent + f"{n:03X}" not in tables[9] and parent + f"{n:03X}"[0] not in tables[7]
    )  # fmt: skip
    assert oui.vendor(in_block(parent, free)) == tables[6][parent]


def test_any_way_of_writing_a_mac(manuf: list[Entry]) -> None:
    small = next(e for e in manuf if len(e.prefix) == 9)
    digits = small.prefix.ljust(12, "a")
    for written in (mac(digits), mac(digits).upper(), mac(digits).replace(":", "-"),
                    f"{digits[:4]}.{digits[4:8]}.{digits[8:]}".lower(), digits):  # fmt: skip
        assert oui.vendor(written) == small.vendor, written
    with pytest.raises(ValueError, match="not a MAC address"):
        oui.vendor("00:11:22:33:44")


def test_a_randomised_mac_has_no_vendor(manuf: list[Entry]) -> None:
    assigned = next(e for e in manuf if len(e.prefix) == 6 and int(e.prefix[:2], 16) & 3 == 0)
    real = in_block(assigned.prefix)
    local = f"{int(real[:2], 16) | 0x02:02x}{real[2:]}"
    assert not oui.is_locally_administered(real) and oui.vendor(real) == assigned.vendor
    assert oui.is_locally_administered(local) and oui.vendor(local) == ""
    assert oui.is_locally_administered("da:a1:19:00:00:01")


def test_an_unassigned_prefix_has_no_vendor(manuf: list[Entry]) -> None:
    tables = vendors_by_length(manuf)
    assigned = {p[:6] for table in tables.values() for p in table}
    unassigned = next(f"{n:06X}" for n in range(0, 1 << 24, 4) if f"{n:06X}" not in assigned)
    assert oui.vendor(in_block(unassigned)) == ""


def test_100k_lookups_take_well_under_a_second(manuf: list[Entry]) -> None:
    oui.vendor("00:00:00:00:00:01")  # loaded once, here
    rng = random.Random(1)
    prefixes = [e.prefix for e in manuf]
    macs = [in_block(rng.choice(prefixes), f"{rng.randrange(1 << 24):06x}") for _ in range(100_000)]
    start = time.perf_counter()
    named = sum(1 for m in macs if oui.vendor(m))
    elapsed = time.perf_counter() - start
    assert named > 90_000  # all but the locally administered prefixes in the file
    assert elapsed < 1.0, f"100k lookups took {elapsed:.2f} s"


IEEE_CSV = """Registry,Assignment,Organization Name,Organization Address
MA-L,0050C2,IEEE Registration Authority,445 Hoes Lane Piscataway NJ US 08554
MA-L,F09FC2,"Ubiquiti Inc",685 Third Avenue New York NY US 10017
"""
IEEE_MAM = """Registry,Assignment,Organization Name,Organization Address
MA-M,0050C21,"Example Medium, Inc.",Somewhere
"""
IEEE_TXT = """OUI/MA-L\t\t\tOrganization
company_id\t\t\tOrganization
\t\t\t\tAddress

F0-9F-C2   (hex)\t\tUbiquiti Inc
F09FC2     (base 16)\t\tUbiquiti Inc
\t\t\t\t685 Third Avenue
"""


def test_without_wireshark_the_ieee_files_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "oui.csv").write_text(IEEE_CSV)
    (tmp_path / "mam.csv").write_text(IEEE_MAM)
    monkeypatch.setattr(oui, "SOURCES", (tmp_path / "manuf", tmp_path / "oui.csv"))
    oui._registry.cache_clear()
    try:
        assert oui.database() == str(tmp_path / "oui.csv")
        assert oui.vendor("f0:9f:c2:12:34:56") == "Ubiquiti Inc"
        assert oui.vendor("00:50:c2:1f:00:01") == "Example Medium, Inc."
        assert oui.vendor("00:50:c2:20:00:01") == "IEEE Registration Authority"
        (tmp_path / "oui.txt").write_text(IEEE_TXT)
        assert oui.read(tmp_path / "oui.txt").vendor("F09FC2000001") == "Ubiquiti Inc"
        monkeypatch.setattr(oui, "SOURCES", (tmp_path / "none.csv",))
        oui._registry.cache_clear()
        assert oui.database() == "" and oui.vendor("f0:9f:c2:12:34:56") == ""
    finally:
        oui._registry.cache_clear()


# -- discovery on a real segment -------------------------------------------------------------

LAN = "10.254.61"
SCANNER = f"{LAN}.1"
# Five devices of four addresses each; the rest of the /24 is empty.
DEVICE_ADDRESSES = [[f"{LAN}.{10 * d + 10 + i}" for i in range(4)] for d in range(5)]
LIVE = {a for group in DEVICE_ADDRESSES for a in group}
FAR = "10.254.62"  # a routed range behind the first device: reached by ICMP, not ARP
V6 = "fd00:5c:61::"
OPEN_PORT = 8080

DRIVE = """
import asyncio, dataclasses, ipaddress, json, sys, time
from engine.scan import discovery
call, kwargs = sys.argv[1], json.loads(sys.argv[2])
targets = [ipaddress.ip_address(t) for t in kwargs.pop("targets")]
start = time.monotonic()
try:
    result = asyncio.run(getattr(discovery, call)(targets, **kwargs))
except PermissionError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(0)
elapsed = time.monotonic() - start
if isinstance(result, set):
    result = sorted(result)
elif isinstance(result, list):
    result = [dataclasses.asdict(h) for h in result]
print(json.dumps({"result": result, "elapsed": elapsed}))
"""

LISTEN = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
sys.stdin.read()
"""


# A device that answers ARP for the given addresses after a delay, in place of its kernel (its
# interface is set to NOARP); netem is not in every kernel.
SLOW_ARP = """
import socket, struct, sys, threading
iface, delay, addresses = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
asked_for = {socket.inet_aton(a) for a in addresses}
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
sock.bind((iface, 0x0806))
mac = sock.getsockname()[4]
print("ready", flush=True)
while True:
    frame = sock.recv(128)
    sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
    if frame[20:22] == b"\\x00\\x01" and tpa in asked_for:
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + tpa + sha + spa
        threading.Timer(delay, sock.send, [sha + mac + b"\\x08\\x06" + arp]).start()
"""


@dataclass
class Segment:
    scanner: str
    devices: str
    vendors: dict[str, str]  # MAC -> vendor, one per device, in DEVICE_ADDRESSES order
    link_local: str = ""  # the first device's fe80:: address, scoped to the scanner's eth0
    listener: subprocess.Popen[str] | None = None
    made: list[str] = field(default_factory=list)

    @property
    def macs(self) -> list[str]:
        return list(self.vendors)

    def run(self, call: str, *prefix: str, **kwargs: object) -> dict:
        """``discovery.CALL(targets, **kwargs)`` inside the scanner namespace."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.scanner, *prefix, sys.executable, "-c", DRIVE, call,
             json.dumps(kwargs)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


def vendor_macs(manuf: list[Entry], count: int) -> dict[str, str]:
    """MAC -> vendor of ``count`` different vendors, picked from the manuf file as installed:
    one in an MA-S (/36) block, one in an MA-M (/28) block, the others in MA-L blocks without
    longer prefixes inside."""
    tables = vendors_by_length(manuf)
    longer = {p[:6] for length in (7, 9) for p in tables.get(length, {})}
    picked: dict[str, str] = {}
    for length in (9, 7, 6):
        for prefix, name in tables.get(length, {}).items():
            usable = int(prefix[:2], 16) & 3 == 0 and (length > 6 or prefix not in longer)
            if usable and name not in picked.values() and name != "Private":
                picked[in_block(prefix, "0" * (9 - length) + f"{len(picked) + 1:03x}")] = name
                break
    for prefix, name in tables.get(6, {}).items():
        if len(picked) == count:
            break
        if int(prefix[:2], 16) & 3 == 0 and prefix not in longer and name not in picked.values():
            picked[in_block(prefix, f"{len(picked) + 1:06x}")] = name
    return picked


@pytest.fixture(scope="module")
def segment(manuf: list[Entry]) -> Iterator[Segment]:
    require_root("network namespaces, raw sockets")
    require_tool("ip")
    require_tool("setpriv")
    tag = f"{os.getpid() % 100000}"
    seg = Segment(f"iotscanS{tag}", f"iotscanD{tag}", vendor_macs(manuf, len(DEVICE_ADDRESSES)))
    s, d = seg.scanner, seg.devices
    try:
        for netns in (s, d):
            sh("ip", "netns", "add", netns)
            seg.made.append(netns)
            sh("ip", "-n", netns, "link", "set", "lo", "up")
        # One namespace holds five devices: each answers ARP only for its own addresses,
        # accepts packets for its addresses arriving on another device, and has no DAD wait.
        sh("ip", "netns", "exec", d, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1",
           "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.all.rp_filter=0",
           "net.ipv4.conf.default.rp_filter=0", "net.ipv6.conf.default.accept_dad=0")  # fmt: skip
        sh("ip", "netns", "exec", s, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0")
        sh("ip", "link", "add", "eth0", "netns", s, "type", "veth", "peer", "name", "up0",
           "netns", d)  # fmt: skip
        sh("ip", "-n", s, "addr", "add", f"{SCANNER}/24", "dev", "eth0")
        sh("ip", "-n", s, "addr", "add", f"{V6}1/64", "dev", "eth0", "nodad")
        sh("ip", "-n", s, "link", "set", "eth0", "up")
        sh("ip", "-n", d, "link", "set", "up0", "up")
        for n, (addresses, address) in enumerate(zip(DEVICE_ADDRESSES, seg.macs, strict=True)):
            dev = f"m{n}"
            sh("ip", "-n", d, "link", "add", dev, "link", "up0", "address", address, "type",
               "macvlan", "mode", "bridge")  # fmt: skip
            for ip in addresses:
                sh("ip", "-n", d, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", d, "link", "set", dev, "up")
        sh("ip", "-n", d, "addr", "add", f"{V6}10/64", "dev", "m0", "nodad")
        sh("ip", "-n", d, "addr", "add", f"{FAR}.5/32", "dev", "lo")
        sh("ip", "-n", s, "route", "add", f"{FAR}.0/24", "via", DEVICE_ADDRESSES[0][0])
        addrs = json.loads(sh("ip", "-j", "-n", d, "addr", "show", "dev", "m0"))
        local = next(a["local"] for a in addrs[0]["addr_info"] if a["local"].startswith("fe80"))
        seg.link_local = f"{local}%eth0"
        seg.listener = subprocess.Popen(
            ["ip", "netns", "exec", d, sys.executable, "-c", LISTEN, DEVICE_ADDRESSES[0][0],
             str(OPEN_PORT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert seg.listener.stdout is not None and seg.listener.stdout.readline() == "ready\n"
        yield seg
    finally:
        if seg.listener is not None:
            seg.listener.kill()
            seg.listener.wait(timeout=10)
        for netns in seg.made:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)


def lan(*hosts: int) -> list[str]:
    return [f"{LAN}.{h}" for h in hosts]


SWEEP = lan(*range(1, 255))


def test_a_24_is_swept_in_5_s_with_each_device_s_mac_and_vendor(segment: Segment) -> None:
    done = segment.run("discover", targets=SWEEP)
    found = {h["address"]: h for h in done["result"]}
    # The scanner answers for itself (over loopback, so by ICMP); nothing else is there.
    assert set(found) == LIVE | {SCANNER}
    assert found[SCANNER]["how"] == "icmp" and found[SCANNER]["mac"] == ""
    for addresses, (address, vendor) in zip(DEVICE_ADDRESSES, segment.vendors.items(), strict=True):
        for ip in addresses:
            assert (found[ip]["how"], found[ip]["mac"], found[ip]["vendor"]) == (
                "arp",
                address,
                vendor,
            )
            assert 0 <= found[ip]["rtt"] < 1.5
    assert [h["address"] for h in done["result"]] == sorted(
        found, key=lambda a: int(a.split(".")[3])
    )
    print(f"/24 discovered in {done['elapsed']:.2f} s")
    assert done["elapsed"] <= 5.0, f"a /24 took {done['elapsed']:.2f} s"


def test_a_device_slow_to_answer_arp_is_still_found(segment: Segment) -> None:
    # As a device in Wi-Fi power save is: it hears a broadcast only after the next DTIM beacon,
    # while the others answer within a ms and so would have the sweep wait no longer.
    slow, fast = DEVICE_ADDRESSES[-1], DEVICE_ADDRESSES[0]
    dev = f"m{len(DEVICE_ADDRESSES) - 1}"
    sh("ip", "-n", segment.devices, "link", "set", dev, "arp", "off")
    responder = subprocess.Popen(
        ["ip", "netns", "exec", segment.devices, sys.executable, "-c", SLOW_ARP, dev, "0.15",
         *slow],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert responder.stdout is not None and responder.stdout.readline() == "ready\n"
        # Asked last, where only the wait after the requests can catch its answers, and on
        # their own with a fast device, where no later requests hold the sweep up either.
        swept = segment.run("discover", targets=[*(a for a in SWEEP if a not in slow), *slow])
        few = segment.run("discover", targets=[fast[0], *slow])
    finally:
        responder.kill()
        responder.wait(timeout=10)
        sh("ip", "-n", segment.devices, "link", "set", dev, "arp", "on")
    for done, up in ((swept, LIVE | {SCANNER}), (few, {fast[0], *slow})):
        found = {h["address"]: h for h in done["result"]}
        assert set(found) == up
        for ip in slow:
            assert (found[ip]["how"], found[ip]["mac"]) == ("arp", segment.macs[-1])
            assert found[ip]["rtt"] >= 0.15
        assert found[fast[0]]["rtt"] < 0.05


def test_arp_sweep_asks_only_the_segment_s_addresses(segment: Segment) -> None:
    targets = [*lan(10, 11, 20, 99, 200), f"{FAR}.5", f"{V6}10"]
    done = segment.run("arp_sweep", targets=targets)
    assert done["result"] == {
        f"{LAN}.10": segment.macs[0], f"{LAN}.11": segment.macs[0], f"{LAN}.20": segment.macs[1]
    }  # fmt: skip


def test_icmp_finds_routed_and_ipv6_hosts(segment: Segment) -> None:
    targets = [*lan(30, 31, 99), f"{FAR}.5", f"{FAR}.6", f"{V6}10", f"{V6}99", segment.link_local]
    done = segment.run("icmp_sweep", targets=targets)
    assert set(done["result"]) == {*lan(30, 31), f"{FAR}.5", f"{V6}10", segment.link_local}
    done = segment.run("discover", targets=targets)
    how = {h["address"]: (h["how"], h["mac"]) for h in done["result"]}
    assert how == {
        f"{LAN}.30": ("arp", segment.macs[2]), f"{LAN}.31": ("arp", segment.macs[2]),
        f"{FAR}.5": ("icmp", ""), f"{V6}10": ("icmp", ""), segment.link_local: ("icmp", ""),
    }  # fmt: skip


def test_tcp_ping_counts_an_open_port_and_a_refused_one(segment: Segment) -> None:
    listening, closed = DEVICE_ADDRESSES[0][0], DEVICE_ADDRESSES[1][0]
    targets = [listening, closed, *lan(98, 99), f"{V6}10", f"{V6}99"]
    done = segment.run("tcp_ping", targets=targets, ports=[OPEN_PORT], timeout=0.5)
    assert set(done["result"]) == {listening, closed, f"{V6}10"}
    # The open port alone, where nothing else would answer: a completed connect counts.
    done = segment.run("tcp_ping", targets=[listening], ports=[OPEN_PORT], timeout=0.5)
    assert done["result"] == [listening]


def test_without_cap_net_raw_it_says_so_and_falls_back_to_tcp(segment: Segment) -> None:
    no_raw = ("setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw")
    for call in ("arp_sweep", "icmp_sweep"):
        done = segment.run(call, *no_raw, targets=lan(10))
        assert "needs CAP_NET_RAW" in done["error"] and "setcap cap_net_raw" in done["error"]
    targets = [*lan(10, 21, 32, 43, 54, 98, 99), f"{V6}10"]
    done = segment.run("discover", *no_raw, targets=targets)
    found = {h["address"]: h for h in done["result"]}
    assert set(found) == {*lan(10, 21, 32, 43), f"{V6}10"}
    assert {h["how"] for h in found.values()} == {"tcp"} and not any(
        h["mac"] for h in found.values()
    )
