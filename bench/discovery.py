"""Host discovery of a /24 against nmap's ping scan, on a segment of IoT devices.

In two network namespaces of its own joined by a veth pair (removed at the end), as root: the
"devices" namespace holds 40 macvlan devices on its veth end, each with its own MAC (from a
vendor in the OUI database) and one address of the /24; the rest of the /24 is empty. The whole
/24 is swept from the "scanner" namespace by our discovery (ARP, with vendors) and by
``nmap -n -sn -T4`` in the same run. Our time is that of ``discover`` in a fresh interpreter,
so it includes loading scapy and the OUI database; nmap's is that of its whole process.
Target: a /24 discovered in at most 5 s, with the same live hosts and MACs as nmap's.

Run: sudo .venv/bin/python bench/discovery.py [--runs 3]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scan import ROOT, run, runs_and_tag
from engine.scan import oui
from engine.scan.scope import expand, parse_scope
from tests.test_scan_discovery import DRIVE, Entry, vendor_macs

NET = "10.254.81.0/24"
SCANNER = "10.254.81.1"
# The devices spread over the /24, as DHCP leases are, not packed at its start.
DEVICES = [f"10.254.81.{10 + 6 * n}" for n in range(40)]
TARGET = 5.0

Found = dict[str, str]  # address -> MAC ("" when the answer came without one)


def setup(scanner: str, devices: str, tag: str) -> dict[str, str]:
    """The segment; returns address -> MAC of its devices."""
    registry = oui.registry()
    if not registry.path:
        raise SystemExit("no OUI database is installed (Debian: libwireshark-data or ieee-data)")
    entries = [Entry(prefix, name) for table in registry.tables.values()
               for prefix, name in table.items()]  # fmt: skip
    macs = list(vendor_macs(entries, len(DEVICES)))
    for netns in (scanner, devices):
        run("ip", "netns", "add", netns)
        run("ip", "-n", netns, "link", "set", "lo", "up")
        # No IPv6: 40 links coming up would send router solicitations and DAD into the sweep.
        run("ip", "netns", "exec", netns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1")  # fmt: skip
    # Each device answers ARP only for its own address, though all are in one namespace.
    run("ip", "netns", "exec", devices, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1",
        "net.ipv4.conf.all.arp_announce=2", "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0")  # fmt: skip
    scan_end, device_end = f"ds{tag}", f"dd{tag}"
    run("ip", "link", "add", scan_end, "netns", scanner, "type", "veth", "peer", "name",
        device_end, "netns", devices)  # fmt: skip
    run("ip", "-n", scanner, "addr", "add", f"{SCANNER}/24", "dev", scan_end)
    run("ip", "-n", scanner, "link", "set", scan_end, "up")
    run("ip", "-n", devices, "link", "set", device_end, "up")
    for n, (address, mac) in enumerate(zip(DEVICES, macs, strict=True)):
        run("ip", "-n", devices, "link", "add", f"m{n}", "link", device_end, "address", mac,
            "type", "macvlan", "mode", "bridge")  # fmt: skip
        run("ip", "-n", devices, "addr", "add", f"{address}/24", "dev", f"m{n}")
        run("ip", "-n", devices, "link", "set", f"m{n}", "up")
    return dict(zip(DEVICES, macs, strict=True))


def ours(scanner: str) -> tuple[Found, float]:
    targets = [str(a) for a in expand([NET], parse_scope([NET]))]
    done = run("ip", "netns", "exec", scanner, sys.executable, "-c", DRIVE, "discover",
               json.dumps({"targets": targets}), cwd=ROOT, timeout=120)  # fmt: skip
    result = json.loads(done.stdout)
    if "error" in result:
        raise SystemExit(result["error"])
    return {h["address"]: h["mac"] for h in result["result"]}, result["elapsed"]


def nmap(scanner: str) -> tuple[Found, float]:
    started = time.monotonic()
    done = run("ip", "netns", "exec", scanner, "nmap", "-n", "-sn", "-T4", "-oX", "-", NET,
               timeout=120)  # fmt: skip
    seconds = time.monotonic() - started
    found: Found = {}
    for host in ET.fromstring(done.stdout).iter("host"):
        status = host.find("status")
        if status is None or status.get("state") != "up":
            continue
        addresses = {a.get("addrtype"): a.get("addr", "") for a in host.iter("address")}
        found[addresses["ipv4"]] = addresses.get("mac", "").lower()
    return found, seconds


def main() -> int:
    runs, tag = runs_and_tag(__doc__)
    scanner, devices = f"bdisc-s-{tag}", f"bdisc-d-{tag}"
    try:
        expected = {**setup(scanner, devices, tag), SCANNER: ""}
        times: dict[str, list[float]] = {"ours": [], "nmap": []}
        same_hosts = same_macs = True
        for _ in range(runs):
            found = {}
            for name, fn in (("ours", ours), ("nmap", nmap)):
                found[name], seconds = fn(scanner)
                times[name].append(seconds)
            same_hosts &= set(found["ours"]) == set(found["nmap"]) == set(expected)
            # nmap names no MAC for the scanner itself; every MAC it names must be ours too.
            same_macs &= all(found["ours"].get(a) == mac == expected.get(a)
                             for a, mac in found["nmap"].items() if mac)  # fmt: skip
            for name in ("ours", "nmap"):
                missing, extra = set(expected) - set(found[name]), set(found[name]) - set(expected)
                if missing or extra:
                    print(f"{name}: missing {sorted(missing)}, unexpected {sorted(extra)}")
        median = {name: statistics.median(each) for name, each in times.items()}
        mine, theirs = median["ours"], median["nmap"]
        print(
            f"{NET}: {len(DEVICES)} devices and the scanner up, the rest empty "
            f"(median of {runs} runs)"
        )
        print(f"{'discovery':<34} {'seconds':>8}  runs")
        for label, name in (("iotsec discover (ARP)", "ours"), ("nmap -n -sn -T4", "nmap")):
            each = " ".join(f"{t:.2f}" for t in times[name])
            print(f"{label:<34} {median[name]:>8.2f}  {each}")
        print(f"same live hosts ({len(expected)}): {'PASS' if same_hosts else 'FAIL'}")
        print(f"same MACs: {'PASS' if same_macs else 'FAIL'}")
        print(f"time ours / nmap: {mine / theirs:.2f}")
        print(f"ours <= {TARGET:.0f} s: {'PASS' if mine <= TARGET else 'FAIL'}")
        return 0 if same_hosts and same_macs and mine <= TARGET else 1
    finally:
        for netns in (scanner, devices):
            subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
