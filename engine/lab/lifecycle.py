"""`iotsec lab up | down | status`: the network, the devices on it and, when asked, an engine
watching it, together."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from engine.config import LabConfig
from engine.lab import devices, packages, processes, topology
from engine.lab import engine as lab_engine
from engine.lab.topology import LabError, Plan

# The Python packages of the `lab` extra that the devices run (CoAP and Modbus servers).
EXTRA = {"aiocoap": "aiocoap", "pymodbus": "pymodbus"}


def check_prerequisites() -> None:
    """Before anything is touched: root, the `lab` extra and the Debian packages, all that is
    missing said in one message (as root with apt-get, missing Debian packages are installed
    instead)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("root: it creates network namespaces, links and daemons (run it with"
                        " sudo)")  # fmt: skip
    extra = [name for module, name in EXTRA.items() if importlib.util.find_spec(module) is None]
    if extra:
        problems.append(f"the lab extra ({', '.join(extra)}): pip install 'iotsec[lab]', or"
                        " make lab")  # fmt: skip
    debian = packages.missing()
    if debian and (problems or not packages.can_install()):
        problems.append(f"the Debian packages {' '.join(debian)}: apt-get install"
                        f" {' '.join(debian)}, or make deps")  # fmt: skip
    if problems:
        raise LabError("iotsec lab up needs " + "; ".join(problems))


def up(config: LabConfig, *, engine: bool = False) -> Plan:
    """Bring the whole lab up, with its engine when ``engine``; what already runs completely
    is left as it is."""
    plan = topology.Plan.from_config(config)
    complete = topology.status(config)["up"] and all(devices.listening(h) for h in plan.devices)
    if not complete:
        check_prerequisites()
        packages.ensure_installed()
        down(config)  # whatever is there is incomplete (an earlier crash): start clean
        topology.up(config)
        try:
            devices.start_all(plan)
        except Exception:
            down(config)
            raise
    if engine:
        lab_engine.start(plan)
    return plan


def down(config: LabConfig) -> list[str]:
    """End the lab's engine and processes, remove its namespaces, links, mounts and files."""
    plan = topology.Plan.from_config(config)
    topology.require_root()
    lab_engine.stop(plan)  # first, and patiently: it commits what it holds
    processes.end(devices.recorded_processes(plan))
    removed = topology.down(config)
    devices.stop_all(plan)
    return removed


def status(config: LabConfig) -> dict[str, Any]:
    plan = topology.Plan.from_config(config)
    data = topology.status(config)
    present = {h["role"]: h["present"] for h in data["hosts"]}
    for host in data["hosts"]:
        role = host["role"]
        services = devices.SERVICES.get(role, [])
        host["services"] = [f"{p}/{n}" for p, n in services]
        device = next((d for d in plan.devices if d.role == role), None)
        host["running"] = bool(device and present[role] and devices.listening(device))
    serial = devices.serial_path(plan)
    data["serial"] = str(serial) if serial.exists() else None
    data["engine"] = lab_engine.status(config)
    return data
