"""Serial console throughput and reconnect time, iotsec against tio on the same device.

The device is the lab's camera emulator on a socat pty pair. Throughput: the shell is asked for
``flood N`` (N bytes of log lines at full speed) and then a marker command; the time runs from
typing to the marker's answer on the screen, and the console's own CPU time is read from /proc.
For iotsec the bytes go device -> engine (session, transcript, analyser) -> control socket ->
``iotsec serial PATH`` (the Serial pane, 80x24 pty); for tio, device -> tio -> the same pty.
Reconnect: the device is unplugged and plugged back in at the same path, and the time runs
from the path's return to the session being connected again (the engine's event; tio's
"Connected" line).

Run: .venv/bin/python bench/serial_console.py [--bytes 8000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ptyrun import PtyProcess
from tests.conftest import BOOT_LOG, EngineProcess, SerialDevice, start_serial_engine

TARGET_RATE = 1_000_000  # bytes/s through to the pane
TARGET_CPU = 0.30  # of one core, for the console
TARGET_RECONNECT = 1.0  # seconds


def flood(screen: PtyProcess, size: int, tag: str) -> tuple[float, float]:
    """Ask for ``size`` bytes and a marker; (seconds, console CPU seconds) until it shows."""
    cpu = screen.cpu_seconds()
    start = time.perf_counter()
    os.write(screen.fd, f"flood {size}\r".encode())
    os.write(screen.fd, f"{tag}\r".encode())
    screen.wait_for(f"{tag}: not found".encode(), timeout=300)
    return time.perf_counter() - start, screen.cpu_seconds() - cpu


def throughput(name: str, argv: list[str], size: int, runs: int, ready: bytes) -> dict:
    screen = PtyProcess(argv, cols=80, rows=24)
    try:
        screen.wait_for(ready, timeout=30)
        results = [flood(screen, size, f"mark{name}{n}") for n in range(runs)]
    finally:
        screen.stop()
    seconds = statistics.median(r[0] for r in results)
    cpu = statistics.median(r[1] / r[0] for r in results)
    return {"rate": size / seconds, "seconds": seconds, "cpu": cpu}


def iotsec_reconnect(engine: EngineProcess, device: SerialDevice, runs: int) -> list[float]:
    client = engine.client("bench")
    sid = client.request("serial.open", {"port": str(device.path)})["id"]
    times = []
    try:
        for _ in range(runs):
            device.unplug()
            while client.request("serial.get", {"id": sid, "tail": 0})["state"] == "connected":
                time.sleep(0.005)
            device.plug()  # returns once the path is back
            back = time.perf_counter()
            while client.request("serial.get", {"id": sid, "tail": 0})["state"] != "connected":
                time.sleep(0.002)
            times.append(time.perf_counter() - back)
    finally:
        client.request("serial.close", {"id": sid})
        client.close()
    return times


def tio_reconnect(tio: str, device: SerialDevice, runs: int) -> list[float]:
    screen = PtyProcess([tio, "--timestamp", str(device.path)], cols=80, rows=24)
    times = []
    try:
        screen.wait_for(b"Connected", timeout=10)
        for _ in range(runs):
            device.unplug()
            screen.wait_for(b"Disconnected", timeout=10)
            seen = screen.output.count(b"Connected") - screen.output.count(b"Disconnected")
            device.plug()
            back = time.perf_counter()
            while screen.output.count(b"Connected") - screen.output.count(b"Disconnected") <= seen:
                time.sleep(0.002)
            times.append(time.perf_counter() - back)
    finally:
        screen.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=8_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tio = shutil.which("tio")
    if shutil.which("socat") is None:
        sys.exit("socat is needed (make deps, as root)")
    directory = Path(tempfile.mkdtemp(prefix="iotsec-bench-serial-"))
    engine = start_serial_engine(directory)
    device = SerialDevice(directory / "ttyBENCH", ["--uboot", str(BOOT_LOG)], directory / "d.log")
    device.plug()
    iotsec = [
        sys.executable,
        "-m",
        "console.cli",
        "--config",
        str(engine.config),
        "serial",
        str(device.path),
    ]
    try:
        ours = throughput("iotsec", iotsec, args.bytes, args.runs, b"/ #")
        ours_reconnect = iotsec_reconnect(engine, device, args.runs)
        theirs = theirs_reconnect = None
        if tio:
            device.unplug()
            device.plug()
            theirs = throughput("tio", [tio, str(device.path)], args.bytes, args.runs, b"/ #")
            theirs_reconnect = tio_reconnect(tio, device, args.runs)
    finally:
        device.unplug()
        engine.stop()
        shutil.rmtree(directory, ignore_errors=True)
    mb = args.bytes / 1e6
    print(f"throughput, {mb:.0f} MB flood through to an 80x24 screen (median of {args.runs}):")
    print(
        f"  iotsec  {ours['rate'] / 1e6:6.2f} MB/s  {ours['seconds']:6.2f} s  console CPU"
        f" {ours['cpu'] * 100:5.1f}% of a core"
    )
    if theirs:
        print(
            f"  tio     {theirs['rate'] / 1e6:6.2f} MB/s  {theirs['seconds']:6.2f} s  tio CPU"
            f"     {theirs['cpu'] * 100:5.1f}% of a core"
        )
        print(f"  ratio (iotsec time / tio time): {ours['seconds'] / theirs['seconds']:.2f}")
    else:
        print("  tio is not installed (apt-get install tio): no anchor")
    ok = ours["rate"] >= TARGET_RATE and ours["cpu"] <= TARGET_CPU
    print(
        f"  target >= {TARGET_RATE / 1e6:.0f} MB/s with console CPU <= {TARGET_CPU:.0%}:"
        f" {'PASS' if ok else 'FAIL'}"
    )
    ours_s = statistics.median(ours_reconnect)
    print(f"reconnect after replug (median of {args.runs}):")
    print(f"  iotsec  {ours_s * 1000:6.0f} ms  (worst {max(ours_reconnect) * 1000:.0f} ms)")
    if theirs_reconnect:
        theirs_s = statistics.median(theirs_reconnect)
        print(f"  tio     {theirs_s * 1000:6.0f} ms  (worst {max(theirs_reconnect) * 1000:.0f} ms)")
        print(f"  ratio (iotsec / tio): {ours_s / theirs_s:.2f}")
    print(f"  target <= {TARGET_RECONNECT:.0f} s: {'PASS' if max(ours_reconnect) <= 1 else 'FAIL'}")


if __name__ == "__main__":
    main()
