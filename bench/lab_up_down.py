"""Time `iotsec lab up` from nothing and `lab down`, against the issue's bounds (20 s, 5 s).

Runs as root on a lab with its own prefix and ranges, so a lab a user brought up is untouched.
Run: sudo .venv/bin/python bench/lab_up_down.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import LabConfig
from engine.lab import lifecycle

BENCH_LAB = LabConfig(prefix="iotbn", lan="10.253.47.0/24", outside="10.253.48.0/24")
UP_BOUND, DOWN_BOUND = 20.0, 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    lifecycle.down(BENCH_LAB)
    ups, downs = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        lifecycle.up(BENCH_LAB)
        ups.append(time.perf_counter() - started)
        started = time.perf_counter()
        lifecycle.down(BENCH_LAB)
        downs.append(time.perf_counter() - started)
    up, down = statistics.median(ups), statistics.median(downs)
    print(f"{'step':<24} {'median s':>9} {'max s':>7} {'bound s':>8} {'ratio':>6}")
    print(f"{'lab up from nothing':<24} {up:>9.2f} {max(ups):>7.2f} {UP_BOUND:>8.0f} "
          f"{up / UP_BOUND:>6.2f}")  # fmt: skip
    print(f"{'lab down':<24} {down:>9.2f} {max(downs):>7.2f} {DOWN_BOUND:>8.0f} "
          f"{down / DOWN_BOUND:>6.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
