"""Console time to first frame, against a minimal Textual app on the same terminal.

Both run on an 80x24 pty; the time is from fork to the first screen that shows the app's
content. The console attaches to a running engine (so engine start-up is not counted).

Run: .venv/bin/python bench/console_first_frame.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ptyrun import PtyProcess
from tests.conftest import start_engine

MINIMAL_APP = """
from textual.app import App
from textual.widgets import Footer, Static
class Minimal(App):
    def compose(self):
        yield Static("minimal-ready")
        yield Footer()
Minimal().run()
"""
# The status bar says this once the console has drawn its main screen.
CONSOLE_MARKER = b"Alerts"


def time_to_frame(argv: list[str], marker: bytes) -> float:
    proc = PtyProcess(argv)
    try:
        return proc.wait_for(marker)
    finally:
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="iotsec-bench-") as tmp:
        engine = start_engine(Path(tmp))
        console = [sys.executable, "-m", "console.cli", "--config", str(engine.config),
                   "console", "--no-spawn"]  # fmt: skip
        minimal = [sys.executable, "-c", MINIMAL_APP]
        time_to_frame(console, CONSOLE_MARKER)  # warm the page cache for both
        time_to_frame(minimal, b"minimal-ready")
        ours = [time_to_frame(console, CONSOLE_MARKER) for _ in range(args.runs)]
        anchor = [time_to_frame(minimal, b"minimal-ready") for _ in range(args.runs)]
        engine.stop()
    ours_m, anchor_m = statistics.median(ours), statistics.median(anchor)
    print(f"{'program':<34} {'median s':>9} {'max s':>7}")
    print(f"{'iotsec console (80x24)':<34} {ours_m:>9.3f} {max(ours):>7.3f}")
    print(f"{'minimal Textual app (80x24)':<34} {anchor_m:>9.3f} {max(anchor):>7.3f}")
    print(f"ratio console / minimal: {ours_m / anchor_m:.2f}x; "
          f"target <= 1.0 s: {'met' if max(ours) <= 1.0 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
