"""The top of the Traffic pane: whether capture runs (and on what, or why not), packet and byte
rates as sparklines over the last minute, drops, flows and totals, from ``capture.status``.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Sparkline, Static

from console.panes.alert_rows import short_count
from console.panes.traffic_rows import human
from console.untrusted import clean

# The sparklines show this many seconds; a shorter history (capture just began) is padded with
# the zeros it had before, so the line keeps its time scale and new values enter on the right.
RATE_WINDOW = 60

STATE_MARK = {
    "running": ("● running", "bold green"),
    "stopped": ("■ stopped", "bold"),
    "unavailable": ("✕ unavailable", "bold red"),
    "error": ("✕ error", "bold red"),
}


def state_line(status: dict[str, Any]) -> Content:
    """What capture is doing, on what, and why not when it cannot."""
    state = clean(status.get("state"), limit=20) or "unknown"
    mark, style = STATE_MARK.get(state, (f"? {state}", "bold"))
    parts: list[Content | str | tuple[str, str]] = [(mark, style)]
    if reason := clean(status.get("reason"), limit=400):
        parts.append(f": {reason}")
    if interfaces := status.get("interfaces"):
        parts += ["  on ", (", ".join(clean(i, limit=40) for i in interfaces), "bold")]
    if bpf := clean(status.get("bpf"), limit=100):
        parts += ["  bpf ", (bpf, "bold")]
    packets, size = int(status.get("packets") or 0), int(status.get("bytes") or 0)
    parts.append(f"  │ {short_count(packets)} pkts {human(size)}B")
    return Content.assemble(*parts)


def drops_line(status: dict[str, Any]) -> Content:
    kernel, queue = int(status.get("kernel_drops") or 0), int(status.get("queue_drops") or 0)
    text = f"drops: kernel {short_count(kernel)} queue {short_count(queue)}"
    return Content.styled(text, "bold red" if kernel or queue else "")


def flows_line(status: dict[str, Any]) -> Content:
    flows = status.get("flows") or {}
    parts: list[Content | str | tuple[str, str]] = [
        f"flows: {short_count(int(flows.get('active') or 0))} active"
        f" {short_count(int(flows.get('ended') or 0))} ended"
    ]
    if malformed := int(status.get("malformed") or 0):
        parts.append((f" malformed {short_count(malformed)}", "bold"))
    return Content.assemble(*parts)


def _latest(values: list[Any]) -> str:
    return human(float(values[-1])) if values else "-"


def _window(values: list[Any]) -> list[float]:
    values = [float(v) for v in values[-RATE_WINDOW:]]
    return [0.0] * (RATE_WINDOW - len(values)) + values


class CaptureSummary(Vertical):
    DEFAULT_CSS = """
    CaptureSummary {
        height: auto;
        padding: 0 1;
    }
    CaptureSummary #capture-state {
        height: auto;
        max-height: 3;
    }
    CaptureSummary Horizontal {
        height: 1;
    }
    CaptureSummary .rate-label {
        width: 6;
        color: $text-muted;
    }
    CaptureSummary Sparkline {
        width: 1fr;
        max-width: 60;
    }
    CaptureSummary .rate-now {
        width: 7;
        text-align: right;
        padding-right: 1;
    }
    CaptureSummary .counts {
        width: 1fr;
        min-width: 26;
        padding-left: 1;
    }
    """

    def compose(self) -> ComposeResult:
        yield Static("Waiting for the engine…", id="capture-state", markup=False)
        with Horizontal():
            yield Static("pkt/s", classes="rate-label", markup=False)
            yield Sparkline([], id="pps")
            yield Static("-", id="pps-now", classes="rate-now", markup=False)
            yield Static("", id="drops", classes="counts", markup=False)
        with Horizontal():
            yield Static("B/s", classes="rate-label", markup=False)
            yield Sparkline([], id="bps")
            yield Static("-", id="bps-now", classes="rate-now", markup=False)
            yield Static("", id="flow-counts", classes="counts", markup=False)

    def show(self, status: dict[str, Any]) -> None:
        rates = status.get("rates") or {}
        pps, bps = list(rates.get("pps") or []), list(rates.get("bps") or [])
        self.query_one("#capture-state", Static).update(state_line(status))
        self.query_one("#pps", Sparkline).data = _window(pps)
        self.query_one("#bps", Sparkline).data = _window(bps)
        self.query_one("#pps-now", Static).update(_latest(pps))
        self.query_one("#bps-now", Static).update(_latest(bps))
        self.query_one("#drops", Static).update(drops_line(status))
        self.query_one("#flow-counts", Static).update(flows_line(status))

    def show_problem(self, text: str) -> None:
        """Say why there is no capture status to show (not connected, an engine without it)."""
        self.query_one("#capture-state", Static).update(Content.styled(text, "bold"))
