"""This box's own network interfaces, as ``ip -j addr`` lists them in the engine's network
namespace: their names, MACs and addresses with their networks. The allow-list never bans them,
the capture knows which addresses are local to the interface a frame came in on, and the device
inventory never takes this box for a device on the network."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger("iotsec.thisbox")

Address = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str  # "" for an interface without one (loopback, tun)
    addresses: tuple[Address, ...]  # each with its prefix: .ip, .network


def interfaces() -> list[Interface]:
    """This box's interfaces; none when iproute2 is missing or fails (logged)."""
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.path.exists(p)),
                                    None)  # fmt: skip
    if ip is None:
        log.warning("ip (iproute2) is missing: this box's own addresses are not known")
        return []
    try:
        done = subprocess.run([ip, "-j", "addr", "show"], capture_output=True, text=True,
                              timeout=5, check=True)  # fmt: skip
        listed = json.loads(done.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("could not list this box's addresses: %s", exc)
        return []
    found = []
    for entry in listed:
        addresses: list[Address] = []
        for info in entry.get("addr_info", []):
            try:
                addresses.append(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}"))
            except (KeyError, ValueError):
                continue
        mac = str(entry.get("address", "")).lower()
        if entry.get("link_type") != "ether" or mac == "00:00:00:00:00:00":
            mac = ""
        found.append(Interface(str(entry.get("ifname", "?")), mac, tuple(addresses)))
    return found


def networks_by_interface(listed: list[Interface]) -> dict[str, list[Network]]:
    """The networks each interface has an address in (what is local on its segment)."""
    return {i.name: [a.network for a in i.addresses] for i in listed}
