"""``iotsec serial``: the bench console full-screen (``iotsec serial PORT``), the ports and open
sessions (``list``), recorded sessions (``sessions``), and the boot-log analyser on a saved
transcript or a copied log (``analyze FILE``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from console.cli_base import Settings, call, echo, emit_json, global_options, json_option, main
from console.cli_devices import print_finding
from console.severity import RANK
from engine.control.protocol import ControlError
from engine.serial.settings import FLOWS, MAP_IN, MAP_OUT, PARITIES, SettingsError, settings_from
from engine.text import printable


class SerialGroup(click.Group):
    """``iotsec serial PORT ...`` opens PORT: a first argument that is not a subcommand is a
    port, as in tio and picocom."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["open", *args]
        return super().resolve_command(ctx, args)


@main.group(cls=SerialGroup)
@global_options
def serial() -> None:
    """A serial console to a device on the bench, and its boot-log analysis.

    \b
    iotsec serial /dev/ttyUSB0 --baud 115200   open the console full-screen
    iotsec serial list                          ports found and sessions open in the engine
    iotsec serial sessions                      recorded sessions and their transcripts
    iotsec serial analyze boot.log --json       what a boot log gives away
    """


@serial.command("open")
@global_options
@click.argument("port")
@click.option("-b", "--baud", type=click.IntRange(1), help="Baud rate (any whole number).")
@click.option("--data-bits", type=click.Choice(["5", "6", "7", "8"]), help="Data bits.")
@click.option("--parity", type=click.Choice(list(PARITIES)), help="Parity.")
@click.option("--stop-bits", type=click.Choice(["1", "1.5", "2"]), help="Stop bits.")
@click.option("--flow", type=click.Choice(FLOWS), help="Flow control.")
@click.option("--map-out", type=click.Choice(list(MAP_OUT)), help="What Enter sends.")
@click.option("--map-in", type=click.Choice(MAP_IN), help="What ends a received line.")
@click.option("--echo/--no-echo", default=None, help="Show what you type (local echo).")
@click.option("--dtr/--no-dtr", default=None, help="DTR on opening (default on).")
@click.option("--rts/--no-rts", default=None, help="RTS on opening (default on).")
@click.pass_obj
def serial_open(settings: Settings, port: str, **options: Any) -> None:
    """Open PORT (a path such as /dev/ttyUSB0 or /dev/serial/by-id/..., a pty in [serial]
    allow, or socket://ADDRESS:PORT or rfc2217://ADDRESS:PORT inside [scan] scope) full-screen.
    Keys go to the device; Ctrl-T ? lists the console's commands, Ctrl-T q quits."""
    chosen = {k: v for k, v in options.items() if v is not None}
    try:
        settings_from(chosen, settings.config.serial.line_settings())
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    from console.serial.app import run_serial

    sys.exit(run_serial(settings.config, port, chosen, config_path=settings.config_path))


@serial.command("list")
@global_options
@json_option
@click.pass_obj
def serial_list(settings: Settings, as_json: bool) -> None:
    """Serial ports on this machine, and the sessions open in the engine (if one runs)."""
    from engine.serial.ports import available

    ports = [p.__dict__ for p in available()]
    try:
        with settings.client() as client:
            sessions = client.request("serial.list")
    except (click.ClickException, ControlError):
        sessions = None
    if as_json:
        emit_json({"ports": ports, "sessions": sessions})
        return
    echo("Ports (ptys are not listed; any path can be opened):" if ports else "No ports found.")
    for p in ports:
        what = " ".join(x for x in (p["description"], p["hwid"]) if x)
        echo(f"  {p['device']:<16} {what}")
        if p["by_id"]:
            echo(f"  {'':<16} {p['by_id']}")
    if sessions is None:
        echo("No engine running: no sessions open.")
        return
    echo(f"Sessions open: {len(sessions)}" if sessions else "Sessions open: none")
    for s in sessions:
        echo(
            f"  {s['id']:>4} {s['path']:<28} {s['describe']:<16} {s['state']:<12}"
            f" RX {s['rx']} B  TX {s['tx']} B  {s['transcript']}"
        )


@serial.command("sessions")
@global_options
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
def serial_sessions(limit: int, as_json: bool) -> None:
    """Recorded sessions, newest first: port, when, bytes, what the boot log showed, and the
    transcript file."""
    rows = call("serial.sessions", {"limit": limit})
    if as_json:
        emit_json(rows)
        return
    if not rows:
        echo("No serial sessions recorded.")
        return
    for row in rows:
        summary = row["summary"]
        report = summary.get("report") or {}
        loader = report.get("bootloader") or {}
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["started"]))
        state = "open" if row["ended"] is None else "closed"
        found = len(report.get("findings", []))
        boot = f"{loader['name']} {loader.get('version') or ''}" if loader.get("name") else "-"
        echo(
            f"{row['id']:>4} {when} {printable(row['name'], limit=24):<24} {state:<6}"
            f" RX {row['rx']:>8} B  {boot:<18} {found} findings"
        )
        if summary.get("error"):
            echo(f"       {summary['error']}")
        elif row["transcript"]:
            echo(f"       {row['transcript']}")


@serial.command("analyze")
@global_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def serial_analyze(file: Path, as_json: bool) -> None:
    """What a boot log gives away: bootloader, autoboot, boot arguments and their red flags,
    kernel, MTD partitions, BusyBox, root shell without login, printed secrets. FILE is an
    iotsec transcript (its received bytes are read) or any saved or copied log (terminal
    noise, CR LF and HTML entities are coped with)."""
    from engine.serial.analyze import analyze
    from engine.serial.transcript import is_transcript, read_transcript

    try:
        data = file.read_bytes()
        if is_transcript(data[:64]):
            data = read_transcript(file).received
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    report = analyze(data).to_json()
    if as_json:
        emit_json(report)
        return
    print_report(report, str(file))


def print_report(report: dict[str, Any], title: str) -> None:
    loader, kernel = report["bootloader"], report["kernel"]
    echo(f"{title}: {report['lines']} lines")
    rows = [
        ("bootloader", f"{loader['name']} {loader['version'] or ''}" if loader["name"] else "-"),
        ("autoboot", _autoboot(report["autoboot"])),
        ("kernel", kernel["version"] or "-"),
        ("cmdline", kernel["cmdline"] or "-"),
        ("busybox", report["busybox"]["version"] or "-"),
        ("root shell", "yes" if report["shell"]["root"] else "no"),
        ("login", report["shell"]["login_prompt"] or "-"),
        ("MAC", report["identity"]["mac"] or "-"),
    ]
    for label, value in rows:
        echo(f"  {label:<11} {printable(value, limit=300)}")
    if report["mtd"]:
        echo("  MTD partitions:")
        for part in report["mtd"]:
            end = f"0x{part['end']:08x}" if part["end"] is not None else "(rest)"
            start = f"0x{part['start']:08x}" if part["start"] is not None else "?"
            echo(f"    {printable(part['name'], limit=24):<16} {start}-{end}")
    echo(f"Findings: {len(report['findings'])}")
    for finding in sorted(report["findings"], key=lambda f: -RANK[f["severity"]]):
        print_finding({**finding, "port": None, "proto": "serial"})


def _autoboot(autoboot: dict[str, Any]) -> str:
    if autoboot["prompt"] is None:
        return "-"
    can = {True: "interruptible", False: "protected", None: "?"}[autoboot["interruptible"]]
    return f"{can}: {autoboot['prompt']}"


@serial.command("login")
@global_options
@click.argument("session", type=int)
@json_option
def serial_login(session: int, as_json: bool) -> None:
    """Try the shipped default credentials at SESSION's login prompt (opt-in, capped by [serial]
    creds_max_attempts; a pair that works is logged out of at once)."""
    result = call("serial.login", {"id": session})
    if as_json:
        emit_json(result)
    elif result["works"]:
        works = result["works"]
        echo(
            f"Default login works: {works['user']} / {works['password'] or '(empty)'}"
            f" (from {works['source']}) after {result['tried']} tries"
        )
    else:
        echo(f"No default login worked: {result['reason']} ({result['tried']} tried)")
