"""The ``iotsec`` command. Each subcommand finds the engine the same way: ``--socket``, then the
config's ``[control] socket``, then the default path. Heavy imports (textual, the engine's
loop) happen inside the command that needs them, so one-shot commands start fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from console import (  # noqa: F401 - register ban/unban/bans, logs, scan, analyze, capture,
    cli_bans,  # devices, findings, serial, lab
    cli_devices,
    cli_lab,
    cli_logs,
    cli_scan,
    cli_serial,
    cli_traffic,
)
from console.cli_base import (
    Settings,
    call,
    echo,
    emit_json,
    global_options,
    json_option,
    main,
)
from console.cli_rules import rules  # noqa: F401 - registers rules
from engine.control.protocol import ControlError
from engine.durations import format_duration
from engine.text import printable

SEVERITIES = ["critical", "high", "medium", "low", "info"]
STATES = ["open", "acknowledged", "resolved", "silenced"]


# -- engine and console -----------------------------------------------------------------------


@main.command()
@global_options
@click.pass_obj
def engine(settings: Settings) -> None:
    """Run the engine in the foreground (for systemd); stops cleanly on SIGTERM/SIGINT."""
    from engine.audit import AuditKeyError
    from engine.daemon import run_engine
    from engine.store.db import StoreError
    from engine.store.schema import SchemaError

    try:
        sys.exit(run_engine(settings.config))
    except (StoreError, SchemaError, ControlError, AuditKeyError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@global_options
@click.option("--no-spawn", is_flag=True, help="Fail instead of starting a private engine.")
@click.pass_obj
def console(settings: Settings, no_spawn: bool) -> None:
    """Open the full-screen console: on the configured engine, else the lab's engine when the
    lab runs one, else a private engine it starts."""
    from console.app import run_console

    config, label = settings.engine()
    sys.exit(run_console(config, config_path=settings.config_path, spawn=not no_spawn,
                         label=label))  # fmt: skip


@main.command()
@global_options
@json_option
def status(as_json: bool) -> None:
    """Engine health: uptime, parts, queues, dropped counts, database and socket, and the
    rules, log filters and default credentials it has (and any shipped ones missing)."""
    data = call("status")
    if as_json:
        emit_json(data)
        return
    open_alerts = ", ".join(f"{k} {v}" for k, v in data["alerts"]["open"].items()) or "none"
    rows = [
        ("engine", f"running, pid {data['pid']}, version {data['version']}"),
        ("uptime", format_duration(data["uptime"])),
        ("parts", ", ".join(f"{k}: {v}" for k, v in data["parts"].items())),
        ("open alerts", open_alerts),
        ("silences", str(data["alerts"]["silences"])),
        ("active bans", _bans_line(data["bans"])),
        ("capture", _capture_line(data["capture"])),
        ("rules", _rules_line(data["rules"])),
        ("content", _content_line(data["content"])),
        ("shipped", data["content"]["folder"]),
        *(("missing", problem) for problem in data["content"]["problems"]),
        ("devices", _devices_line(data["devices"], data["scans"])),
        ("serial", _serial_line(data["serial"])),
        ("writer queue", "{depth}/{capacity}".format(**data["queues"]["writer"])),
        ("event queues", _subscriber_queues(data["queues"]["subscribers"])),
        ("dropped", ", ".join(f"{k} {v}" for k, v in data["dropped"].items())),
        ("database", f"{data['store']['path']} ({_size(data['store']['size'])})"),
        ("control socket", f"{data['control']['socket']} ({data['control']['clients']} clients)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        echo(f"{key:<{width}}  {value}")


def _serial_line(serial: dict[str, Any]) -> str:
    states = ", ".join(f"{n} {state}" for state, n in sorted(serial["by_state"].items()))
    return f"{serial['sessions']} sessions" + (f" ({states})" if states else "")


def _devices_line(devices: dict[str, Any], scans: dict[str, Any]) -> str:
    line = (f"{devices['present']} present, {devices['gone']} gone, {devices['open_findings']}"
            f" open findings; scans: {scans['state']}, {scans['running']} running,"
            f" {scans['schedules']} schedules")  # fmt: skip
    if devices["bad_facts"]:
        line += f"; {devices['bad_facts']} malformed facts ignored"
    return line


def _capture_line(capture: dict[str, Any]) -> str:
    where = ", ".join(capture["interfaces"]) or "no interface"
    line = f"{capture['state']} on {where}"
    if capture["bpf"]:
        line += f" ({capture['bpf']})"
    line += (f", {capture['packets']} packets, drops kernel {capture['kernel_drops']} "
             f"queue {capture['queue_drops']}")  # fmt: skip
    if capture["reason"]:
        line += f"; {capture['reason']}"
    return line


def _bans_line(bans: dict[str, Any]) -> str:
    enforced = f"enforced by {bans['backend']}" if bans.get("enforced") else (
        f"not enforced ({bans.get('backend')}): {bans.get('problem')}")  # fmt: skip
    return f"{bans['active']}, {enforced}"


def _rules_line(summary: dict[str, Any]) -> str:
    line = (f"{summary['state']}, {summary['running']} running ({summary['accepted']} loaded,"
            f" {summary['rejected']} rejected, {summary['disabled']} disabled),"
            f" {summary['hits']} hits, {summary['alerts']} alerts")  # fmt: skip
    if summary["reload_error"]:
        failed = "not loaded" if summary["state"] == "error" else "last reload failed"
        line += f"; {failed}: {summary['reload_error']}"
    return line


def _content_line(content: dict[str, Any]) -> str:
    return (f"{content['packet_rules']} packet rules; log filters: {content['log_filters']} in"
            f" jails, {content['shipped_filters']} shipped; {content['credential_pairs']} default"
            " credential pairs")  # fmt: skip


def _subscriber_queues(depths: dict[str, int]) -> str:
    if not depths:
        return "no subscribers"
    deepest = max(depths, key=depths.__getitem__)
    return f"{len(depths)} subscribers, deepest {depths[deepest]} ({deepest})"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# -- alerts -----------------------------------------------------------------------------------


def _when(ts: float) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts))


def alert_sides(alert: dict[str, Any]) -> tuple[str, str]:
    """(attacker, target); an engine from before they existed gave source and destination."""
    if "attacker" in alert or "target" in alert:
        return str(alert.get("attacker") or ""), str(alert.get("target") or "")
    return str(alert.get("src") or ""), str(alert.get("dst") or "")


def print_alerts(alerts: list[dict[str, Any]]) -> None:
    if not alerts:
        echo("no alerts")
        return
    echo(
        f"{'ID':>6} {'SEV':<8} {'STATE':<12} {'COUNT':>6} {'LAST SEEN':<14} "
        f"{'ATTACKER':<15} {'TARGET':<15} TITLE"
    )
    for a in alerts:
        attacker, target = alert_sides(a)
        echo(
            f"{a['id']:>6} {a['severity']:<8} {a['state']:<12} {a['count']:>6} "
            f"{_when(a['last_seen']):<14} {attacker or '-':<15} {target or '-':<15} "
            f"{printable(a['title'], limit=80)}"
        )


@main.group(invoke_without_command=True)
@global_options
@click.option("--state", type=click.Choice(STATES), multiple=True, help="Only these states.")
@click.option("--severity", type=click.Choice(SEVERITIES), default="info", help="Minimum severity.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@json_option
@click.pass_context
def alerts(
    ctx: click.Context, state: tuple[str, ...], severity: str, limit: int, as_json: bool
) -> None:
    """List alerts, newest first; subcommands act on them.

    \b
    iotsec alerts --state open
    iotsec alerts ack 12 --note "checking the camera"
    iotsec alerts silence --rule 2023019 --for 2h
    """
    if ctx.invoked_subcommand is not None:
        return
    data = call("alerts.list", {"state": list(state), "severity": severity, "limit": limit})
    if as_json:
        emit_json(data)
    else:
        print_alerts(data)


@alerts.command("show")
@global_options
@click.argument("alert_id", type=int)
@json_option
def alerts_show(alert_id: int, as_json: bool) -> None:
    """One alert with its evidence and history."""
    data = call("alerts.get", {"id": alert_id})
    if as_json:
        emit_json(data)
        return
    for key in (
        "id",
        "severity",
        "state",
        "title",
        "source",
        "rule",
        "src",
        "dst",
        "device",
        "count",
    ):
        echo(f"{key:<10} {printable(str(data[key])) or '-'}")
    echo(f"{'first':<10} {_when(data['first_seen'])}")
    echo(f"{'last':<10} {_when(data['last_seen'])}")
    if data["ack_by"]:
        echo(f"{'ack':<10} {data['ack_by']}: {printable(data['ack_note'])}")
    echo("evidence:")
    echo(json.dumps(data["evidence"], indent=2, sort_keys=True))
    echo("history:")
    for h in data["history"] or [{"ts": None}]:
        if h["ts"] is None:
            echo("  (none)")
            break
        echo(f"  {_when(h['ts'])} {h['operator']} {h['action']} {printable(h['note'])}")


def _transition(cmd: str, alert_id: int, note: str, as_json: bool, verb: str) -> None:
    data = call(cmd, {"id": alert_id, "note": note})
    if as_json:
        emit_json(data)
    else:
        echo(f"alert {alert_id} {verb}")


@alerts.command("ack")
@global_options
@click.argument("alert_id", type=int)
@click.option("--note", default="", help="Why, or what you are doing about it.")
@json_option
def alerts_ack(alert_id: int, note: str, as_json: bool) -> None:
    """Acknowledge an alert with a note."""
    _transition("alerts.ack", alert_id, note, as_json, "acknowledged")


@alerts.command("resolve")
@global_options
@click.argument("alert_id", type=int)
@click.option("--note", default="")
@json_option
def alerts_resolve(alert_id: int, note: str, as_json: bool) -> None:
    """Resolve an alert."""
    _transition("alerts.resolve", alert_id, note, as_json, "resolved")


@alerts.command("reopen")
@global_options
@click.argument("alert_id", type=int)
@click.option("--note", default="")
@json_option
def alerts_reopen(alert_id: int, note: str, as_json: bool) -> None:
    """Open an acknowledged or resolved alert again."""
    _transition("alerts.reopen", alert_id, note, as_json, "reopened")


@alerts.command("silence")
@global_options
@click.option("--rule", default="", help="Rule id (sid, jail, check) to match.")
@click.option("--src", default="", help="Source address to match.")
@click.option("--dst", default="", help="Destination address to match.")
@click.option("--device", default="", help="Device to match.")
@click.option("--for", "duration", default="1h", show_default=True, help="How long: 30m, 2h, 1d.")
@click.option("--comment", default="")
@json_option
def alerts_silence(
    rule: str, src: str, dst: str, device: str, duration: str, comment: str, as_json: bool
) -> None:
    """Silence matching alerts for a while: recorded, but no notification."""
    data = call(
        "alerts.silence",
        {
            "rule": rule,
            "src": src,
            "dst": dst,
            "device": device,
            "duration": duration,
            "comment": comment,
        },
    )
    if as_json:
        emit_json(data)
    else:
        echo(
            f"silence {data['id']} until {_when(data['expires'])};"
            f" {data['silenced']} open alerts silenced"
        )


@alerts.command("unsilence")
@global_options
@click.argument("silence_id", type=int)
@json_option
def alerts_unsilence(silence_id: int, as_json: bool) -> None:
    """End a silence now."""
    data = call("alerts.unsilence", {"id": silence_id})
    if as_json:
        emit_json(data)
    else:
        echo(f"silence {silence_id} ended; {data['reopened']} alerts open again")


@alerts.command("extend-silence")
@global_options
@click.argument("silence_id", type=int)
@click.option("--for", "duration", default="1h", show_default=True,
              help="How much longer: 30m, 2h, 1d.")  # fmt: skip
@json_option
def alerts_extend_silence(silence_id: int, duration: str, as_json: bool) -> None:
    """Let a silence in force run longer."""
    data = call("silences.extend", {"id": silence_id, "duration": duration})
    if as_json:
        emit_json(data)
    else:
        echo(f"silence {silence_id} now ends {_when(data['expires'])}")


def silence_match(silence: dict[str, Any]) -> str:
    """What a silence matches, as ``rule=… src=…``."""
    return " ".join(
        f"{k}={printable(silence[k], limit=64)}"
        for k in ("rule", "src", "dst", "device")
        if silence.get(k)
    )


@alerts.command("silences")
@global_options
@json_option
def alerts_silences(as_json: bool) -> None:
    """Silences in force: what each matches, when it ends and how many alerts it hides."""
    data = call("silences.list")
    if as_json:
        emit_json(data)
        return
    if not data:
        echo("no silences")
        return
    now = time.time()
    echo(f"{'ID':>4} {'ENDS':<14} {'LEFT':>8} {'HIDDEN':>6} {'BY':<12} MATCHES / COMMENT")
    for s in data:
        left = format_duration(max(0, round(s["expires"] - now)))
        comment = printable(s["comment"], limit=80)
        echo(
            f"{s['id']:>4} {_when(s['expires']):<14} {left:>8} {s.get('hidden', 0):>6} "
            f"{printable(s['created_by'], limit=12):<12} {silence_match(s)}"
            + (f"  ({comment})" if comment else "")
        )


@alerts.command("inject")
@global_options
@click.option("--severity", type=click.Choice(SEVERITIES), default="medium", show_default=True)
@click.option("--title", required=True)
@click.option("--src", default="", help="Source address.")
@click.option("--dst", default="", help="Destination address.")
@click.option("--rule", default="inject", show_default=True, help="Rule id, for folding.")
@click.option("--device", default="")
@json_option
def alerts_inject(
    severity: str, title: str, src: str, dst: str, rule: str, device: str, as_json: bool
) -> None:
    """Raise an alert through the engine (admin only), e.g. to rehearse the workflow."""
    data = call(
        "alerts.inject",
        {
            "severity": severity,
            "title": title,
            "src": src,
            "dst": dst,
            "rule": rule,
            "device": device,
        },
    )
    if as_json:
        emit_json(data)
    else:
        echo(data["id"])


# -- audit ------------------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@global_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@click.pass_context
def audit(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The audit log of state-changing commands; ``audit verify`` checks its HMAC chain."""
    if ctx.invoked_subcommand is not None:
        return
    data = call("audit.list", {"limit": limit})
    if as_json:
        emit_json(data)
        return
    for row in reversed(data):
        echo(
            f"{row['id']:>6} {_when(row['ts'])} {row['operator']:<10} {row['command']:<18} "
            f"{printable(row['args'], limit=60)}  {printable(row['result'])}"
        )


@audit.command("verify")
@global_options
@json_option
@click.pass_obj
def audit_verify(settings: Settings, as_json: bool) -> None:
    """Report every audit row that was edited or deleted (exit 1 if any)."""
    try:
        data = call("audit.verify")
    except click.ClickException as exc:
        if "no engine" not in exc.message:
            raise
        data = _verify_offline(settings.config.store.db_path())
    if as_json:
        emit_json(data)
    else:
        echo(
            f"checked {data['checked']} audit rows: "
            f"{'chain intact' if data['ok'] else 'PROBLEMS FOUND'}"
        )
        for p in data["problems"]:
            echo(f"  row {p['id']}: {p['reason']}")
    if not data["ok"]:
        sys.exit(1)


def _verify_offline(db_path: Path) -> dict[str, Any]:
    from engine import audit as audit_chain
    from engine.store.db import StoreError, connect

    try:
        key = audit_chain.load_key(audit_chain.key_path(db_path))
        conn = connect(db_path, readonly=True)
    except (audit_chain.AuditKeyError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        checked, problems = audit_chain.verify_all(conn, key, audit_chain.head_path(db_path))
    finally:
        conn.close()
    return {
        "checked": checked,
        "ok": not problems,
        "problems": [{"id": p.id, "reason": p.reason} for p in problems],
    }


if __name__ == "__main__":
    main()
