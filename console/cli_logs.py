"""``iotsec logs``: log filters tried on a file the way ``fail2ban-regex`` tries them."""

from __future__ import annotations

import sys

import click

from console.cli_base import echo, emit_json, global_options, json_option, main
from engine.durations import parse_duration

MISSED_SHOWN = 1000


@main.group()
@global_options
def logs() -> None:
    """Log filters and jails."""


@logs.command("test")
@global_options
@click.argument("logfile", type=click.Path(dir_okay=False))
@click.argument("filter_name", metavar="FILTER")
@click.option("--print-missed", is_flag=True, help=f"Print the lines no regex matched (the "
              f"first {MISSED_SHOWN}).")  # fmt: skip
@click.option("--maxretry", type=click.IntRange(1), default=5, show_default=True,
              help="Failures that ban a host...")  # fmt: skip
@click.option("--findtime", default="10m", show_default=True, help="...within this long.")
@json_option
def logs_test(logfile: str, filter_name: str, print_missed: bool, maxretry: int, findtime: str,
              as_json: bool) -> None:  # fmt: skip
    """Read LOGFILE through FILTER (a shipped filter's name, such as sshd, or a filter file)
    and count, like fail2ban-regex: lines, matched, missed, ignored, hits per regex, and the
    failure lines per host with the hosts that would be banned."""
    from engine.logwatch.filters import FilterError, find_filter
    from engine.logwatch.report import run

    try:
        window = parse_duration(findtime)
        chosen = find_filter(filter_name)
        report = run(chosen, logfile, MISSED_SHOWN if print_missed else 0)
    except (FilterError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{logfile}: {exc.strerror or exc}") from None
    if as_json:
        emit_json(report.as_json(maxretry, window))
        return
    echo(f"Filter {chosen.name}: {chosen.source}")
    echo(f"Log file: {logfile}")
    echo(f"\nFailregex: {report.matched} total")
    echo("|-  #) [# of hits] regular expression")
    for n, (written, hits) in enumerate(zip(chosen.written, report.hits, strict=True), 1):
        echo(f"|  {n:>2}) [{hits}] {written}")
    echo(f"\nIgnoreregex: {report.ignored} total")
    echo(f"\nLines: {report.lines} lines, {report.ignored} ignored, {report.matched} matched,"
         f" {report.noted} noted (a failure told again), {report.missed} missed")  # fmt: skip
    hosts = sorted(report.hosts.items(), key=lambda item: (-len(item[1]), item[0]))
    echo(f"\nHosts: {len(hosts)}")
    for host, times in hosts:
        echo(f"  {host:<40} {len(times)} failures")
    banned = report.banned(maxretry, window)
    echo(f"\nWould be banned ({maxretry} failures within {findtime}): "
         f"{', '.join(banned) if banned else 'none'}")  # fmt: skip
    if print_missed:
        echo(f"\nMissed lines ({len(report.missed_lines)} shown):")
        for line in report.missed_lines:
            echo(f"  {line}")
    sys.stdout.flush()
