"""``iotsec rules``: packet rule files checked the way the engine loads them (as ``suricata -T``
does), so that a rule that would not load is found before a reload; and the engine's running
rules: status, list with hits, reload, enable and disable a sid.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

import click

from console.cli_base import Settings, call, echo, emit_json, global_options, json_option, main


@main.group()
@global_options
def rules() -> None:
    """Packet rules in Suricata syntax."""


@rules.command()
@global_options
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--allow-rejects", is_flag=True, help="Exit 0 even when some rules are rejected.")
@json_option
@click.pass_obj
def check(settings: Settings, paths: tuple[str, ...], allow_rejects: bool, as_json: bool) -> None:
    """Parse rule files (files, directories or globs) and report each rule that would not load,
    with its file, line, sid and the reason. Without PATH: the configured rule files, else the
    shipped pack. Variables come from [detect.vars] in the config.

    Exits 1 if any rule is rejected, unless --allow-rejects.
    """
    # Imported here: commands that do not touch rules need not pay for the parser at start-up.
    from engine.config import ConfigError
    from engine.detect.classification import ClassificationError, shipped_classifications
    from engine.detect.parser import configured_rule_files, load_rules
    from engine.detect.variables import load_variables
    from engine.shipped import MissingContent

    config = settings.config
    try:
        variables = load_variables(config.detect.vars, str(config.source or "config"))
        classes = shipped_classifications()
        files = list(paths) or configured_rule_files(config.detect)
    except (ConfigError, ClassificationError, MissingContent) as exc:
        raise click.ClickException(str(exc)) from None
    accepted, rejected = load_rules(files, variables, classifications=classes)
    if as_json:
        emit_json({"accepted": len(accepted),
                   "rejected": [dataclasses.asdict(r) for r in rejected]})  # fmt: skip
    else:
        for rejection in rejected:
            echo(rejection)
        echo(f"{len(accepted)} rules accepted, {len(rejected)} rejected")
    if rejected and not allow_rejects:
        sys.exit(1)


@rules.command()
@global_options
@json_option
def status(as_json: bool) -> None:
    """The engine's rule files with their counts, rejections and the last reload."""
    data = call("rules.status")
    if as_json:
        emit_json(data)
        return
    _print_status(data)


@rules.command("list")
@global_options
@click.option("--filter", "text", default="", help="Only sids, messages or classtypes with TEXT.")
@click.option("--limit", default=5000, show_default=True)
@json_option
def list_rules(text: str, limit: int, as_json: bool) -> None:
    """The engine's rules with their hits, most hits first (disabled ones marked)."""
    data = call("rules.list", {"filter": text, "limit": limit})
    if as_json:
        emit_json(data)
        return
    echo(f"{'SID':>10} {'HITS':>8} {'ACTION':<7} {'SEVERITY':<8} {'ON':<3} MSG")
    for r in data["rules"]:
        on = "yes" if r["enabled"] else "no"
        cells = f"{r['sid']:>10} {r['hits']:>8} {r['action']:<7} {r['severity']:<8} {on:<3}"
        echo(f"{cells} {r['msg']}")
    echo(f"{len(data['rules'])} of {data['total']} rules")


@rules.command()
@global_options
@json_option
def reload(as_json: bool) -> None:
    """Read the rule files (and the config's [detect] section) again and swap them in. When
    that brings new problems, the running rules stay and the reason is printed (exit 1).
    Sending SIGHUP to the engine does the same."""
    data = call("rules.reload")
    if as_json:
        emit_json(data)
        return
    echo("rules reloaded")
    _print_status(data)


@rules.command()
@global_options
@click.argument("sid", type=int)
@json_option
def enable(sid: int, as_json: bool) -> None:
    """Run a disabled rule again (kept across engine restarts)."""
    _set(sid, "rules.enable", as_json)


@rules.command()
@global_options
@click.argument("sid", type=int)
@json_option
def disable(sid: int, as_json: bool) -> None:
    """Stop running a rule (kept across engine restarts)."""
    _set(sid, "rules.disable", as_json)


def _set(sid: int, command: str, as_json: bool) -> None:
    rule = call(command, {"sid": sid})
    if as_json:
        emit_json(rule)
    else:
        state = "enabled" if rule["enabled"] else "disabled"
        echo(f"sid {rule['sid']} {state}: {rule['msg']}")


def _print_status(data: dict[str, Any]) -> None:
    for f in data["files"]:
        echo(f"{f['path']}: {f['accepted']} loaded, {f['rejected']} rejected")
    disabled = len(data["disabled"])
    echo(f"{data['accepted']} rules loaded, {len(data['rejected'])} rejected, {disabled} disabled,"
         f" {data['running']} running; {data['hits']} hits, {data['alerts']} alerts")  # fmt: skip
    if data["loaded_at"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data["loaded_at"]))
        echo(f"loaded at {when}, {data['reloads']} reloads since the engine started")
    if data["reload_error"]:
        echo(f"last reload failed: {data['reload_error']}")
    for r in data["rejected"]:
        sid = f" sid {r['sid']}:" if r["sid"] else ""
        echo(f"  {r['file']}:{r['line']}:{sid} {r['reason']}")
    for t in data["pcre_timeouts"]:
        echo(f"sid {t['sid']}: pcre ran out of time on {t['packets']} packets (not matched there;"
             " see [detect] pcre_timeout)")  # fmt: skip
