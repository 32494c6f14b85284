"""One device in full: its addresses, vendor, type and why, how it was seen, its services, TLS
certificates, open findings with evidence and fix, resolved findings, recent flows and alerts.

Opened from the Devices pane with Enter; ``devices.get`` is polled every two seconds while it
is open, so a scan started here (s) shows its results when it ends. b bans the device, t shows
its traffic.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from console import severity
from console.engine_access import engine
from console.panes.device_actions import ban_device, label, scan_device, show_traffic
from console.screens.alert_detail import when
from console.screens.engine_view import EngineView
from console.untrusted import clean


def _heading(text: str) -> Content:
    return Content.styled(f"\n{text}", "bold underline")


def _row(key: str, value: str) -> Content:
    return Content.assemble((f"{key:<11}", "bold"), value or "-")


def _risk(device: dict[str, Any]) -> str:
    """The score and why: what an attacker can do with its worst findings."""
    shown = f"{device.get('risk', 0)} of 100"
    reason = clean(device.get("risk_reason"), limit=200)
    return f"{shown} ({reason})" if reason else shown


def device_content(device: dict[str, Any]) -> Content:
    """Everything about the device as the detail view shows it."""
    kind, reason = clean(device.get("kind"), limit=60), clean(device.get("kind_reason"), limit=200)
    parts: list[Content] = [
        _row("addresses", clean(", ".join(device.get("addresses") or []), limit=400)),
        _row("mac", clean(device.get("mac"))),
        _row("vendor", clean(device.get("vendor"), limit=80)),
        _row("name", clean(device.get("hostname"), limit=80)),
        _row("type", f"{kind} (because: {reason})" if kind else "unknown"),
        _row("state", clean(device.get("state"))),
        _row("risk", _risk(device)),
        _row("seen by", clean(", ".join(device.get("seen_by") or []))),
        _row("first seen", when(device.get("first_seen"))),
        _row("last seen", when(device.get("last_seen"))),
        _row("last scan", f"#{device['last_scan']}" if device.get("last_scan") else "never"),
    ]
    details = device.get("details") or {}
    for source in ("dhcp", "mdns", "ssdp"):
        if details.get(source):
            shown = "; ".join(
                f"{k}: {v if isinstance(v, str) else ', '.join(map(str, v))}"
                for k, v in details[source].items()
                if v
            )
            parts.append(_row(source, clean(shown, limit=400)))
    parts.append(_heading("Services"))
    for service in device.get("services") or []:
        what = " ".join(p for p in (service.get("product"), service.get("version")) if p)
        parts.append(
            Content.assemble(
                (f"{service['port']}/{service['proto']:<7}", "bold"),
                f" {clean(service.get('service')) or '?':<8} ",
                clean(what or service.get("banner"), limit=120),
            )
        )
    if not device.get("services"):
        parts.append(Content("none known: s scans the device"))
    for port, report in sorted((details.get("tls") or {}).items()):
        cert = report.get("certificate") or {}
        parts.append(_heading(f"TLS on {clean(port)}"))
        parts += [
            _row("subject", clean(cert.get("subject"), limit=200)),
            _row("issuer", clean(cert.get("issuer"), limit=200)),
            _row("valid", f"{clean(cert.get('not_before'))} to {clean(cert.get('not_after'))}"),
            _row("key", f"{clean(cert.get('key_type'))} {cert.get('key_bits', '')}"),
            _row("signature", clean(cert.get("signature_hash"))),
            _row("versions", clean(", ".join(report.get("versions") or []))),
        ]
    parts.append(_heading("Findings"))
    for finding in device.get("open_findings") or []:
        sev = str(finding.get("severity"))
        where = (
            f" [{finding['port']}/{finding['proto']}]" if finding.get("port") is not None else ""
        )
        low = " (low confidence)" if finding.get("confidence") == "low" else ""
        parts += [
            Content.assemble(
                (f"{severity.LABEL.get(sev, sev):<9}", severity.STYLE.get(sev, "")),
                (clean(finding.get("title"), limit=200), "bold"),
                where,
                low,
            ),
            Content.assemble("  evidence: ", clean(finding.get("evidence"), limit=600)),
            Content.assemble("  fix: ", clean(finding.get("fix"), limit=600)),
        ]
    if not device.get("open_findings"):
        parts.append(Content("none open"))
    for finding in device.get("resolved_findings") or []:
        parts.append(
            Content.styled(
                f"resolved {when(finding.get('resolved'))}: "
                f"{clean(finding.get('title'), limit=200)}",
                "dim",
            )
        )
    parts.append(_heading("Recent flows"))
    flows = (device.get("live_flows") or []) + (device.get("flows") or [])
    for flow in flows[:15]:
        parts.append(
            Content(
                clean(
                    f"{flow.get('proto')} {flow.get('src')}:{flow.get('sport') or ''} -> "
                    f"{flow.get('dst')}:{flow.get('dport') or ''} {flow.get('app') or ''} "
                    f"{flow.get('packets')} packets {flow.get('bytes')} B",
                    limit=200,
                )
            )
        )
    if not flows:
        parts.append(Content("none in the capture's memory or the store"))
    parts.append(_heading("Alerts"))
    for alert in (device.get("alerts") or [])[:15]:
        sev = str(alert.get("severity"))
        parts.append(
            Content.assemble(
                (f"#{alert['id']:<6}", "bold"),
                (f"{severity.LABEL.get(sev, sev):<9}", severity.STYLE.get(sev, "")),
                f"{clean(alert.get('state')):<13}",
                clean(alert.get("title"), limit=150),
            )
        )
    if not device.get("alerts"):
        parts.append(Content("none"))
    return Content("\n").join(parts)


class DeviceScreen(EngineView):
    what = "device"
    help_text = (
        "Everything the engine knows about one device: its addresses, MAC and vendor, the type "
        "it guesses and why, how it was seen, its open services, the certificates of its TLS "
        "services, the open findings with the evidence and how to fix each, findings a later "
        "scan no longer found, its recent flows and the alerts about it. It is refreshed every "
        "two seconds. s scans it now, b bans it, t shows its traffic; Esc goes back."
    )

    DEFAULT_CSS = """
    DeviceScreen #device-body {
        height: 1fr;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "scan", "Scan", id="device.scan", tooltip="Scan this device now"),
        Binding("b", "ban", "Ban", id="device.ban", tooltip="Ban this device in the firewall"),
        Binding(
            "t", "traffic", "Traffic", id="device.traffic", tooltip="Show this device's traffic"
        ),
        Binding("escape", "close", "Back", id="device.back", tooltip="Back to the devices"),
        Binding(
            "q", "close", "Close", id="device.close", show=False, tooltip="Back to the devices"
        ),
    ]

    def __init__(self, device: dict[str, Any]) -> None:
        self.device = device
        super().__init__()

    @property
    def title_text(self) -> str:
        return f"Device {self.device['id']}: {label(self.device)}"

    def compose(self) -> ComposeResult:
        yield Static(self.title_text, id="title", markup=False)
        yield Static("", id="problem", classes="alarm", markup=False)
        with VerticalScroll(id="device-body"):
            yield Static("Loading…", id="device-text", markup=False)
        yield from self.filter_and_footer("")

    def on_mount(self) -> None:
        self.query_one("#device-body").focus()
        self._poller.now()

    async def _ask(self) -> dict[str, Any]:
        return await engine(self).link.request("devices.get", {"device": str(self.device["id"])})

    def _answer(self, answer: dict[str, Any]) -> None:
        self.device = answer
        self.query_one("#title", Static).update(Content(self.title_text))
        self.query_one("#device-text", Static).update(device_content(answer))
        self.refresh_bindings()

    def _filter_changed(self) -> None:
        """This view has no filter."""

    def _focus_view(self) -> None:
        self.query_one("#device-body").focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "scan":
            return True if engine(self).may("scan.start") else None
        if action == "ban":
            return True if engine(self).may("bans.ban") else None
        return True

    def action_scan(self) -> None:
        scan_device(self.app, self.device)

    def action_ban(self) -> None:
        ban_device(self.app, self.device)

    def action_traffic(self) -> None:
        self.dismiss(None)
        show_traffic(self.app, self.device)
