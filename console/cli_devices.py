"""``iotsec devices`` and ``iotsec findings``: the engine's device inventory (built from traffic
and scans) and the findings about its devices, as tables or ``--json``."""

from __future__ import annotations

import time
from typing import Any

import click

from console.cli_base import call, echo, emit_json, global_options, json_option, main
from console.severity import SEVERITIES
from engine.durations import format_age
from engine.text import printable

# The console's severity palette (console/severity.py) in the terminal's own ANSI colours.
SEVERITY_STYLE: dict[str, dict[str, Any]] = {
    "critical": {"fg": "bright_white", "bg": "red", "bold": True},
    "high": {"fg": "bright_red", "bold": True},
    "medium": {"fg": "bright_yellow"},
    "low": {"fg": "bright_cyan"},
    "info": {"dim": True},
}


def ago(ts: float | None) -> str:
    return format_age(time.time() - ts) if ts else "-"


def severity_label(severity: str) -> str:
    return click.style(f"{severity.upper():<8}", **SEVERITY_STYLE.get(severity, {}))


def print_service(s: dict[str, Any]) -> None:
    """One line of a service: port, what it is, and its product and version, else its banner."""
    what = " ".join(p for p in (s.get("product", ""), s.get("version", "")) if p)
    echo(
        f"  {str(s['port']) + '/' + s['proto']:<10} {s.get('service') or '?':<8} "
        f"{printable(what or s.get('banner', ''), limit=60)}"
    )


def print_finding(f: dict[str, Any]) -> None:
    """A finding under its device or host: severity and title, then its evidence and fix."""
    where = f" [{f['port']}/{f['proto']}]" if f["port"] is not None else ""
    low = " (low confidence)" if f["confidence"] == "low" else ""
    # click.echo, not echo: the label's colour is an escape sequence of ours; the rest is escaped.
    click.echo(f"  {severity_label(f['severity'])} {printable(f['title'])}{where}{low}")
    echo(f"           evidence: {printable(f['evidence'], limit=150)}")
    if f["fix"]:
        echo(f"           fix: {printable(f['fix'], limit=150)}")


@main.group(invoke_without_command=True)
@global_options
@click.option(
    "--state",
    type=click.Choice(["present", "gone"]),
    default=None,
    help="Only devices present now, or gone (not seen for [devices] gone_after).",
)
@json_option
@click.pass_context
def devices(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """The device inventory, riskiest first: address, MAC and vendor, name, type guess, open
    ports, findings, risk (0-100) and when last seen.

    \b
    iotsec devices
    iotsec devices show 192.168.1.20
    """
    if ctx.invoked_subcommand is not None:
        return
    data = call("devices.list", {"state": state or ""})
    if as_json:
        emit_json(data)
        return
    if not data:
        echo("no devices yet: they appear as traffic is captured and scans run")
        return
    echo(
        f"{'ID':>4} {'ADDRESS':<16} {'MAC':<18} {'VENDOR':<18} {'NAME':<16} {'TYPE':<18}"
        f" {'RISK':>4} {'FIND':>4} {'SEEN':>5}  PORTS"
    )
    for d in data:
        mark = " gone" if d["state"] == "gone" else ""
        echo(
            f"{d['id']:>4} {d['ip'] or '-':<16} {d['mac'] or '-':<18} {d['vendor'][:18]:<18}"
            f" {d['hostname'][:16]:<16} {d['kind'][:18] or '?':<18} {d['risk']:>4}"
            f" {d['findings']:>4} {ago(d['last_seen']):>5}  {' '.join(d['ports'])[:40]}{mark}"
        )


@devices.command("show")
@global_options
@click.argument("device")
@json_option
def devices_show(device: str, as_json: bool) -> None:
    """One DEVICE (id, MAC or address): addresses, vendor, type and why, services, TLS,
    findings with evidence and fix, recent flows and alerts."""
    data = call("devices.get", {"device": device})
    if as_json:
        emit_json(data)
        return
    reason = data.get("risk_reason", "")
    for label, value in (
        ("device", f"{data['id']} ({data['state']})"),
        ("addresses", ", ".join(data["addresses"])),
        ("mac", data["mac"]),
        ("vendor", data["vendor"]),
        ("name", data["hostname"]),
        ("type", f"{data['kind']} ({data['kind_reason']})" if data["kind"] else ""),
        ("risk", f"{data['risk']} ({reason})" if reason else str(data["risk"])),
        ("seen by", ", ".join(data["seen_by"])),
        ("first seen", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data["first_seen"]))),
        ("last seen", f"{ago(data['last_seen'])} ago"),
        ("last scan", str(data["last_scan"] or "never")),
    ):
        echo(f"{label:<11} {value or '-'}")
    echo("services:")
    for s in data["services"] or [None]:
        if s is None:
            echo("  (none known: scan it)")
            break
        print_service(s)
    for port, report in sorted(data["details"].get("tls", {}).items()):
        cert = report.get("certificate") or {}
        echo(
            f"tls {port}: {cert.get('subject', '?')}, expires {cert.get('not_after', '?')},"
            f" {cert.get('key_type', '?')} {cert.get('key_bits', '')}"
        )
    echo("findings:")
    for f in data["open_findings"] or [None]:
        if f is None:
            echo("  (none open)")
            break
        print_finding(f)
    if data["resolved_findings"]:
        echo("resolved:")
        for f in data["resolved_findings"]:
            echo(f"  {f['title']} ({ago(f['resolved'])} ago)")
    flows = data["live_flows"] + data["flows"]
    if flows:
        echo("recent flows:")
        for f in flows[:10]:
            echo(
                f"  {f['proto']:<5} {f['src']}:{f.get('sport') or ''} -> "
                f"{f['dst']}:{f.get('dport') or ''} {f.get('app') or ''} {f['bytes']} B"
            )
    if data["alerts"]:
        echo("alerts:")
        for a in data["alerts"][:10]:
            title = printable(a["title"], limit=70)
            echo(f"  {a['id']:>6} {a['severity']:<8} {a['state']:<12} {title}")
    if data["notes"]:
        echo(f"notes: {data['notes']}")


@main.command()
@global_options
@click.option(
    "--severity", type=click.Choice(SEVERITIES), default="info", help="At least this severity."
)
@click.option("--device", default="", help="Only this device (id, MAC or address).")
@click.option(
    "--state",
    type=click.Choice(["open", "resolved", "all"]),
    default="open",
    show_default=True,
    help="resolved: those a later scan no longer found.",
)
@json_option
def findings(severity: str, device: str, state: str, as_json: bool) -> None:
    """Findings about the inventory's devices, worst first: what, where, evidence and fix."""
    data = call("findings.list", {"severity": severity, "device": device, "state": state})
    if as_json:
        emit_json(data)
        return
    if not data:
        echo("no findings")
        return
    for f in data:
        where = f"{f['address']}" + (f":{f['port']}/{f['proto']}" if f["port"] is not None else "")
        resolved = " (resolved)" if f["state"] == "resolved" else ""
        low = " (low confidence)" if f["confidence"] == "low" else ""
        click.echo(
            f"{severity_label(f['severity'])} {where:<24} "
            f"{printable(f['title'], limit=80)}{low}{resolved}"
        )
        echo(f"{'':9} evidence: {printable(f['evidence'], limit=150)}")
        if f["fix"]:
            echo(f"{'':9} fix: {printable(f['fix'], limit=150)}")
