"""A paced UDP sender for bench/traffic_live.py: RATE small datagrams a second to HOST:PORT for
SECONDS, in 1 ms batches, starting at a given wall-clock time so several senders start together.
Prints one JSON line: how many datagrams it sent, how many sends failed, when it started and
ended.

Run (inside the sender's namespace):
ip netns exec NS .venv/bin/python bench/udp_send.py HOST PORT RATE SECONDS [START_AT]
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

PAYLOAD = bytes(18)  # with the headers, a minimum Ethernet frame of 60 bytes
SLICE = 0.001


def send(host: str, port: int, rate: int, seconds: float, start_at: float = 0.0) -> dict[str, Any]:
    """Send ``rate`` datagrams a second for ``seconds``; each slice sends what is due by then."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sendto, address, total = sock.sendto, (host, port), int(rate * seconds)
    if start_at > time.time():
        time.sleep(start_at - time.time())
    sent = failed = 0
    started, began = time.time(), time.perf_counter()
    while sent + failed < total:
        elapsed = time.perf_counter() - began
        if elapsed >= seconds:
            break
        due = min(total, int((elapsed + SLICE) * rate)) - sent - failed
        for _ in range(due):
            try:
                sendto(PAYLOAD, address)
                sent += 1
            except OSError:  # ENOBUFS when the device queue is full: counted, not retried
                failed += 1
        time.sleep(SLICE / 2)
    sock.close()
    return {"sent": sent, "failed": failed, "started": started, "ended": time.time()}


def main() -> None:
    host, port, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    start_at = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    print(json.dumps(send(host, port, rate, seconds, start_at)), flush=True)


if __name__ == "__main__":
    main()
