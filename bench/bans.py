"""Bans at scale in the real kernel firewall, against the way naive scripts do it.

In network namespaces of its own (removed at the end), as root:
1. 10,000 bans given to the engine as one decision (``bans.ban`` with ``addresses``), timed
   until the kernel's set holds all of them; against one ``nft add rule ... ip saddr X drop``
   process per address into a chain of its own (``--naive`` addresses, 2,000 by default: each
   costs more as the chain grows, so the full 10,000 take minutes; the per-address figure and
   the time for all are both printed).
2. An engine started over a store holding 10,000 active bans, timed until the kernel has them.
3. The packet path: UDP datagrams from a client namespace to the server namespace for a few
   seconds, with the ban set empty and then holding 10,000 bans (none of them the client).
Targets: all enforced within 1 s, restored within 2 s.
The banned addresses are from 198.18.0.0/15 (RFC 2544's benchmarking range); no packet is
sent to them.

Run: sudo .venv/bin/python bench/bans.py [--bans 10000] [--naive 2000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import EngineProcess, start_engine

TARGET_APPLY, TARGET_RESTORE = 1.0, 2.0
CLIENT, SERVER = "10.254.61.1", "10.254.61.2"
PORT = 9

RECEIVE = f"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("{SERVER}", {PORT})); s.settimeout(1.0)
count = 0
print("ready", flush=True)
try:
    while True:
        s.recv(2048); count += 1
except TimeoutError:
    pass
print(count, flush=True)
"""

SEND = f"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[1]); sent = 0; data = bytes(64)
while time.monotonic() < end:
    for _ in range(100):
        s.sendto(data, ("{SERVER}", {PORT}))
    sent += 100
print(sent)
"""

NAIVE = """
import subprocess, sys, time
addresses = sys.argv[1:]
subprocess.run(["nft", "add", "table", "inet", "naive"], check=True)
subprocess.run(["nft", "add", "chain", "inet", "naive", "input",
                "{ type filter hook input priority 0; policy accept; }"], check=True)
start = time.perf_counter()
for address in addresses:
    subprocess.run(["nft", "add", "rule", "inet", "naive", "input", "ip", "saddr", address,
                    "drop"], check=True)
print(time.perf_counter() - start)
subprocess.run(["nft", "delete", "table", "inet", "naive"], check=True)
"""


def run(netns: str, *command: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, *command], capture_output=True,
                          text=True, **kwargs)  # fmt: skip


def set_size(netns: str) -> int:
    done = run(netns, "nft", "-j", "list", "set", "inet", "iotsec", "ban4")
    if done.returncode != 0:
        return 0
    for item in json.loads(done.stdout)["nftables"]:
        if "set" in item:
            return len(item["set"].get("elem", []))
    return 0


def wait_for_set(netns: str, count: int, started: float, limit: float = 60) -> float:
    while set_size(netns) < count:
        if time.perf_counter() - started > limit:
            sys.exit(f"the set never held {count} bans")
        time.sleep(0.005)
    return time.perf_counter() - started


def throughput(client: str, server: str, seconds: float) -> tuple[int, int]:
    receiver = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-c", RECEIVE],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert receiver.stdout is not None
    receiver.stdout.readline()  # ready
    sent = int(run(client, sys.executable, "-c", SEND, str(seconds), check=True).stdout)
    received = int(receiver.stdout.readline())
    receiver.wait(timeout=30)
    return sent, received


def engine_in(netns: str, directory: Path) -> EngineProcess:
    config = '[respond]\nbackend = "nftables"\nmaxtime = "30d"\n'
    return start_engine(directory, config, prefix=("ip", "netns", "exec", netns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bans", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: network namespaces and the kernel firewall")
    tag = str(os.getpid() % 100000)
    client, server = f"iotbbC{tag}", f"iotbbS{tag}"
    addresses = [str(a) for a in ipaddress.ip_network("198.18.0.0/15").hosts()][: args.bans]
    steps = [
        ["ip", "netns", "add", client], ["ip", "netns", "add", server],
        ["ip", "link", "add", f"bbC{tag}", "netns", client, "type", "veth", "peer", "name",
         f"bbS{tag}", "netns", server],
        ["ip", "-n", client, "addr", "add", f"{CLIENT}/24", "dev", f"bbC{tag}"],
        ["ip", "-n", server, "addr", "add", f"{SERVER}/24", "dev", f"bbS{tag}"],
        ["ip", "-n", client, "link", "set", f"bbC{tag}", "up"],
        ["ip", "-n", server, "link", "set", f"bbS{tag}", "up"],
        ["ip", "-n", server, "link", "set", "lo", "up"],
    ]  # fmt: skip
    engine = None
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=30)
        with tempfile.TemporaryDirectory(prefix="iotsec-bench-bans-") as tmp:
            engine = engine_in(server, Path(tmp))
            sent, received = throughput(client, server, args.seconds)
            empty_rate = received / args.seconds
            print(f"packet path, ban set empty:  {sent:,} sent, {received:,} received, "
                  f"{empty_rate:,.0f} datagrams/s")  # fmt: skip

            client_api = engine.client()
            started = time.perf_counter()
            client_api.request("bans.ban", {"addresses": addresses, "for": "1h",
                                            "reason": "bench"})  # fmt: skip
            answered = time.perf_counter() - started
            applied = wait_for_set(server, len(addresses), started)
            print(f"engine: {len(addresses):,} bans as one decision: answered in {answered:.2f} s,"
                  f" all enforced in {applied:.2f} s")  # fmt: skip

            sent, received = throughput(client, server, args.seconds)
            full_rate = received / args.seconds
            print(f"packet path, {len(addresses):,} bans: {sent:,} sent, {received:,} received,"
                  f" {full_rate:,.0f} datagrams/s"
                  f" ({full_rate / empty_rate:.2f}x the empty set)")  # fmt: skip

            naive = addresses[: args.naive]
            done = run(server, sys.executable, "-c", NAIVE, *naive, check=True)
            naive_seconds = float(done.stdout.strip().splitlines()[-1])
            per = naive_seconds / len(naive)
            print(f"naive: one 'nft add rule' per address, {len(naive):,} addresses in"
                  f" {naive_seconds:.2f} s ({per * 1000:.1f} ms each, rising with the"
                  " chain)")  # fmt: skip
            ratio = naive_seconds / applied * len(addresses) / len(naive)
            print(f"ours vs naive for {len(addresses):,}: at least {ratio:,.0f}x faster"
                  f" (naive for all, at its average so far:"
                  f" {per * len(addresses):.1f} s)")  # fmt: skip

            engine.stop()
            run(server, "nft", "flush", "ruleset", check=True)
            started = time.perf_counter()
            engine = engine_in(server, Path(tmp))
            restored = wait_for_set(server, len(addresses), started)
            print(f"engine start with {len(addresses):,} active bans: enforced after "
                  f"{restored:.2f} s (process start included)")  # fmt: skip
            checks = [
                (f"all {len(addresses):,} enforced within {TARGET_APPLY:g} s", applied,
                 TARGET_APPLY),
                (f"restored within {TARGET_RESTORE:g} s", restored, TARGET_RESTORE),
            ]  # fmt: skip
            for name, value, bound in checks:
                print(f"target {name}: {'PASS' if value <= bound else 'FAIL'} ({value:.2f} s)")
            engine.stop()
            engine = None
    finally:
        if engine is not None:
            engine.stop()
        for netns in (client, server):
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)


if __name__ == "__main__":
    main()
