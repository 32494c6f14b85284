"""What changed between two scans of the same targets (nmap's ndiff): hosts that came up or went
down, ports opened or closed, findings new or no longer found."""

from __future__ import annotations

from typing import Any


def diff_scans(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> dict[str, Any]:
    """Both are lists of ``HostResult.to_json()``; ports and findings are compared only for
    hosts in both."""
    before = {h["address"]: h for h in previous}
    after = {h["address"]: h for h in current}
    diff: dict[str, Any] = {
        "hosts_up": sorted(set(after) - set(before)),
        "hosts_down": sorted(set(before) - set(after)),
        "opened": [],
        "closed": [],
        "new_findings": [],
        "resolved_findings": [],
    }
    for address in sorted(set(before) & set(after)):
        old_ports, new_ports = _ports(before[address]), _ports(after[address])
        diff["opened"] += [
            {"address": address, **new_ports[k]}
            for k in sorted(new_ports.keys() - old_ports.keys())
        ]
        diff["closed"] += [
            {"address": address, **old_ports[k]}
            for k in sorted(old_ports.keys() - new_ports.keys())
        ]
        old, new = _findings(before[address]), _findings(after[address])
        diff["new_findings"] += [
            {"address": address, **new[k]} for k in sorted(new.keys() - old.keys(), key=str)
        ]
        diff["resolved_findings"] += [
            {"address": address, **old[k]} for k in sorted(old.keys() - new.keys(), key=str)
        ]
    diff["changed"] = any(diff[k] for k in diff)
    return diff


def _ports(host: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (p["proto"], p["port"]): {
            "port": p["port"],
            "proto": p["proto"],
            "service": p.get("service", ""),
        }
        for p in host.get("ports", [])
    }


def _findings(host: dict[str, Any]) -> dict[tuple[str, Any, str], dict[str, Any]]:
    return {
        (f["kind"], f.get("port"), f.get("proto", "")): {
            "kind": f["kind"],
            "port": f.get("port"),
            "proto": f.get("proto", ""),
            "severity": f["severity"],
            "title": f["title"],
        }
        for f in host.get("findings", [])
    }
