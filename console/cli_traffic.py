"""``iotsec analyze`` (capture files) and ``iotsec capture`` (live, headless): the traffic part
run in this process, without an engine, through the same pipeline the engine uses.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

import click

from console.cli_base import echo, emit_json, global_options, json_option, main
from engine.capture.analyze import flow_record
from engine.capture.filter import Filter, FilterError, parse_filter
from engine.capture.flows import Flow


def _endpoint(address: str, port: int, proto: str) -> str:
    if proto not in ("tcp", "udp"):
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _flow_line(flow: Flow) -> str:
    record = flow_record(flow)
    proto = record["proto"]
    ends = (f"{_endpoint(record['src'], record['sport'], proto)} -> "
            f"{_endpoint(record['dst'], record['dport'], proto)}")  # fmt: skip
    facts = " ".join(f"{k}={v}" for k, v in flow.details.items() if not isinstance(v, list))
    return (
        f"{record['proto']:<6} {flow.app:<8} {ends:<47} {record['packets']:>7} pkts "
        f"{_size(record['bytes']):>8} {record['duration']:>9.3f}s {flow.state:<4} {facts}"
    ).rstrip()


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _filter(text: str | None) -> Filter | None:
    if not text:
        return None
    try:
        return parse_filter(text)
    except FilterError as exc:
        raise click.BadParameter(str(exc), param_hint="--filter") from None


@main.command()
@global_options
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--realtime", is_flag=True, help="Replay at the pace the packets were captured.")
@click.option(
    "--write-pcap",
    "write_pcap",
    metavar="OUT",
    type=click.Path(dir_okay=False),
    help="Save the packets that pass --filter (all without it) to OUT (.pcap or .pcapng).",
)
@click.option(
    "--filter",
    "filter_text",
    metavar="EXPR",
    help="Display filter for --write-pcap and --flows, e.g. 'mqtt and host 10.0.0.5'.",
)
@click.option("--flows", "show_flows", is_flag=True, help="Also list every flow as it ends.")
@click.option(
    "--rules",
    "rule_paths",
    multiple=True,
    metavar="PATH",
    help="Rule files (Suricata syntax); default: [detect] rule_files, else the shipped pack.",
)
@click.option("--no-rules", is_flag=True, help="Run no rules: traffic summary only (faster).")
@json_option
@click.pass_obj
def analyze(
    settings: Any,
    files: tuple[str, ...],
    realtime: bool,
    write_pcap: str | None,
    filter_text: str | None,
    show_flows: bool,
    rule_paths: tuple[str, ...],
    no_rules: bool,
    as_json: bool,
) -> None:
    """Summarise capture files: packets, bytes, flows, top talkers, protocols, malformed frames,
    and the alerts the rules raise.

    Files are streamed, never loaded whole; a damaged file is reported and the rest still read.
    """
    from engine.capture.analyze import analyze as run

    wanted = _filter(filter_text)
    detector = None if no_rules else _detector(settings, rule_paths)
    listed: list[dict[str, Any]] = []

    def on_flow(flow: Flow) -> None:
        if wanted is None or wanted.matches(flow):
            if as_json:
                listed.append(flow_record(flow))
            else:
                echo(_flow_line(flow))

    summary = run(files, realtime=realtime, display_filter=wanted, write_to=write_pcap,
                  on_flow=on_flow if show_flows else None, detector=detector)  # fmt: skip
    if as_json:
        if show_flows:
            summary["flow_list"] = listed
        emit_json(summary)
    else:
        _print_summary(summary, write_pcap)
    if summary["errors"] and summary["packets"] == 0:
        sys.exit(1)


def _detector(settings: Any, rule_paths: tuple[str, ...]) -> Any:
    """The rules to run; rules that do not load are reported on stderr, the rest still run."""
    from engine.config import ConfigError
    from engine.detect.loader import configured_detector, load_detector
    from engine.shipped import MissingContent

    detect = settings.config.detect
    try:
        if rule_paths:
            detector, rejected = load_detector(rule_paths, detect.vars, detect.stream_depth,
                                               detect.pcre_timeout)  # fmt: skip
        else:
            detector, rejected = configured_detector(detect)
    except (ConfigError, MissingContent) as exc:
        raise click.ClickException(str(exc)) from None
    if rejected:
        click.echo(f"warning: {len(rejected)} rules not loaded (iotsec rules check says why); "
                   f"first: {rejected[0]}", err=True)  # fmt: skip
    return detector


def _print_summary(s: dict[str, Any], written_to: str | None) -> None:
    for error in s["errors"]:
        echo(f"error: {error}")
    echo(
        f"{s['packets']} packets, {_size(s['bytes'])}, {s['duration']:.3f} s, {s['flows']} flows; "
        f"malformed {s['malformed']}, fragments {s['fragments']}, "
        f"unsupported {s['unsupported']}"
    )
    if s["protocols"]:
        echo("protocols: " + ", ".join(f"{k} {v}" for k, v in s["protocols"].items()))
    if s["top_talkers"]:
        echo("top talkers:")
        for t in s["top_talkers"]:
            echo(f"  {t['host']:<40} {_size(t['bytes']):>9} {t['packets']:>8} pkts "
                 f"{t['flows']:>6} flows  {' '.join(t['apps'])}")  # fmt: skip
    for flow in s["cleartext"]:
        user = flow["details"].get("username")
        who = f" (user {user})" if user else ""
        echo(f"cleartext: {', '.join(flow['cleartext'])}{who} "
             f"{flow['src']} -> {flow['dst']}:{flow['dport']}")  # fmt: skip
    alerts = s.get("alerts", [])
    if alerts:
        echo(f"alerts: {len(alerts)}" + (f" (+{s['alerts_dropped']} not listed)"
                                        if s.get("alerts_dropped") else ""))  # fmt: skip
    for a in alerts:
        where = (
            f"{_endpoint(a['src'], a['sport'], a['proto'])} -> "
            f"{_endpoint(a['dst'], a['dport'], a['proto'])}"
        )
        echo(f"  {a['severity']:<6} sid {a['sid']:<8} {where:<45} {a['msg']}")
    if written_to:
        echo(f"wrote {s.get('written', 0)} packets to {written_to}")


@main.command()
@global_options
@click.option("--iface", "interfaces", multiple=True, required=True, metavar="IF",
              help="Interface to capture on (repeat for several).")  # fmt: skip
@click.option("--bpf", default="", metavar="EXPR", help="Kernel capture filter (tcpdump syntax).")
@click.option("--duration", type=click.FloatRange(0, min_open=True), metavar="SECONDS",
              help="Stop after this long (default: until Ctrl-C).")  # fmt: skip
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0, min_open=True),
    metavar="SECONDS",
    help="A flow ends after this long without packets ([capture] idle_timeout).",
)
@json_option
@click.pass_obj
def capture(
    settings: Any,
    interfaces: tuple[str, ...],
    bpf: str,
    duration: float | None,
    idle_timeout: float | None,
    as_json: bool,
) -> None:
    """Capture live, headless, and print flows as they end (JSON lines with --json).

    Needs CAP_NET_RAW. Stops on Ctrl-C, SIGTERM or --duration, then prints the statistics.
    """
    from engine.capture.live import CaptureError, LiveCapture
    from engine.capture.pipeline import Pipeline

    config = settings.config.capture
    pipeline = Pipeline(max_flows=config.max_flows,
                        idle_timeout=idle_timeout or config.idle_timeout,
                        active_timeout=config.active_timeout, ring_bytes=0)  # fmt: skip

    def handle(iface: str, linktype: int, frames: list[tuple[float, bytes, int]]) -> None:
        with pipeline.lock:
            for ts, data, length in frames:
                pipeline.feed(ts, linktype, data, length, iface)

    live = LiveCapture(list(interfaces), handle, bpf=bpf, buffer_bytes=config.buffer_bytes)
    try:
        live.start()
    except CaptureError as exc:
        raise click.ClickException(str(exc)) from None
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    if not as_json:
        echo(f"capturing on {', '.join(interfaces)}" + (f" ({bpf})" if bpf else ""))
    deadline = time.monotonic() + duration if duration else None
    while not done.wait(0.5):
        _emit_flows(pipeline, as_json, expire=True)
        if deadline and time.monotonic() >= deadline:
            break
    live.stop()
    with pipeline.lock:
        pipeline.finish()
    _emit_flows(pipeline, as_json, expire=False)
    stats = {
        "interfaces": [vars(s) for s in live.stats.values()],
        "packets": pipeline.frames,
        "bytes": pipeline.bytes,
        "kernel_drops": live.kernel_drops,
        "queue_drops": 0,  # frames go straight from the ring to the pipeline: no queue
        "malformed": pipeline.malformed,
        "protocols": pipeline.protocols,
    }
    if as_json:
        click.echo(json.dumps({"stats": stats}, default=str))
    else:
        echo(f"{stats['packets']} packets, {_size(stats['bytes'])}, kernel drops "
             f"{stats['kernel_drops']}, malformed {stats['malformed']}")  # fmt: skip


def _emit_flows(pipeline: Any, as_json: bool, *, expire: bool) -> None:
    with pipeline.lock:
        if expire:
            pipeline.expire(time.time())
        ended, pipeline.ended = pipeline.ended, []
    for flow in ended:
        if as_json:
            click.echo(json.dumps(flow_record(flow), default=str))
        else:
            echo(_flow_line(flow))
    if ended:
        sys.stdout.flush()
