"""``iotsec logs``: the engine's jails with their failure counts (``fail2ban-client
status``), a live colourised tail of a log with its failures highlighted, and log filters
tried on a file the way ``fail2ban-regex`` tries them."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import click

from console.cli_base import call, echo, emit_json, global_options, json_option, main
from engine.durations import format_duration, parse_duration
from engine.text import printable

MISSED_SHOWN = 1000


@main.group(invoke_without_command=True)
@global_options
@json_option
@click.pass_context
def logs(ctx: click.Context, as_json: bool) -> None:
    """Jails with their failure counts, and the files and sources they follow (from the
    engine); the subcommands follow a log or try a filter on one."""
    if ctx.invoked_subcommand is not None:
        return
    data = call("logs.status")
    if as_json:
        emit_json(data)
        return
    echo(_jails_text(data))


def _failures(n: int) -> str:
    return f"{n} failure" if n == 1 else f"{n} failures"


def _jails_text(data: dict[str, Any]) -> str:
    out = [f"logwatch {data['state']} ({data['watcher']}): {len(data['jails'])} jails, "
           f"{len(data['files'])} files"]  # fmt: skip
    if data.get("reason"):
        out.append(f"  {data['reason']}")
    if data["jails"]:
        out.append(f"\n{'JAIL':<16} {'STATE':<9} {'FAILING':>7} {'FAILED':>7} {'ALERTS':>6}  "
                   f"{'MAXRETRY/FINDTIME':<17}  BAN  SOURCES")  # fmt: skip
    for jail in data["jails"]:
        sources = [*jail["files"], *(["syslog"] if jail["syslog"] else []),
                   *(f"journal {m}" for m in jail["journal"])]  # fmt: skip
        state = jail["state"] if jail["state"] == "running" else "error"
        limits = f"{jail['maxretry']}/{format_duration(jail['findtime'])}"
        out.append(f"{jail['name']:<16} {state:<9} {jail['currently_failed']:>7} "
                   f"{jail['total_failed']:>7} {jail['alerts']:>6}  {limits:<17}  "
                   f"{'yes' if jail['ban'] else 'no':<3}  {', '.join(sources)}")  # fmt: skip
        if state == "error":
            out.append(f"  {jail['state']}")
        for host in jail["hosts"]:
            out.append(f"  {host['host']:<40} {_failures(host['failures'])}")
    if data["files"]:
        out.append("\nFILES")
    for entry in data["files"]:
        size = "?" if entry["size"] is None else entry["size"]
        out.append(f"  {entry['path']}  {entry['state']}  read {entry['offset']}/{size} bytes, "
                   f"{entry['lines']} lines, {_failures(entry['matched'])}")  # fmt: skip
        out.append(f"    {entry['rotations']} rotations, {entry['truncations']} truncations")
        if entry["error"]:
            out.append(f"    {entry['error']}")
    if data["skipped"]:
        out.append(f"\nSKIPPED (found by a glob, not read; owners: {', '.join(data['owners'])})")
    for entry in data["skipped"]:
        out.append(f"  {entry['reason']}")
    syslog = data["syslog"]
    if syslog["enabled"]:
        ports = ", ".join(f"{kind} {syslog[f'{kind}_port']}" for kind in ("udp", "tcp")
                          if syslog[f"{kind}_port"])  # fmt: skip
        out.append(f"\nsyslog on {syslog['address']} ({ports}): {syslog['received']} received,"
                   f" {syslog['malformed']} malformed, {syslog['matched']} failures")  # fmt: skip
        if syslog["last_error"]:
            out.append(f"  last malformed: {syslog['last_error']}")
        if syslog["cut"]:
            out.append(f"  {syslog['cut']} longer than logwatch.syslog.max_message, cut there")
        if syslog["udp_dropped"]:
            out.append(f"  {syslog['udp_dropped']} UDP datagrams dropped by the kernel (its receive"
                       f" buffer of {syslog['udp_buffer']} bytes was full)")  # fmt: skip
        if syslog["tcp_refused"] or syslog["tcp_timed_out"]:
            out.append(f"  TCP: {syslog['tcp_connections']} open, {syslog['tcp_refused']} closed"
                       f" past max_connections, {syslog['tcp_timed_out']} closed idle")  # fmt: skip
    for journal in data["journal"]:
        out.append(f"journal {journal['matches']}: {journal['state']}, {journal['lines']} "
                   f"entries, {journal['matched']} failures")  # fmt: skip
    if data.get("dropped"):
        out.append(f"{data['dropped']} syslog/journal lines dropped (the reader fell behind)")
    return "\n".join(out)


@logs.command("test")
@global_options
@click.argument("logfile", type=click.Path(dir_okay=False))
@click.argument("filter_name", metavar="FILTER")
@click.option("--print-missed", is_flag=True, help=f"Print the lines no regex matched (the "
              f"first {MISSED_SHOWN}).")  # fmt: skip
@click.option("--maxretry", type=click.IntRange(1), default=5, show_default=True,
              help="Failures that ban a host...")  # fmt: skip
@click.option("--findtime", default="10m", show_default=True, help="...within this long.")
@click.option("--mode", default="", help="The filter's mode (sshd: normal, ddos, extra, "
              "aggressive); default: its first.")  # fmt: skip
@json_option
def logs_test(logfile: str, filter_name: str, print_missed: bool, maxretry: int, findtime: str,
              mode: str, as_json: bool) -> None:  # fmt: skip
    """Read LOGFILE through FILTER (a shipped filter's name, such as sshd, or a filter file)
    and count, like fail2ban-regex: lines, matched, missed, ignored, hits per regex, and the
    failure lines per host with the hosts that would be banned."""
    from engine.logwatch.filters import FilterError, find_filter
    from engine.logwatch.report import run

    try:
        window = parse_duration(findtime)
        chosen = find_filter(filter_name, mode)
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


@logs.command("follow")
@global_options
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--filter", "filter_names", multiple=True, metavar="FILTER",
              help="Filter to highlight failures with (repeat; default: all shipped).")  # fmt: skip
@click.option("-n", "--lines", "last", type=click.IntRange(0), default=10, show_default=True,
              help="Lines of the end of the file to show first.")  # fmt: skip
@click.option("--failures", is_flag=True, help="Show only the lines a filter fails.")
def logs_follow(path: str, filter_names: tuple[str, ...], last: int, failures: bool) -> None:
    """Follow PATH like tail -F (rotation, truncation, a file that appears later), with the
    lines a filter fails highlighted and marked [filter host]. Reads the file directly: no
    engine needed. Ctrl-C ends it."""
    from engine.logwatch.filters import Examiner, FilterError, find_filter, shipped_filters
    from engine.logwatch.follower import Follower, last_lines

    try:
        chosen = [find_filter(n) for n in (filter_names or tuple(shipped_filters()))]
    except FilterError as exc:
        raise click.ClickException(str(exc)) from None
    examiners = [Examiner(f) for f in chosen]
    follower = Follower(path)
    if follower.state == "error":
        raise click.ClickException(follower.error)
    for line in last_lines(path, last) if last and follower.state == "following" else []:
        _show(line, examiners, failures)
    wake = _watch(path)
    try:
        while True:
            for line in follower.read():
                _show(line, examiners, failures)
            sys.stdout.flush()
            wake.wait(0.5)
            wake.clear()
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()


def _watch(path: str) -> threading.Event:
    """An event set when the file's directory changes (inotify; without it, polling)."""
    import os

    wake = threading.Event()
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                wake.set()

        observer = Observer()
        observer.schedule(Handler(), os.path.dirname(os.path.abspath(path)) or ".")
        observer.daemon = True
        observer.start()
    except (OSError, ImportError):
        pass  # the loop polls every half second anyway
    return wake


def _show(line: str, examiners: list[Any], failures_only: bool) -> None:
    shown = printable(line)
    now = time.time()
    for examiner in examiners:
        verdict = examiner.examine(line, now)
        if verdict.kind != "matched":
            continue
        host = printable(verdict.host)
        at = shown.lower().find(host.lower())
        if at >= 0:
            body = (click.style(shown[:at], fg="yellow")
                    + click.style(shown[at : at + len(host)], fg="red", bold=True)
                    + click.style(shown[at + len(host) :], fg="yellow"))  # fmt: skip
        else:
            body = click.style(shown, fg="yellow")
        mark = click.style(f"[{examiner.filter.name} {host}]", fg="red", bold=True)
        click.echo(f"{mark} {body}")
        return
    if not failures_only:
        click.echo(_plain(shown))


def _plain(line: str) -> str:
    """A line no filter fails: its time dim, its program in cyan (as lnav and toolong draw)."""
    from engine.logwatch.filters import split_syslog
    from engine.logwatch.timestamps import NoTime, parse

    try:
        _, rest = parse(line)
    except NoTime:
        return line
    stamp = line[: len(line) - len(rest)]
    program, message = split_syslog(rest)
    if not program:
        return click.style(stamp, dim=True) + rest
    header = rest[: len(rest) - len(message)]
    return click.style(stamp, dim=True) + click.style(header, fg="cyan") + message
