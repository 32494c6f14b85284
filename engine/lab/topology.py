"""The lab's network: namespaces, a bridge, veth pairs and addresses, made and removed with `ip`.

```
  outside ──ext0┐                 ┌── camera      (PREFIX-camera, eth0)
   (attacks)    gateway ──lan0── lan (bridge br0) ── broker, sensor, controller, tls, ssh
                (captures, enforces)
```

Every name starts with the configured prefix, so `down` finds everything by name even after a
crash. Links are created directly inside the namespaces (`ip -n NS link add ... netns OTHER`),
so nothing of the lab ever appears in the host's own namespace; no namespace gets a default
route, only routes between the lab's two ranges through the gateway, and there is no NAT.
Commands never go through a shell.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from engine.config import LabConfig
from engine.lab import processes

# Device namespaces and the last byte of their LAN address.
DEVICES: dict[str, int] = {
    "camera": 10,
    "broker": 11,
    "sensor": 12,
    "controller": 13,
    "tls": 14,
    "ssh": 15,
}
GATEWAY_HOST = 1
OUTSIDE_HOST = 2


class LabError(Exception):
    """The lab cannot be made or removed; the message says what and why."""


@dataclass(frozen=True)
class Host:
    """One namespace of the lab and its address."""

    role: str
    netns: str
    address: str


@dataclass(frozen=True)
class Plan:
    """Names and addresses of everything a lab with this config consists of."""

    prefix: str
    lan: ipaddress.IPv4Network
    outside: ipaddress.IPv4Network

    @classmethod
    def from_config(cls, config: LabConfig) -> Plan:
        try:
            lan = ipaddress.IPv4Network(config.lan)
            outside = ipaddress.IPv4Network(config.outside)
        except ValueError as exc:
            raise LabError(f"[lab] ranges must be IPv4 networks: {exc}") from None
        for name, net in (("lan", lan), ("outside", outside)):
            if not net.is_private or net.prefixlen > 29:
                raise LabError(f"[lab] {name} = {net}: expected a private range of /29 or larger")
        if lan.overlaps(outside):
            raise LabError(f"[lab] lan {lan} and outside {outside} overlap")
        if not config.prefix.isalnum() or len(config.prefix) > 8:
            raise LabError(f"[lab] prefix {config.prefix!r}: up to 8 letters and digits")
        return cls(config.prefix, lan, outside)

    def netns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def lan_address(self, host: int) -> str:
        return str(self.lan.network_address + host)

    def outside_address(self, host: int) -> str:
        return str(self.outside.network_address + host)

    @property
    def gateway(self) -> Host:
        return Host("gateway", self.netns("gw"), self.lan_address(GATEWAY_HOST))

    @property
    def attacker(self) -> Host:
        return Host("outside", self.netns("out"), self.outside_address(OUTSIDE_HOST))

    @property
    def devices(self) -> list[Host]:
        return [Host(r, self.netns(r), self.lan_address(n)) for r, n in DEVICES.items()]

    @property
    def namespaces(self) -> list[str]:
        return [self.netns("lan"), self.gateway.netns, self.attacker.netns,
                *(d.netns for d in self.devices)]  # fmt: skip


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """Run ``ip [-n NETNS] ARGS``; a failure becomes a LabError naming the command."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    except FileNotFoundError:
        raise LabError("the `ip` command is missing (Debian package iproute2)") from None
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def in_netns(netns: str, *argv: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    """Run a program inside one of the lab's namespaces."""
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=timeout
    )


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "iotsec lab needs root: it creates network namespaces, links and daemons"
            " (run it with sudo)"
        )


def existing_namespaces(prefix: str) -> list[str]:
    out = ip("-j", "netns", "list", check=False) or "[]"
    return sorted(n["name"] for n in json.loads(out) if n["name"].startswith(f"{prefix}-"))


def _host_routes_clash(plan: Plan) -> str | None:
    """A host route that covers a lab range (other than a default route), if any."""
    for route in json.loads(ip("-j", "route", "show") or "[]"):
        dst = route.get("dst", "")
        if dst == "default":
            continue
        try:
            net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        for lab_net in (plan.lan, plan.outside):
            if net.version == 4 and net.overlaps(lab_net):
                return f"the host routes {net} via {route.get('dev', '?')}, inside {lab_net}"
    return None


def up(config: LabConfig) -> Plan:
    """Create the lab's network, or finish creating it: running it twice is harmless."""
    require_root()
    plan = Plan.from_config(config)
    clash = _host_routes_clash(plan)
    if clash:
        raise LabError(f"{clash}; set [lab] lan / outside to ranges the host does not use")
    have = set(existing_namespaces(plan.prefix))
    if set(plan.namespaces) <= have and _wired(plan):
        return plan
    if have:
        down(config)  # a half-made lab (a crash mid-way): start clean
    for netns in plan.namespaces:
        ip("netns", "add", netns)
        ip("link", "set", "lo", "up", netns=netns)
    lan = plan.netns("lan")
    # The bridge and its ports are the lab's wiring, not devices: without IPv6 they send no
    # router solicitations or DAD of their own, which would show as devices nobody has.
    for key in ("all", "default"):
        in_netns(lan, "sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1")
    # No MAC learning: the bridge floods every frame to every port, like a hub or a SPAN
    # port, so the gateway sees the devices' traffic with each other too.
    ip("link", "add", "br0", "type", "bridge", "ageing_time", "0", netns=lan)
    ip("link", "set", "br0", "up", netns=lan)
    prefix_len = str(plan.lan.prefixlen)
    for host in [plan.gateway, *plan.devices]:
        inner = "lan0" if host.role == "gateway" else "eth0"
        port = f"p-{host.role}"[:15]
        ip("link", "add", port, "type", "veth", "peer", "name", inner, "netns", host.netns,
           netns=lan)  # fmt: skip
        ip("link", "set", port, "master", "br0", "up", netns=lan)
        ip("addr", "add", f"{host.address}/{prefix_len}", "dev", inner, netns=host.netns)
        ip("link", "set", inner, "up", netns=host.netns)
    gw, out = plan.gateway.netns, plan.attacker.netns
    ip("link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", out, netns=gw)
    ip("addr", "add", f"{plan.outside_address(GATEWAY_HOST)}/{plan.outside.prefixlen}",
       "dev", "ext0", netns=gw)  # fmt: skip
    ip("link", "set", "ext0", "up", netns=gw)
    ip("addr", "add", f"{plan.attacker.address}/{plan.outside.prefixlen}", "dev", "eth0",
       netns=out)  # fmt: skip
    ip("link", "set", "eth0", "up", netns=out)
    # Only the two lab ranges, through the gateway; no default route anywhere.
    for device in plan.devices:
        ip("route", "add", str(plan.outside), "via", plan.gateway.address, netns=device.netns)
    ip("route", "add", str(plan.lan), "via", plan.outside_address(GATEWAY_HOST), netns=out)
    forwarding = in_netns(gw, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    if forwarding.returncode != 0:
        raise LabError(f"cannot enable forwarding in {gw}: {forwarding.stderr.strip()}")
    return plan


def _wired(plan: Plan) -> bool:
    """Whether every host of an existing lab has its address (a complete earlier `up`)."""
    for host in [plan.gateway, plan.attacker, *plan.devices]:
        addrs = json.loads(ip("-j", "addr", "show", netns=host.netns, check=False) or "[]")
        found = {a["local"] for link in addrs for a in link.get("addr_info", [])}
        if host.address not in found:
            return False
    return True


def down(config: LabConfig) -> list[str]:
    """Remove every namespace of the lab (and so its links) after ending the processes in them.

    Finds the lab by its prefix, so it works after a crash or a half-made `up`. Returns the
    namespaces removed.
    """
    require_root()
    plan = Plan.from_config(config)
    removed = existing_namespaces(plan.prefix)
    processes.end(int(p) for ns in removed for p in ip("netns", "pids", ns, check=False).split())
    for netns in removed:
        ip("netns", "del", netns, check=False)
    return removed


def status(config: LabConfig) -> dict[str, Any]:
    """What of the lab exists now: namespaces, and each host's address if it has it."""
    plan = Plan.from_config(config)
    have = set(existing_namespaces(plan.prefix))
    hosts = []
    for host in [plan.gateway, plan.attacker, *plan.devices]:
        present = host.netns in have
        hosts.append({**asdict(host), "present": present})
    return {
        "prefix": plan.prefix,
        "lan": str(plan.lan),
        "outside": str(plan.outside),
        "up": set(plan.namespaces) <= have and _wired(plan),
        "namespaces": sorted(have),
        "hosts": hosts,
    }
