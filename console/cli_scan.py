"""``iotsec scan``: scan targets inside ``[scan] scope`` — live hosts, open TCP ports, what
answers on them, TLS audits and the IoT UDP services — with a progress bar on the terminal and
a table of hosts, ports and findings (``--json`` for scripts)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from console.cli_base import Settings, echo, emit_json, global_options, json_option, main
from console.cli_devices import print_finding, print_service


@main.command()
@global_options
@click.argument("targets", nargs=-1, required=True)
@click.option("--ports", default="", metavar="LIST",
              help="TCP ports: 22,80,8000-8100 or - for all (default: the profile's).")  # fmt: skip
@click.option("--profile", type=click.Choice(["quick", "full"]), default="quick",
              show_default=True,
              help="quick: the top IoT ports; full: every TCP port.")  # fmt: skip
@click.option("--check-default-creds", is_flag=True,
              help="Also try the shipped default credentials (rules/creds) on Telnet, "
                   "SSH, HTTP basic auth and MQTT: capped, paced, stopping at the first "
                   "that works.")  # fmt: skip
@click.option("--no-udp", is_flag=True,
              help="Skip the CoAP, SSDP, SNMP, mDNS and NTP probes.")  # fmt: skip
@click.option(
    "--embedded",
    is_flag=True,
    help="Scan from this process even when an engine runs (not recorded).",
)
@json_option
def scan(targets: tuple[str, ...], ports: str, profile: str, check_default_creds: bool,
         no_udp: bool, embedded: bool, as_json: bool) -> None:  # fmt: skip
    """Scan TARGETS (addresses, networks such as 192.168.1.0/24, ranges such as
    192.168.1.10-20), which must all be inside [scan] scope: the live hosts, their open TCP
    ports (connect scan: no privileges needed), what answers on each (SSH, Telnet, FTP,
    HTTP(S), MQTT, RTSP, Modbus), a TLS audit of the TLS services, CoAP/SSDP/SNMP/mDNS/NTP
    probes with real requests, and the findings, each with its evidence and a fix. Live
    hosts are found with ARP and ICMP (CAP_NET_RAW), else a TCP ping, when more than one
    target is given. Nothing is logged into unless --check-default-creds is given; names
    are never resolved.

    With an engine running, the scan runs there (it needs the operator role): the results go
    into the device inventory and are compared with the previous scan of the same targets;
    Ctrl-C cancels it. Without one, it runs here and is only printed."""
    from engine.scan.ports import PortsError, parse_ports
    from engine.scan.scanner import Options, profile_ports
    from engine.scan.scanner import scan as run_scan
    from engine.scan.scope import ScopeError, expand, parse_scope

    settings = click.get_current_context().ensure_object(Settings)
    config = settings.config.scan
    try:
        addresses = expand(targets, parse_scope(config.scope))
        chosen = parse_ports(ports) if ports else profile_ports(profile)
    except (ScopeError, PortsError) as exc:
        raise click.ClickException(str(exc)) from None
    bar = _Progress(enabled=sys.stderr.isatty())
    request = {"targets": list(targets), "profile": profile, "ports": ports,
               "check_default_creds": check_default_creds, "udp": not no_udp}  # fmt: skip
    try:
        data = None if embedded else _in_engine(settings, request, bar)
        if data is None:
            options = Options(ports=chosen, check_default_creds=check_default_creds,
                              udp=not no_udp)  # fmt: skip
            hosts = asyncio.run(run_scan(addresses, options, config, bar.update))
            data = {"hosts": [h.to_json() for h in hosts], "scan": None, "diff": None}
    except PermissionError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bar.close()
    data = {"targets": list(targets), "ports": len(chosen), **data}
    if as_json:
        emit_json(data)
        return
    _print_table(data)
    if data["scan"] is None:
        echo("(scanned here: no engine is running, so the inventory did not record it)")
    else:
        for line in _changes(data["diff"]):
            echo(line)
        suppressed = data["summary"].get("suppressed_hits", 0)
        if suppressed:
            # Rules that fired on the scan's own probes (counted until it ended).
            echo(f"{suppressed} rule hits suppressed: our scan")


def _in_engine(settings: Settings, request: dict[str, Any],
               bar: _Progress) -> dict[str, Any] | None:  # fmt: skip
    """Run the scan in the engine (recorded in the inventory, compared with the previous
    scan) and follow its progress; None when no engine is running. Ctrl-C cancels it."""
    from engine.control.protocol import ControlError

    try:
        client = settings.client()
    except click.ClickException:
        return None
    with client:
        try:
            client.request("subscribe", {"topics": ["scans", "status"]})
            run = client.request("scan.start", request)
        except ControlError as exc:
            raise click.ClickException(str(exc)) from None
        try:
            while run["state"] == "running":
                message = client.next_event()
                if message["event"] == "scans" and message["data"]["id"] == run["id"]:
                    run = message["data"]
                    bar.update(run["phase"], run["done"], run["total"])
        except KeyboardInterrupt:
            client.request("scan.cancel", {"id": run["id"]})
            raise click.ClickException(f"scan {run['id']} cancelled") from None
        except ControlError as exc:
            raise click.ClickException(f"lost the engine during scan {run['id']}: {exc}") from None
        if run["state"] != "done":
            raise click.ClickException(f"scan {run['id']} {run['state']}: {run['error']}")
        found = client.request("scan.get", {"id": run["id"]})
    return {"hosts": found["hosts"], "scan": run["id"], "diff": found["diff"],
            "summary": found["summary"]}  # fmt: skip


def _changes(diff: dict[str, Any] | None) -> list[str]:
    """What changed since the previous scan of the same targets, a line each."""
    if diff is None:
        return ["first scan of these targets"]
    if not diff["changed"]:
        return ["no change since the previous scan of these targets"]
    lines = ["since the previous scan of these targets:"]
    lines += [f"  host up     {a}" for a in diff["hosts_up"]]
    lines += [f"  host down   {a}" for a in diff["hosts_down"]]
    lines += [f"  opened      {p['address']}:{p['port']}/{p['proto']} {p['service']}"
              for p in diff["opened"]]  # fmt: skip
    lines += [f"  closed      {p['address']}:{p['port']}/{p['proto']}" for p in diff["closed"]]
    lines += [f"  new         {f['address']} {f['title']}" for f in diff["new_findings"]]
    lines += [f"  resolved    {f['address']} {f['title']}" for f in diff["resolved_findings"]]
    return lines


class _Progress:
    """A one-line progress bar on stderr (only on a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.shown = False

    def update(self, what: str, done: int, total: int) -> None:
        if not self.enabled or what == "done":
            return
        width = 30
        filled = width * done // total if total else width
        line = f"\r{what:<9} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        click.echo(line, nl=False, err=True)
        self.shown = True

    def close(self) -> None:
        if self.shown:
            click.echo("\r" + " " * 70 + "\r", nl=False, err=True)


def _print_table(data: dict[str, Any]) -> None:
    hosts = data["hosts"]
    if not hosts:
        echo("no live host found")
        return
    for host in hosts:
        known = ", ".join(p for p in (host["mac"], host["vendor"]) if p)
        echo(f"{host['address']}" + (f"  ({known})" if known else "") +
             f"  {len(host['ports'])} open, {host['closed']} closed, {host['filtered']} filtered,"
             f" {host['elapsed']:.1f}s")  # fmt: skip
        if host["ports"]:
            echo(f"  {'PORT':<10} {'SERVICE':<8} WHAT")
        for port in host["ports"]:
            print_service(port)
        for finding in host["findings"]:
            print_finding(finding)
        echo("")
