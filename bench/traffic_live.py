"""Live capture loss: the engine, and `iotsec capture`, on one end of a veth pair while UDP
arrives at 100,000/s.

Two network namespaces of its own (iotbench<pid>s and iotbench<pid>r, 10.253.99.0/30, no other
route), a veth pair between them. In the receiver, first an engine (`python -m engine`, capture
started through its control socket with `capture.start`, the ring of recent packets and the
facts on, as in production), then `iotsec capture --iface ... --bpf 'udp port 9999' --json`;
for each, paced senders (bench/udp_send.py; two share the rate, leaving headroom on a small
machine) send small datagrams from the other namespace for the given seconds, and what the
capture counted is compared with what was sent. Target: loss <= 1 %.
Needs root (it makes namespaces); both namespaces and every process it started are removed at
the end, whatever happens.

Run: sudo .venv/bin/python bench/traffic_live.py [--rate 100000] [--seconds 5] [--senders 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.control.client import Client
from engine.control.protocol import ControlError
from engine.lab.processes import alive, end
from engine.lab.topology import LabError, ip

SENDER = Path(__file__).resolve().parent / "udp_send.py"
SEND_ADDRESS, RECV_ADDRESS, PREFIX_LEN = "10.253.99.1", "10.253.99.2", 30
SEND_IF, RECV_IF = "bench0", "bench1"
PORT = 9999
TARGET_LOSS = 1.0


def make_namespaces(send: str, recv: str) -> None:
    """Two namespaces joined by a veth pair; a static neighbour entry, so no datagram waits
    for ARP."""
    for netns in (send, recv):
        ip("netns", "add", netns)
        ip("link", "set", "lo", "up", netns=netns)
    ip("link", "add", SEND_IF, "type", "veth", "peer", "name", RECV_IF, "netns", recv, netns=send)
    for netns, dev, addr in ((send, SEND_IF, SEND_ADDRESS), (recv, RECV_IF, RECV_ADDRESS)):
        ip("addr", "add", f"{addr}/{PREFIX_LEN}", "dev", dev, netns=netns)
        ip("link", "set", dev, "up", netns=netns)
    recv_mac = json.loads(ip("-j", "link", "show", RECV_IF, netns=recv))[0]["address"]
    ip("neigh", "replace", RECV_ADDRESS, "lladdr", recv_mac, "dev", SEND_IF, "nud", "permanent",
       netns=send)  # fmt: skip


def remove_namespaces(*names: str) -> None:
    for netns in names:
        ip("netns", "del", netns, check=False)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*"):
            try:
                pids += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
        i += 1
    return pids


def has_packet_socket(pid: int) -> bool:
    """Whether ``pid`` or a descendant holds a running AF_PACKET socket (in its namespace)."""
    for member in process_tree(pid):
        try:
            fds = [os.readlink(fd) for fd in Path(f"/proc/{member}/fd").iterdir()]
            rows = Path(f"/proc/{member}/net/packet").read_text().splitlines()[1:]
        except OSError:
            continue
        inodes = {fd[len("socket:[") : -1] for fd in fds if fd.startswith("socket:[")}
        for row in rows:
            columns = row.split()  # sk RefCnt Type Proto Iface R(unning) Rmem User Inode
            if columns[8] in inodes and columns[5] == "1":
                return True
    return False


def start_capture(iotsec: Path, recv: str, errors: IO[bytes]) -> subprocess.Popen[bytes]:
    """`iotsec capture` in the receiver namespace, once it holds a packet socket."""
    argv = ["ip", "netns", "exec", recv, str(iotsec), "capture", "--iface", RECV_IF, "--json",
            "--bpf", f"udp port {PORT}"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
    deadline = time.monotonic() + 15
    while not has_packet_socket(proc.pid):
        if proc.poll() is not None or time.monotonic() > deadline:
            errors.seek(0)
            detail = errors.read().decode(errors="replace").strip()[-2000:]
            raise RuntimeError(f"iotsec capture did not start capturing:\n{detail}")
        time.sleep(0.05)
    time.sleep(0.3)  # the socket exists; let the capture loop reach its first read
    return proc


def start_engine(recv: str, directory: Path, errors: IO[bytes]) -> subprocess.Popen[bytes]:
    """An engine of its own in the receiver namespace, capturing once its socket answers."""
    config = directory / "iotsec.toml"
    config.write_text(f'[store]\npath = "{directory / "db" / "iotsec.db"}"\n'
                      f'[control]\nsocket = "{directory / "control.sock"}"\n')  # fmt: skip
    argv = ["ip", "netns", "exec", recv, sys.executable, "-m", "engine", "--config", str(config)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors)
    deadline = time.monotonic() + 20
    while True:
        try:
            with Client(directory / "control.sock") as client:
                client.request("capture.start", {"interfaces": [RECV_IF],
                                                 "bpf": f"udp port {PORT}"})  # fmt: skip
            return proc
        except ControlError as exc:
            if exc.code != "unreachable" or proc.poll() is not None:
                raise RuntimeError(f"the engine did not start capturing: {exc}") from None
            if time.monotonic() > deadline:
                raise RuntimeError("the engine did not answer within 20 s") from None
            time.sleep(0.1)


def stop_engine(proc: subprocess.Popen[bytes], directory: Path) -> dict[str, Any]:
    """Stop the engine's capture (its counts), then the engine."""
    with Client(directory / "control.sock") as client:
        status = client.request("capture.stop")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    return status


def blast(send: str, rate: int, seconds: float, senders: int) -> list[dict[str, Any]]:
    """Run ``senders`` paced senders in the sender namespace, each with a share of ``rate``,
    all starting at the same moment; their reports."""
    start_at = time.time() + 0.5  # time for every interpreter to start first
    shares = [rate // senders + (i < rate % senders) for i in range(senders)]
    procs = []
    for share in shares:
        argv = ["ip", "netns", "exec", send, sys.executable, str(SENDER), RECV_ADDRESS,
                str(PORT), str(share), str(seconds), str(start_at)]  # fmt: skip
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE))
    try:
        return [json.loads(proc.communicate(timeout=seconds + 30)[0]) for proc in procs]
    finally:
        end(p.pid for p in procs if alive(p.pid))


def stop_capture(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """SIGINT the capture and return the stats of its last line."""
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    lines = out.decode().strip().splitlines()
    if not lines or "stats" not in (last := json.loads(lines[-1])):
        raise RuntimeError(f"iotsec capture ended without a stats line: {lines[-3:]}")
    return last["stats"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=100_000, help="datagrams a second")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--senders", type=int, default=2, help="sender processes sharing the rate")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/traffic_live.py needs root: it makes network namespaces (run it with sudo)")
    # SIGTERM unwinds like Ctrl-C, so the namespaces are removed either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench/traffic_live.py: terminated"))
    iotsec = Path(sys.executable).with_name("iotsec")
    send, recv = f"iotbench{os.getpid()}s", f"iotbench{os.getpid()}r"
    results: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = []
    running: list[subprocess.Popen[bytes]] = []
    try:
        make_namespaces(send, recv)
        with tempfile.TemporaryFile() as errors, tempfile.TemporaryDirectory() as tmp:
            engine = start_engine(recv, Path(tmp), errors)
            running.append(engine)
            reports = blast(send, args.rate, args.seconds, args.senders)
            time.sleep(1.0)  # let the capture drain what the kernel still holds
            results.append(("engine (capture.start)", reports, stop_engine(engine, Path(tmp))))
            capture = start_capture(iotsec, recv, errors)
            running.append(capture)
            reports = blast(send, args.rate, args.seconds, args.senders)
            time.sleep(1.0)
            results.append(("iotsec capture", reports, stop_capture(capture)))
    except (LabError, RuntimeError, ControlError) as exc:
        sys.exit(f"bench/traffic_live.py: {exc}")
    finally:
        end(p.pid for p in running if alive(p.pid))
        remove_namespaces(send, recv)
    print(f"{args.senders} senders asked for {args.rate:,}/s for {args.seconds:g} s each run; "
          f"capture on {RECV_IF} (udp port {PORT})")  # fmt: skip
    print(f"{'capturer':<24}{'sent':>11}{'sent/s':>10}{'captured':>11}{'kernel':>8}"
          f"{'queue':>7}{'loss':>8}  target <= {TARGET_LOSS:g}%")  # fmt: skip
    for name, reports, stats in results:
        sent = sum(r["sent"] for r in reports)
        span = max(r["ended"] for r in reports) - min(r["started"] for r in reports)
        captured = stats["packets"]
        loss = 100 * (sent - captured) / sent if sent else 0.0
        verdict = "met" if loss <= TARGET_LOSS else "NOT met"
        drops = f"{stats['kernel_drops']:>8,}{stats['queue_drops']:>7,}"
        print(f"{name:<24}{sent:>11,}{sent / span:>10,.0f}{captured:>11,}{drops}"
              f"{loss:>7.2f}%  {verdict}")  # fmt: skip
        if sent / span < 0.95 * args.rate:
            print(f"  the senders fell short of {args.rate:,}/s: try --senders {args.senders + 1}")


if __name__ == "__main__":
    main()
