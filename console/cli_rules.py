"""``iotsec rules``: packet rule files checked the way the engine loads them (as ``suricata -T``
does), so that a rule that would not load is found before a reload.
"""

from __future__ import annotations

import dataclasses
import sys

import click

from console.cli_base import Settings, echo, emit_json, global_options, json_option, main


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

    config = settings.config
    try:
        variables = load_variables(config.detect.vars, str(config.source or "config"))
        classes = shipped_classifications()
    except (ConfigError, ClassificationError) as exc:
        raise click.ClickException(str(exc)) from None
    files = list(paths) or configured_rule_files(config.detect)
    accepted, rejected = load_rules(files, variables, classifications=classes)
    if as_json:
        emit_json({"accepted": len(accepted),
                   "rejected": [dataclasses.asdict(r) for r in rejected]})  # fmt: skip
    else:
        for rejection in rejected:
            echo(rejection)
        if not files:
            echo("no rule files: [detect] rule_files is empty and the shipped pack has none")
        echo(f"{len(accepted)} rules accepted, {len(rejected)} rejected")
    if rejected and not allow_rejects:
        sys.exit(1)
