"""The lab's own engine: started in the gateway's namespace (where the lab's traffic passes) on
a config written for the lab — capture on the gateway's LAN and outside links, scan scope the
lab LAN, jails on the lab daemons' logs, the camera's serial line, nftables enforcement in the
gateway's namespace only, no learning period — with its database and socket under the lab's
state directory. `lab down` stops it by its pid.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
import time
from pathlib import Path
from typing import Any

from engine.config import LabConfig
from engine.control.client import answers
from engine.lab import devices, processes
from engine.lab.topology import LabError, Plan

START_TIMEOUT = 30.0
STOP_GRACE = 15.0
PIDFILE = "engine.pid"


def directory(plan: Plan) -> Path:
    return devices.state_dir(plan) / "engine"


def socket_path(config: LabConfig) -> Path:
    """Where the lab engine of a lab with this config listens (whether or not it runs)."""
    return directory(Plan.from_config(config)) / "control.sock"


def _quote(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _operator() -> tuple[str | None, str]:
    """The user who ran ``sudo`` (an admin of the lab engine, and the socket's group is theirs
    so that ``make run`` as that user attaches), else nobody and the default group."""
    name = os.environ.get("SUDO_USER")
    if not name or name == "root":
        return None, "iotsec"
    try:
        entry = pwd.getpwnam(name)
        return name, grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        return None, "iotsec"


def config_text(plan: Plan) -> str:
    """The lab engine's config."""
    state = devices.state_dir(plan)
    here = directory(plan)
    admin, group = _operator()
    admins = f"admin = [{_quote(admin)}]\n" if admin else ""
    return f"""# Written by `iotsec lab up --engine` for lab {plan.prefix}; lab down removes it.
[store]
path = {_quote(str(here / "iotsec.db"))}

[control]
socket = {_quote(str(here / "control.sock"))}
group = {_quote(group)}

[control.roles]
{admins}
[capture]
interfaces = ["lan0", "ext0"]

[scan]
scope = [{_quote(str(plan.lan))}]

[devices]
learning = "0s"

[respond]
backend = "nftables"

[serial]
open = [{_quote(str(devices.serial_path(plan)))}]
transcript_dir = {_quote(str(here / "serial"))}

# The lab's dropbear writes its own log (-E); BusyBox login on the camera logs no address, so
# Telnet guessing is the packet rules' to catch. The jails alert and leave the ban to the
# operator (b in the Alerts pane), as a first look should show.
[[logwatch.jail]]
name = "lab-dropbear"
filters = ["dropbear"]
files = [{_quote(str(state / "ssh.log"))}]
maxretry = 3
ban = false

[[logwatch.jail]]
name = "lab-mosquitto"
filters = ["mosquitto"]
files = [{_quote(str(state / "broker.log"))}]
maxretry = 3
ban = false
"""


def running(plan: Plan) -> int | None:
    """The pid of the lab engine if it runs."""
    try:
        pid = int((directory(plan) / PIDFILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if processes.command_of(pid) in (sys.executable, "ip") else None


def start(plan: Plan) -> int:
    """Start the lab engine (unless it runs) and wait until it answers; its pid."""
    pid = running(plan)
    if pid is not None:
        return pid
    here = directory(plan)
    here.mkdir(parents=True, exist_ok=True, mode=0o700)
    admin, group = _operator()
    if admin is not None:
        # The user who ran sudo reaches the socket: through the state directory, and into
        # this one as its group (the engine's files in it stay 0600).
        devices.STATE_ROOT.chmod(0o755)
        devices.state_dir(plan).chmod(0o711)
        os.chown(here, -1, grp.getgrnam(group).gr_gid)
        here.chmod(0o750)
    config = here / "iotsec.toml"
    config.write_text(config_text(plan))
    log = here / "engine.log"
    pid = devices.spawn(plan.gateway, [sys.executable, "-m", "engine", "--config", str(config)],
                        log)  # fmt: skip
    (here / PIDFILE).write_text(f"{pid}\n")
    sock = here / "control.sock"
    deadline = time.monotonic() + START_TIMEOUT
    while not answers(sock):
        if not processes.alive(pid) or time.monotonic() > deadline:
            processes.end([pid])
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise LabError(f"the lab engine did not start: {tail or 'no output'} (log {log})")
        time.sleep(0.1)
    return pid


def stop(plan: Plan) -> None:
    """Stop the lab engine: SIGTERM (it commits and closes), SIGKILL after a grace."""
    pid = running(plan)
    if pid is not None:
        processes.end([pid], grace=STOP_GRACE)


def status(config: LabConfig) -> dict[str, Any]:
    """The lab engine's pid and socket, and how to attach a console or a command to it."""
    plan = Plan.from_config(config)
    pid = running(plan)
    sock = directory(plan) / "control.sock"
    return {
        "running": pid is not None and answers(sock),
        "pid": pid,
        "socket": str(sock),
        "attach": f"iotsec console (it finds the lab engine), or iotsec --socket {sock} status",
    }
