"""``iotsec lab``: a small IoT network in network namespaces (up, down, status, scenarios, the
camera's serial cable), for the tests and a first look. The lab itself is engine.lab's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from console.cli_base import Settings, echo, emit_json, global_options, json_option, main


@main.group()
def lab() -> None:
    """A small IoT network in network namespaces, for the tests and a first look (root only)."""


def _lab_call(fn: Callable[..., Any]) -> Any:
    from engine.lab.topology import LabError

    settings = click.get_current_context().ensure_object(Settings)
    try:
        return fn(settings.config.lab)
    except LabError as exc:
        raise click.ClickException(str(exc)) from None


@lab.command("up")
@global_options
@click.option("--engine", "with_engine", is_flag=True,
              help="Also run an engine in the lab's gateway, set up for the lab.")  # fmt: skip
@json_option
def lab_up(with_engine: bool, as_json: bool) -> None:
    """Create the lab (running it again is harmless)."""
    from engine.lab import lifecycle

    plan = _lab_call(lambda config: lifecycle.up(config, engine=with_engine))
    data = _lab_call(lifecycle.status)
    if as_json:
        emit_json(data)
        return
    echo(f"lab {plan.prefix} is up: lan {plan.lan} behind gateway {plan.gateway.address},"
         f" outside {plan.outside}")  # fmt: skip
    _print_hosts(data)


@lab.command("down")
@global_options
@json_option
def lab_down(as_json: bool) -> None:
    """Remove everything the lab made: processes, namespaces, links."""
    from engine.lab import lifecycle

    removed = _lab_call(lifecycle.down)
    if as_json:
        emit_json({"removed": removed})
    else:
        echo(f"removed {len(removed)} namespaces" if removed else "no lab to remove")


@lab.command("status")
@global_options
@json_option
def lab_status(as_json: bool) -> None:
    """What of the lab exists now."""
    from engine.lab import lifecycle

    data = _lab_call(lifecycle.status)
    if as_json:
        emit_json(data)
        return
    echo(f"lab {data['prefix']}: {'up' if data['up'] else 'not up'}"
         f" (lan {data['lan']}, outside {data['outside']})")  # fmt: skip
    _print_hosts(data)


@lab.command("run")
@global_options
@click.argument("scenario")
@json_option
def lab_run(scenario: str, as_json: bool) -> None:
    """Run a traffic scenario: normal, bruteforce, scan, mirai or modbus-write (stops by itself)."""
    from engine.lab import scenarios
    from engine.lab.topology import Plan

    def run(config: Any) -> dict[str, Any]:
        return scenarios.run(Plan.from_config(config), scenario)

    result = _lab_call(run)
    if as_json:
        emit_json(result)
    else:
        echo(" ".join(f"{k}={v}" for k, v in result.items()))


@lab.command("unplug")
@global_options
def lab_unplug() -> None:
    """Pull the serial cable of the lab's camera: its pty goes away."""
    from engine.lab import devices
    from engine.lab.topology import Plan

    _lab_call(lambda config: devices.unplug_serial(Plan.from_config(config)))
    echo("serial device unplugged")


@lab.command("replug")
@global_options
def lab_replug() -> None:
    """Plug the serial cable back in: the camera boots again on a new pty."""
    from engine.lab import devices
    from engine.lab.topology import Plan

    path = _lab_call(lambda config: devices.plug_serial(Plan.from_config(config)))
    echo(f"serial device at {path}")


def _print_hosts(data: dict[str, Any]) -> None:
    serial = data.get("serial")
    echo(f"  {'serial':<11} {serial or 'unplugged'}")
    engine = data.get("engine") or {}
    if engine.get("running"):
        echo(f"  {'engine':<11} pid {engine['pid']}, socket {engine['socket']}")
        echo(f"  {'':<11} attach: {engine['attach']}")
    else:
        echo(f"  {'engine':<11} not running (iotsec lab up --engine starts one)")
    for host in data["hosts"]:
        state = "present" if host["present"] else "missing"
        if host.get("services"):
            running = "running" if host["running"] else "NOT running"
            state += f", {running} {' '.join(host['services'])}"
        echo(f"  {host['role']:<11} {host['address']:<15} {host['netns']:<18} {state}")
