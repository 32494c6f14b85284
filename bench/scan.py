"""The port scan against nmap's connect scan, on a device behind a firewall.

In two network namespaces of its own joined by a veth pair (removed at the end), as root: the
"device" listens on a few ports, answers one more with a reset, and its nft drops the SYNs to
every other port, as a device behind a firewall looks. Ports 1-1024 are scanned from the
"scanner" namespace by our TCP connect scan and by ``nmap -n -Pn -sT -T4`` in the same run.
Target: the same open ports, and our time at most nmap's.

Run: sudo .venv/bin/python bench/scan.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_scan_ports import drop_syns_but, listen  # noqa: E402

SCANNER, DEVICE = "10.254.71.1", "10.254.71.2"
OPEN = (22, 80, 443, 554)
CLOSED = 8080
PORTS = "1-1024"

OURS = f"""
import asyncio, json, time
from engine.config import ScanConfig
from engine.scan.ports import parse_ports, scan_host
config = ScanConfig()
started = time.monotonic()
r = asyncio.run(scan_host("{DEVICE}", parse_ports("{PORTS}"), rate=config.rate,
                          concurrency=config.concurrency, min_timeout=config.min_timeout,
                          max_timeout=config.max_timeout))
print(json.dumps({{"open": r.open, "seconds": time.monotonic() - started}}))
"""


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def setup(tag: str) -> tuple[str, str]:
    scanner, device = f"bscan-s-{tag}", f"bscan-d-{tag}"
    run("ip", "netns", "add", scanner)
    run("ip", "netns", "add", device)
    run("ip", "link", "add", f"bs{tag}", "netns", scanner, "type", "veth", "peer", "name",
        f"bd{tag}", "netns", device)  # fmt: skip
    for netns, link, address in ((scanner, f"bs{tag}", SCANNER), (device, f"bd{tag}", DEVICE)):
        run("ip", "-n", netns, "addr", "add", f"{address}/24", "dev", link)
        run("ip", "-n", netns, "link", "set", link, "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
    drop_syns_but(device, (*OPEN, CLOSED))
    return scanner, device


def ours(scanner: str) -> tuple[list[int], float]:
    done = run("ip", "netns", "exec", scanner, sys.executable, "-c", OURS, cwd=ROOT)
    result = json.loads(done.stdout)
    return result["open"], result["seconds"]


def nmap(scanner: str) -> tuple[list[int], float]:
    started = time.monotonic()
    done = run("ip", "netns", "exec", scanner, "nmap", "-n", "-Pn", "-sT", "-T4", "-p", PORTS,
               "-oX", "-", DEVICE)  # fmt: skip
    seconds = time.monotonic() - started
    tree = ET.fromstring(done.stdout)
    states = ((p.get("portid", "0"), p.find("state")) for p in tree.iter("port"))
    found = sorted(int(port) for port, state in states
                   if state is not None and state.get("state") == "open")  # fmt: skip
    return found, seconds


def runs_and_tag(doc: str) -> tuple[int, str]:
    """A namespace bench's ``--runs`` (its docstring's first line is the help), and a tag that
    makes the names of its namespaces its own."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    return parser.parse_args().runs, uuid.uuid4().hex[:5]


def main() -> int:
    runs, tag = runs_and_tag(__doc__)
    scanner, device = setup(tag)
    listener = None
    try:
        listener = listen(device, DEVICE, OPEN)
        times: dict[str, list[float]] = {"ours": [], "nmap": []}
        found: dict[str, list[int]] = {}
        for _ in range(runs):
            for name, fn in (("ours", ours), ("nmap", nmap)):
                found[name], seconds = fn(scanner)
                times[name].append(seconds)
        mine, theirs = statistics.median(times["ours"]), statistics.median(times["nmap"])
        print(
            f"ports {PORTS} of a device that drops all but {len(OPEN) + 1} of them "
            f"(median of {runs} runs)"
        )
        print(f"{'scanner':<34} {'seconds':>8}  open ports")
        print(f"{'iotsec connect scan':<34} {mine:>8.2f}  {found['ours']}")
        print(f"{'nmap -n -Pn -sT -T4':<34} {theirs:>8.2f}  {found['nmap']}")
        same = found["ours"] == found["nmap"] == list(OPEN)
        print(f"same open ports: {'PASS' if same else 'FAIL'}")
        print(
            f"time ours / nmap: {mine / theirs:.2f}; target <= 1.0: "
            f"{'PASS' if mine <= theirs else 'FAIL'}"
        )
        return 0 if same and mine <= theirs else 1
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for netns in (scanner, device):
            subprocess.run(["ip", "netns", "del", netns], check=False)


if __name__ == "__main__":
    sys.exit(main())
