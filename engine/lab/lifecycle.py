"""`iotsec lab up | down | status`: the network and the devices on it, together."""

from __future__ import annotations

from typing import Any

from engine.config import LabConfig
from engine.lab import devices, packages, processes, topology
from engine.lab.topology import Plan


def up(config: LabConfig) -> Plan:
    """Bring the whole lab up; when it already runs completely, leave it as it is."""
    plan = topology.Plan.from_config(config)
    if topology.status(config)["up"] and all(devices.listening(h) for h in plan.devices):
        return plan
    topology.require_root()
    packages.ensure_installed()
    down(config)  # whatever is there is incomplete (an earlier crash): start clean
    topology.up(config)
    try:
        devices.start_all(plan)
    except Exception:
        down(config)
        raise
    return plan


def down(config: LabConfig) -> list[str]:
    """End the lab's processes, remove its namespaces, links, mounts and files."""
    plan = topology.Plan.from_config(config)
    topology.require_root()
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
    return data
