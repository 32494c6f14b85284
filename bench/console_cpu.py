"""Console CPU while 1,000 alerts/s arrive, against the same console idle.

An engine and the console (80x24 pty) run as separate processes; a client injects alerts at a
fixed rate over the control socket (half new alerts, half folding into existing ones, as a
real storm looks) and the console's own CPU time is read from /proc.

Run: .venv/bin/python bench/console_cpu.py [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.console_first_frame import CONSOLE_MARKER
from bench.ptyrun import PtyProcess
from tests.conftest import start_engine


def inject(path: Path, rate: int, seconds: float) -> int:
    """Send ``rate`` injects a second for ``seconds``, paced in 10 ms slices; returns the count."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    drain = threading.Thread(target=lambda: [None for _ in sock.makefile("rb")], daemon=True)
    drain.start()
    sent, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate)
        lines = []
        for i in range(sent, due):
            src = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" if i % 2 else "10.99.0.1"
            lines.append(
                json.dumps(
                    {
                        "id": i,
                        "cmd": "alerts.inject",
                        "args": {"title": f"storm {i % 50}", "src": src, "severity": "medium"},
                    }
                ).encode()
                + b"\n"
            )
        if lines:
            sock.sendall(b"".join(lines))
            sent = due
        time.sleep(0.01)
    sock.close()
    return sent


def cpu_share(proc: PtyProcess, seconds: float, work=None) -> tuple[float, int]:
    before, start = proc.cpu_seconds(), time.perf_counter()
    sent = work() if work else (time.sleep(seconds) or 0)
    return (proc.cpu_seconds() - before) / (time.perf_counter() - start), sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="iotsec-bench-") as tmp:
        engine = start_engine(Path(tmp))
        proc = PtyProcess([sys.executable, "-m", "console.cli", "--config", str(engine.config),
                           "console", "--no-spawn"])  # fmt: skip
        proc.wait_for(CONSOLE_MARKER)
        time.sleep(1.0)
        idle, _ = cpu_share(proc, args.seconds)
        busy, sent = cpu_share(
            proc, args.seconds, lambda: inject(engine.socket, args.rate, args.seconds)
        )
        proc.stop()
        engine.stop()
    print(f"{'console state':<40} {'CPU % of one core':>18}")
    print(f"{'idle':<40} {idle * 100:>17.1f}%")
    print(f"{f'{args.rate} alerts/s arriving ({sent} sent)':<40} {busy * 100:>17.1f}%")
    print(f"ratio busy / target 20%: {busy / 0.20:.2f}; "
          f"target <= 20%: {'met' if busy <= 0.20 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
