"""What an operator does to a device from the Devices pane or its detail view: scan it now, ban
it, look at its traffic, go to its serial console."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.notifications import SeverityLevel

from console.engine_access import engine
from console.messages import ScanStarted, ShowSerial, ShowTraffic
from console.screens.ban_form import ask_ban
from console.untrusted import clean


def label(device: dict[str, Any]) -> str:
    name = clean(device.get("hostname"), limit=40)
    address = clean(device.get("ip"), limit=45) or clean(device.get("mac")) or "?"
    return f"{address} ({name})" if name else address


def scan_device(app: App[Any], device: dict[str, Any]) -> None:
    """Start a quick scan of the device's address in the engine; its progress shows in the
    pane's title, its results in the inventory."""
    address = str(device.get("ip") or "")
    if not address:
        app.notify("This device has no address to scan (seen by its MAC only)", severity="warning")
        return
    _start_scan(app, [address], clean(address))


def scan_scope(app: App[Any]) -> None:
    """Start a quick scan of every network of the engine's [scan] scope."""
    _start_scan(app, [], "the scan scope")


def _start_scan(app: App[Any], targets: list[str], what: str) -> None:
    async def call() -> None:
        run = await engine(app).link.request("scan.start", {"targets": targets})
        app.notify(
            f"Scan #{run['id']} of {what} started: {run['total']} TCP ports a host and the UDP"
            " probes",
            markup=False,
        )
        app.post_message(ScanStarted(int(run["id"])))

    app.run_worker(call(), name=f"Scan {what}", group="actions", exit_on_error=False)


def ban_device(app: App[Any], device: dict[str, Any]) -> None:
    address = str(device.get("ip") or "")
    if not address:
        app.notify("This device has no address to ban", severity="warning")
        return
    kind = clean(device.get("kind"), limit=40)
    ask_ban(
        app,
        address,
        f"device {device['id']}" + (f", a {kind}" if kind else ""),
        f"device {device['id']} {label(device)}",
    )


def show_traffic(app: App[Any], device: dict[str, Any]) -> None:
    """The Traffic pane filtered to the device's addresses."""
    addresses = device.get("addresses") or ([device["ip"]] if device.get("ip") else [])
    if not addresses:
        app.notify("This device has no address to filter traffic by", severity="warning")
        return
    app.post_message(ShowTraffic(tuple(str(a) for a in addresses)))


def show_serial(app: App[Any], device: dict[str, Any]) -> None:
    """The Serial pane on the session attached to the device (by the MAC its boot log printed,
    or as opened for it)."""
    app.post_message(ShowSerial(str(device["id"])))


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def scan_outcome(run: dict[str, Any]) -> tuple[str, SeverityLevel]:
    """What the toast says of a scan that ended, and its severity: the hosts, open ports and
    findings it found, what is new, and the rule hits its own probes raised that were
    suppressed (they are not attacks)."""
    targets = clean(" ".join(str(t) for t in run.get("targets") or []), limit=40) or "the scope"
    head = f"Scan #{run.get('id')} of {targets}"
    state = str(run.get("state") or "")
    if state != "done":
        error = clean(run.get("error"), limit=200)
        return f"{head} {clean(state)}" + (f": {error}" if error else ""), "warning"
    summary = run.get("summary") if isinstance(run.get("summary"), dict) else {}
    findings = summary.get("findings") if isinstance(summary.get("findings"), dict) else {}
    parts = [
        plural(int(summary.get("hosts") or 0), "host"),
        plural(int(summary.get("open_ports") or 0), "open port"),
        plural(sum(int(n or 0) for n in findings.values()), "finding"),
    ]
    new = int(summary.get("new_devices") or 0)
    if new:
        parts.append(f"{plural(new, 'new device')}")
    text = f"{head} done: {', '.join(parts)}"
    suppressed = int(summary.get("suppressed_hits") or 0)
    if suppressed:
        text += f"; {plural(suppressed, 'rule hit')} suppressed: our scan"
    return text, "information"
