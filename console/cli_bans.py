"""``iotsec ban``, ``unban`` and ``bans``: bans in the OS firewall through the engine (audited;
operators), with time left and the firewall's drop counters."""

from __future__ import annotations

from typing import Any

import click

from console.cli_base import call, echo, emit_json, global_options, json_option, main
from engine.durations import format_duration


def _left(ban: dict[str, Any]) -> str:
    return "permanent" if ban.get("left") is None else format_duration(ban["left"])


def _enforcement(data: dict[str, Any]) -> str:
    if data.get("enforced"):
        return f"enforced by {data.get('backend')}"
    return f"NOT enforced ({data.get('backend')}): {data.get('problem') or 'dry-run'}"


@main.command()
@global_options
@click.argument("addresses", nargs=-1)
@click.option("--for", "duration", default="",
              help="How long: 30m, 2h, 1d, or 'permanent' (default: [respond] bantime, longer for "
                   "repeat offenders).")  # fmt: skip
@click.option("--reason", default="", help="Why: shown with the ban and in the audit log.")
@click.option("--local-ok", is_flag=True,
              help="Yes, ban it although it is a device of the inventory (a compromised camera, "
                   "say): without this such an address is refused.")  # fmt: skip
@click.option("--flush", is_flag=True, help="Lift every ban and remove our firewall table.")
@json_option
def ban(addresses: tuple[str, ...], duration: str, reason: str, local_ok: bool, flush: bool,
        as_json: bool) -> None:  # fmt: skip
    """Ban ADDRESS... (IPv4 or IPv6, or networks such as 203.0.113.0/24) in the firewall, as
    one decision: if one is refused, none is banned.

    Refused for loopback, this box's addresses, [respond] ignoreip and every logged-in
    operator's SSH client, including yours. An address of a device of the inventory needs
    --local-ok as well.
    """
    if flush:
        if addresses:
            raise click.UsageError("--flush lifts every ban: give no ADDRESS with it")
        data = call("bans.flush")
        if as_json:
            emit_json(data)
        else:
            echo(f"{data['lifted']} bans lifted; our firewall table removed")
        return
    if not addresses or not all(a.strip() for a in addresses):
        raise click.UsageError("give the ADDRESS to ban (or --flush)")
    args: dict[str, Any] = {"reason": reason}
    if local_ok:
        args["local_ok"] = True
    if len(addresses) == 1:
        args["address"] = addresses[0]
    else:
        args["addresses"] = list(addresses)
    if duration.strip().lower() == "permanent":
        args["permanent"] = True
    elif duration:
        args["for"] = duration
    data = call("bans.ban", args)
    if as_json:
        emit_json(data)
        return
    if "count" in data and not data["bans"]:
        echo(f"{data['count']} bans (ids {data['ids'][0]}-{data['ids'][1]});"
             f" {_enforcement(data)}")  # fmt: skip
    for made in data.get("bans", [data]):
        previous = f", banned {made['previous']} times before" if made.get("previous") else ""
        echo(f"ban {made['id']}: {made['address']} for {_left(made)}{previous};"
             f" {_enforcement(made)}")  # fmt: skip
        if made.get("replaced"):
            echo(f"  replaces the bans {', '.join(map(str, made['replaced']))} inside it")


@main.command()
@global_options
@click.argument("address")
@json_option
def unban(address: str, as_json: bool) -> None:
    """Lift the ban of ADDRESS (or network)."""
    data = call("bans.unban", {"address": address})
    if as_json:
        emit_json(data)
    else:
        echo(f"ban {data['id']} of {data['address']} lifted")


@main.command()
@global_options
@json_option
def bans(as_json: bool) -> None:
    """Active bans: time left, reason, who, and packets the firewall dropped."""
    data = call("bans.list")
    if as_json:
        emit_json(data)
        return
    echo(f"{len(data['bans'])} active bans, {_enforcement(data)}")
    for proposal in data.get("proposed", []):
        if proposal.get("permanent"):
            length = "permanent"
        elif proposal.get("bantime"):
            length = format_duration(proposal["bantime"])
        else:
            length = "the default bantime"
        echo(f"PROPOSED {proposal['id']}: {proposal['address']} for {length}, {proposal['reason']}"
             f" (confirm in the console's Bans view)")  # fmt: skip
    if not data["bans"]:
        return
    echo(f"{'ID':>5}  {'ADDRESS':<20} {'LEFT':>10} {'DROPPED':>8}  {'BY':<10} REASON")
    for entry in data["bans"]:
        echo(f"{entry['id']:>5}  {entry['address']:<20} {_left(entry):>10} {entry['packets']:>8}"
             f"  {entry['created_by'][:10]:<10} {entry['reason']}"
             + (f" (banned {entry['previous']}x before)" if entry["previous"] else ""))  # fmt: skip
