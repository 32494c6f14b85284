"""The device inventory: devices built passively from what the capture sees (every MAC/IP pair,
neighbour discovery, DHCP names and vendor classes, mDNS and SSDP announcements) and actively from
scans (open ports, services, TLS, findings), kept in memory on the engine's loop and written
behind to SQLite.

A device is one MAC, whatever addresses it shows: an address joins the device of the MAC it is
seen from when it is that MAC's own (see ``Inventory._own``). A device known by an address alone
(scanned across a router) becomes the MAC's device when traffic or a scan shows its MAC, and is
merged, with its history, into that MAC's device when there is one already. This box's own
interfaces (their MACs and addresses) are devices marked ``this_box``, never new-device alerts.

What changes is an event on the ``devices`` topic and, as configured, an alert (Kismet's
found/lost alerts): a new device, a device gone (not seen for ``gone_after``) or back, a new open
port on a device scanned before, a finding that appeared or that a later scan no longer finds.
Times are when the engine saw something, not the packets' own times, so a replayed capture does
not make its devices gone at once.

One file, though long: it is one class whose passive, scanned and merging paths share its
indexes of devices by MAC and address, and must keep them consistent together.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.config import DevicesConfig
from engine.devices.classify import guess
from engine.devices.merge import move_history
from engine.devices.model import (
    DEVICE_COLUMNS,
    FINDING_COLUMNS,
    Device,
    DeviceFinding,
    FindingKey,
    canonical,
    device_from_row,
    finding_from_row,
)
from engine.model import AlertEvent, Severity
from engine.scan import oui
from engine.scan.scope import Network
from engine.text import printable

if TYPE_CHECKING:
    from engine.alerts.manager import AlertManager
    from engine.events import EventBus
    from engine.store.writer import Writer
    from engine.thisbox import Interface

log = logging.getLogger("iotsec.devices")

SEEN_WRITE = 60.0  # a device's last_seen alone is written at most this often
MAX_NAMES = 32  # announced names and services kept per device
CREDENTIALS = "default-credentials"
NO_MAC = "00:00:00:00:00:00"
# How a MAC/IP pair can be seen that says the address is that MAC's own, wherever it is.
VOUCHED = frozenset({"arp", "ndp", "dhcp", "link"})


def _upsert(table: str, columns: str) -> str:
    names = [c.strip() for c in columns.split(",")]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != "id")
    marks = ", ".join("?" * len(names))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}"
    )


UPSERT_DEVICE = _upsert("devices", DEVICE_COLUMNS)
UPSERT_FINDING = _upsert("findings", FINDING_COLUMNS)


@dataclass(frozen=True)
class Coverage:
    """What a scan looked at: only there can a port be found closed or a finding gone."""

    tcp: frozenset[int]
    udp: bool
    creds: bool

    def covers(self, port: int | None, proto: str) -> bool:
        if port is None:
            return True
        return port in self.tcp if proto == "tcp" else self.udp

    def covers_finding(self, finding: DeviceFinding) -> bool:
        if finding.kind == CREDENTIALS and not self.creds:
            return False
        return self.covers(finding.port, finding.proto)


class Inventory:
    def __init__(
        self,
        config: DevicesConfig,
        scope: list[Network],
        writer: Writer,
        bus: EventBus,
        alerts: AlertManager,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.local = [ipaddress.ip_network(n, strict=False) for n in config.local_networks]
        self.local += scope
        self.writer = writer
        self.bus = bus
        self.alerts = alerts
        self.clock = clock
        self.devices: dict[int, Device] = {}
        self.by_mac: dict[str, Device] = {}
        self.by_ip: dict[str, Device] = {}
        self._next_device = 1
        self._next_finding = 1
        self._dirty: set[int] = set()
        self._dirty_findings: dict[int, DeviceFinding] = {}
        self._written_seen: dict[int, float] = {}
        # Devices merged into another since the last flush: (merged, into, its findings
        # folded into the other's).
        self._merged: list[tuple[int, int, list[int]]] = []
        # Until when new devices are learned quietly (set when the first device is made).
        self._learning_until: float | None = None
        self.bad_facts = 0
        self.state = "stopped"
        self.own_macs: frozenset[str] = frozenset()
        self.own_addresses: frozenset[str] = frozenset()
        # Whether a device first seen at an address now is one our own scan looks at: its
        # answers are the scan's to tell of, not the capture's.
        self.quiet: Callable[[str], bool] | None = None
        self._answered_scan: set[int] = set()  # devices first seen answering our scan

    def know_this_box(self, interfaces: Iterable[Interface]) -> None:
        """This box's interfaces: the devices with their MACs or addresses are this box."""
        listed = list(interfaces)
        self.own_macs = frozenset(i.mac for i in listed if i.mac)
        self.own_addresses = frozenset(canonical(str(a.ip)) for i in listed for a in i.addresses)
        for device in self.devices.values():
            device.this_box = self._is_this_box(device.mac, *device.addresses)

    def _is_this_box(self, mac: str | None, *addresses: str) -> bool:
        return mac in self.own_macs or any(a in self.own_addresses for a in addresses)

    # -- loading and saving -------------------------------------------------------------------

    def load(self, conn: sqlite3.Connection) -> None:
        """The devices and their open findings as the last run left them (read connection)."""
        for row in conn.execute(f"SELECT {DEVICE_COLUMNS} FROM devices"):
            self._register(device_from_row(row))
        for row in conn.execute(f"SELECT {FINDING_COLUMNS} FROM findings WHERE state = 'open'"):
            finding = finding_from_row(row)
            device = self.devices.get(finding.device_id)
            if device is not None:
                device.findings[finding.key] = finding
        for device in self.devices.values():
            self._written_seen[device.id] = device.last_seen
            risk = device.risk
            device.rescore()
            if device.risk != risk:  # e.g. findings that a migration moved to it
                self._dirty.add(device.id)
        if self.devices:
            first = min(d.first_seen for d in self.devices.values())
            self._learning_until = first + self.config.learning
        self._next_device = max(self.devices, default=0) + 1
        last = conn.execute("SELECT max(id) FROM findings").fetchone()[0]
        self._next_finding = (last or 0) + 1
        self.state = "running"

    def flush(self) -> None:
        """Write what changed since the last flush in one transaction (kept for the next
        flush when the writer is full)."""
        if not (self._dirty or self._dirty_findings or self._merged):
            return
        devices = [self.devices[i].row() for i in sorted(self._dirty) if i in self.devices]
        findings = [f.row() for f in self._dirty_findings.values()]
        merged = self._merges()

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(UPSERT_DEVICE, devices)  # first: a merge's device may be new
            for old, into, mac, folded in merged:
                move_history(conn, old, into, mac, folded)
            conn.executemany(UPSERT_FINDING, findings)

        try:
            self.writer.call(write)
        except queue.Full:
            return
        for i in self._dirty:
            if i in self.devices:
                self._written_seen[i] = self.devices[i].last_seen
        self._dirty.clear()
        self._dirty_findings.clear()
        self._merged.clear()

    def _merges(self) -> list[tuple[int, int, str, list[int]]]:
        """The merges since the last flush, each into the device that is left of it (a device
        merged into one that was merged in turn is that one's now)."""
        into = {old: new for old, new, _ in self._merged}
        merges = []
        for old, new, folded in self._merged:
            while new in into:
                new = into[new]
            merges.append((old, new, self.devices[new].mac or "", folded))
        return merges

    def tick(self) -> None:
        """Mark the devices not seen for ``gone_after`` as gone, then write what changed."""
        now = self.clock()
        for device in self.devices.values():
            if device.state == "present" and now - device.last_seen > self.config.gone_after:
                device.state = "gone"
                self._dirty.add(device.id)
                self._event("gone", device)
                if self.config.alert_gone:
                    self._alert(
                        Severity.LOW,
                        "device-gone",
                        device,
                        f"Device gone: {_name(device)} not seen since "
                        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(device.last_seen))}",
                        {"last_seen": device.last_seen},
                    )
        self.flush()

    # -- what the capture sees ------------------------------------------------------------------

    def observe(self, facts: list[dict[str, Any]], seen: set[tuple[str, str]]) -> None:
        """Facts from the capture and the (MAC, IP) pairs it saw since the last tick."""
        for fact in facts:
            try:
                self._fact(fact)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.bad_facts += 1
                log.warning("ignored a malformed %s fact: %s", fact.get("kind", "?"), exc)
        for mac, ip in seen:
            self._host(mac, ip, "ip")

    def _fact(self, fact: dict[str, Any]) -> None:
        kind = fact["kind"]
        if kind == "host":
            self._host(fact["mac"], fact["ip"], fact.get("via", "ip"))
        elif kind == "dhcp":
            self._dhcp(fact)
        elif kind in ("mdns", "ssdp"):
            device = self._host(fact["mac"], fact["ip"], kind)
            if device is not None:
                self._announced(device, kind, fact)

    def _host(self, mac: str, ip: str, via: str) -> Device | None:
        """The device with ``mac`` seen at ``ip`` now (made when new); None when ``ip`` is not
        that MAC's own address (a host beyond a router, whose MAC is the router's; '' when the
        capture saw the MAC forward)."""
        if not mac or mac == NO_MAC:
            return None
        device = self.by_mac.get(mac)
        if not ip or not self._own(mac, ip, via, device):
            if device is not None:
                self._touch(device, via="ip")
            return None
        if device is None:
            device = self.by_ip.get(ip)
            if device is None or device.mac is not None:
                return self._create(mac=mac, ip=ip, how=via)
            device = self._give_mac(device, mac)
        self._claim(device, ip)
        self._touch(device, via)
        return device

    def _dhcp(self, fact: dict[str, Any]) -> None:
        mac = fact["mac"]
        if not mac or mac == NO_MAC:
            return
        # The client's address: the server's ACK says it; a renewing client sends from it.
        ip = fact.get("your_ip") or (fact["ip"] if fact.get("type") != "ACK" else "")
        if ip in ("", "0.0.0.0"):
            device = self.by_mac.get(mac) or self._create(mac=mac, ip="", how="dhcp")
            self._touch(device, "dhcp")
        else:
            device = self._host(mac, ip, "dhcp")
            if device is None:
                return
        dhcp = device.details.setdefault("dhcp", {})
        changed = False
        for key in ("hostname", "vendor_class"):
            value = fact.get(key)
            if value and dhcp.get(key) != value:
                dhcp[key] = value
                changed = True
        if fact.get("hostname") and device.hostname != fact["hostname"]:
            device.hostname = fact["hostname"]  # a DHCP client's own name beats mDNS's
            changed = True
        if changed:
            self._changed(device)

    def _announced(self, device: Device, kind: str, fact: dict[str, Any]) -> None:
        changed = False
        if kind == "mdns":
            mdns = device.details.setdefault("mdns", {"names": [], "services": []})
            changed = _merge_list(mdns["names"], fact.get("hosts", []))
            changed = _merge_list(mdns["services"], fact.get("services", [])) or changed
            local = [n for n in mdns["names"] if n.endswith(".local")]
            if local and not device.hostname:
                device.hostname = local[0].removesuffix(".local")
        else:
            ssdp = device.details.setdefault("ssdp", {})
            for key in ("server", "location", "usn", "nt", "st"):
                if fact.get(key) and ssdp.get(key) != fact[key]:
                    ssdp[key] = fact[key]
                    changed = True
        if changed:
            self._changed(device)

    # -- what a scan found ----------------------------------------------------------------------

    def apply_scan(
        self,
        scan_id: int,
        hosts: list[dict[str, Any]],
        coverage: Coverage,
        *,
        requested: bool = False,
    ) -> dict[str, list[dict[str, Any]]]:
        """The hosts of a finished scan (``HostResult.to_json()``) into the inventory; returns
        what changed: new devices and ports, closed ports, new and resolved findings.

        A ``requested`` scan (an operator's, not a schedule's) reports to whoever asked: the
        findings of a device's first scan (its baseline) are recorded and returned but raise
        no alerts; what changes after that does, as a scheduled scan's findings always do."""
        changes: dict[str, list[dict[str, Any]]] = {
            "new_devices": [],
            "new_ports": [],
            "closed_ports": [],
            "new_findings": [],
            "resolved_findings": [],
        }
        for host in hosts:
            device = self._scanned(host, changes)
            self._services(device, host, coverage, changes)
            baseline = requested and device.last_scan is None
            self._findings(device, scan_id, host, coverage, changes, alert=not baseline)
            device.last_scan = scan_id
            self._changed(device)
            self._event("scanned", device, scan=scan_id)
        self.flush()
        return changes

    def _scanned(self, host: dict[str, Any], changes: dict[str, list[Any]]) -> Device:
        address, mac = host["address"], host.get("mac") or None
        # Its MAC, from ARP, or else the one its IPv6 address was made from, when known.
        known = self.by_mac.get(mac or _eui64_mac(address))
        device = known or self.by_ip.get(address)
        if device is None:
            device = self._create(mac=mac, ip=address, how="scan")
            changes["new_devices"].append({"device": device.id, "address": address})
        else:
            if mac and device.mac is None:
                device = self._give_mac(device, mac)
            self._claim(device, address)
            self._touch(device, "scan")
            if device.id in self._answered_scan:  # first seen answering this scan: new to it
                self._answered_scan.discard(device.id)
                changes["new_devices"].append({"device": device.id, "address": address})
                if not device.this_box and self.clock() >= (self._learning_until or 0):
                    self._new_device_alert(device, "scan")
        if host.get("vendor") and not device.vendor:
            device.vendor = host["vendor"]
        return device

    def _services(
        self,
        device: Device,
        host: dict[str, Any],
        coverage: Coverage,
        changes: dict[str, list[Any]],
    ) -> None:
        before = {(s["port"], s["proto"]) for s in device.services}
        kept = [s for s in device.services if not coverage.covers(s["port"], s["proto"])]
        found = host.get("ports", [])
        device.services = sorted(kept + found, key=lambda s: (s["proto"], s["port"]))
        now_open = {(s["port"], s["proto"]) for s in found}
        for port, proto in sorted(now_open - before):
            if device.last_scan is None:
                continue  # its first scan: nothing was known to be closed before
            changes["new_ports"].append(
                {"device": device.id, "address": device.ip, "port": port, "proto": proto}
            )
            service = next(s for s in found if (s["port"], s["proto"]) == (port, proto))
            self._event("new-port", device, port=port, proto=proto)
            if self.config.alert_new_port:
                what = service.get("service") or "unknown service"
                self._alert(
                    Severity.MEDIUM,
                    "new-open-port",
                    device,
                    f"New open port {port}/{proto} ({what}) on {_name(device)}",
                    {"port": port, "proto": proto, "service": service},
                    detail=f"{port}/{proto}",
                )
        for port, proto in sorted(before - now_open):
            if coverage.covers(port, proto):
                changes["closed_ports"].append(
                    {"device": device.id, "address": device.ip, "port": port, "proto": proto}
                )
                self._event("closed-port", device, port=port, proto=proto)
        tls = {
            k: v
            for k, v in device.details.get("tls", {}).items()
            if not coverage.covers(int(k), "tcp")
        }
        tls.update(host.get("tls", {}))
        if tls:
            device.details["tls"] = tls
        else:
            device.details.pop("tls", None)

    def _findings(
        self,
        device: Device,
        scan_id: int,
        host: dict[str, Any],
        coverage: Coverage,
        changes: dict[str, list[Any]],
        *,
        alert: bool = True,
    ) -> None:
        now = self.clock()
        found: dict[FindingKey, dict[str, Any]] = {}
        for item in host.get("findings", []):
            found[(item["kind"], item.get("port"), item.get("proto", "tcp"))] = item
        for key, item in found.items():
            finding = self._record(device, key, item, "scan", now, scan_id)
            if finding is None:
                continue
            changes["new_findings"].append(
                {"device": device.id, "address": device.ip, **finding.to_json()}
            )
            if self.config.alert_findings and alert:
                self._alert(
                    finding.severity,
                    finding.kind,
                    device,
                    f"{finding.title} on {_name(device)}{_where(finding)}",
                    {
                        "evidence": finding.detail["evidence"],
                        "fix": finding.detail["fix"],
                        "port": finding.port,
                        "proto": finding.proto,
                        "confidence": finding.detail["confidence"],
                        "scan": scan_id,
                    },
                    source="scan",
                    detail=_port(finding),
                )
        for key, finding in list(device.findings.items()):
            if key in found or not coverage.covers_finding(finding):
                continue
            if finding.detail.get("source", "scan") != "scan":
                continue  # e.g. a serial console's finding: a network scan cannot clear it
            finding.state, finding.resolved, finding.scan_id = "resolved", now, scan_id
            del device.findings[key]
            self._dirty_findings[finding.id] = finding
            changes["resolved_findings"].append(
                {"device": device.id, "address": device.ip, **finding.to_json()}
            )
            self._event("resolved", device, finding=finding.to_json())
            if self.config.alert_findings:
                self._alert(
                    Severity.INFO,
                    "finding-resolved",
                    device,
                    f"No longer found: {finding.title} on {_name(device)}{_where(finding)}",
                    {"kind": finding.kind, "scan": scan_id},
                    detail=f"{finding.kind} {_port(finding)}",
                )
        device.rescore()

    def _record(
        self,
        device: Device,
        key: FindingKey,
        item: dict[str, Any],
        source: str,
        now: float,
        scan_id: int | None = None,
    ) -> DeviceFinding | None:
        """Refresh a finding the device has, or add it (returned, with an event, when new)."""
        detail = {
            "evidence": item.get("evidence", ""),
            "fix": item.get("fix", ""),
            "confidence": item.get("confidence", "high"),
            "source": source,
        }
        severity = Severity.parse(item["severity"])
        existing = device.findings.get(key)
        if existing is not None:
            existing.severity, existing.title, existing.detail = severity, item["title"], detail
            existing.last_seen, existing.scan_id = now, scan_id or existing.scan_id
            self._dirty_findings[existing.id] = existing
            return None
        finding = DeviceFinding(
            self._next_finding,
            device.id,
            key[0],
            severity,
            item["title"],
            detail,
            key[1],
            key[2],
            now,
            now,
            scan_id=scan_id,
        )
        self._next_finding += 1
        device.findings[key] = finding
        self._dirty_findings[finding.id] = finding
        self._event("finding", device, finding=finding.to_json())
        return finding

    def add_findings(self, key: str, items: list[dict[str, Any]], source: str) -> Device | None:
        """Findings from elsewhere than a scan (a serial console's boot log) on the device
        ``key`` names (id, MAC or address), if it is known; they raise no alert here (the
        part that found them does) and no scan resolves them."""
        device = self.find(key)
        if device is None:
            return None
        now = self.clock()
        for item in items:
            key_ = (item["kind"], item.get("port"), item.get("proto", source))
            self._record(device, key_, item, source, now)
        device.rescore()
        self._dirty.add(device.id)
        return device

    # -- queries --------------------------------------------------------------------------------

    def find(self, key: str | int) -> Device | None:
        """A device by id, MAC or any of its addresses."""
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            return self.devices.get(int(key))
        text = key.strip().lower()
        return self.by_mac.get(text) or self.by_ip.get(canonical(text))

    def listing(self, state: str = "") -> list[dict[str, Any]]:
        devices = [d for d in self.devices.values() if not state or d.state == state]
        return [d.summary() for d in sorted(devices, key=lambda d: (-d.risk, _sort_ip(d.ip)))]

    def status(self) -> dict[str, Any]:
        present = sum(1 for d in self.devices.values() if d.state == "present")
        return {
            "state": self.state,
            "devices": len(self.devices),
            "present": present,
            "gone": len(self.devices) - present,
            "open_findings": sum(len(d.findings) for d in self.devices.values()),
            "bad_facts": self.bad_facts,
        }

    # -- the parts ------------------------------------------------------------------------------

    def _register(self, device: Device) -> None:
        self.devices[device.id] = device
        if device.mac:
            self.by_mac[device.mac] = device
        for address in device.addresses:
            self.by_ip[address] = device

    def _create(self, *, mac: str | None, ip: str, how: str) -> Device:
        now = self.clock()
        device = Device(id=self._next_device, first_seen=now, last_seen=now, mac=mac)
        device.this_box = self._is_this_box(mac, ip)
        self._next_device += 1
        device.vendor = oui.vendor(mac) if mac else ""
        device.seen_by.add(how)
        self._register(device)
        if ip:
            self._claim(device, ip)
        self._changed(device)
        self._event("new", device)
        if self._learning_until is None:
            self._learning_until = now + self.config.learning
        if how != "scan" and ip and self.quiet is not None and self.quiet(ip):
            # Answering our scan: the scan's results tell of it (when it is in them).
            self._answered_scan.add(device.id)
        elif not device.this_box and now >= self._learning_until:
            self._new_device_alert(device, how)
        return device

    def _new_device_alert(self, device: Device, how: str) -> None:
        if self.config.alert_new_device:
            known = ", ".join(p for p in (device.mac or "", device.vendor) if p)
            self._alert(
                Severity.LOW,
                "new-device",
                device,
                f"New device {_name(device)}" + (f" ({known})" if known else ""),
                {"mac": device.mac, "vendor": device.vendor, "seen_by": how},
            )

    def _give_mac(self, device: Device, mac: str) -> Device:
        """A device known by address only (scanned across no ARP) now shows its MAC; when
        another device already has that MAC, the two are one: merged into that one, returned."""
        other = self.by_mac.get(mac)
        if other is not None and other is not device:
            self._merge(device, into=other)
            return other
        device.mac = mac
        device.this_box = device.this_box or mac in self.own_macs
        device.vendor = device.vendor or oui.vendor(mac)
        self.by_mac[mac] = device
        self._changed(device)
        return device

    def _merge(self, device: Device, into: Device) -> None:
        """``device`` is ``into`` (which has a MAC), known apart until now: one device, with
        the history of both (its findings and alerts are ``into``'s from now on)."""
        del self.devices[device.id]
        self._dirty.discard(device.id)
        self._written_seen.pop(device.id, None)
        mine = [a for a in device.addresses if self.by_ip.get(a) is device]
        for address in mine:  # not one another device shows too (a link-local one)
            del self.by_ip[address]
        for address in mine:
            self._claim(into, address)
        into.absorb(device)
        folded = []
        for key, finding in device.findings.items():
            same = into.findings.get(key)
            if same is None:
                finding.device_id = into.id
                into.findings[key] = finding
                self._dirty_findings[finding.id] = finding
            else:  # one finding, seen twice: the earlier sighting counts
                same.first_seen = min(same.first_seen, finding.first_seen)
                same.last_seen = max(same.last_seen, finding.last_seen)
                self._dirty_findings[same.id] = same
                self._dirty_findings.pop(finding.id, None)
                folded.append(finding.id)
        self._merged.append((device.id, into.id, folded))
        into.rescore()
        self._changed(into)

    def _claim(self, device: Device, ip: str) -> None:
        """``ip`` is ``device``'s now; a device that had it before loses it (DHCP moves)."""
        owner = self.by_ip.get(ip)
        if owner is not None and owner is not device and owner.mac is None and device.mac:
            self._merge(owner, into=device)  # it was known by this address alone: the same one
        elif owner is not None and owner is not device and not _link_local(ip):
            if ip in owner.addresses:
                owner.addresses.remove(ip)
            if owner.ip == ip:
                owner.ip = owner.addresses[-1] if owner.addresses else ""
            self._dirty.add(owner.id)
        # A link-local address stays with each MAC that shows it: one on another link (two
        # capture interfaces) or a router's virtual one (VRRP) is not a move.
        self.by_ip[ip] = device
        # A new address is written at once; the shown one moving between addresses it already
        # has (a host with two) waits for the periodic write of last_seen (_touch).
        if ip not in device.addresses:
            device.this_box = device.this_box or ip in self.own_addresses
            for dropped in device.add_address(ip):
                if self.by_ip.get(dropped) is device:
                    del self.by_ip[dropped]
            self._dirty.add(device.id)
        elif not device.ip:
            self._dirty.add(device.id)
        # IPv4 is the address people know a device by; IPv6 only while it has none.
        if device.ip != ip and (":" not in ip or not device.ip or ":" in device.ip):
            device.ip = ip

    def _touch(self, device: Device, via: str) -> None:
        now = self.clock()
        device.last_seen = now
        if device.state == "gone":
            device.state = "present"
            self._dirty.add(device.id)
            self._event("back", device)
        if via not in device.seen_by:
            device.seen_by.add(via)
            self._dirty.add(device.id)
        if now - self._written_seen.get(device.id, 0.0) >= SEEN_WRITE:
            self._dirty.add(device.id)

    def _changed(self, device: Device) -> None:
        device.kind, device.kind_reason = guess(
            device.services, device.details, device.vendor, device.hostname
        )
        self._dirty.add(device.id)

    def _own(self, mac: str, ip: str, via: str, device: Device | None) -> bool:
        """Whether ``ip``, seen from ``mac``, is that MAC's own address: one ARP, neighbour
        discovery or DHCP vouches for, one the capture saw on its interface's own network
        (``via`` link), one inside the local networks (when the capture could not tell), one
        the MAC's device has already, or an IPv6 address made from this MAC (EUI-64). Anything
        else seen from a MAC (a public address behind the gateway's) is a host beyond a
        router."""
        if via in VOUCHED or self._is_local(ip):
            return True
        if device is not None and self.by_ip.get(ip) is device:
            return True
        return _eui64_mac(ip) == mac

    def _is_local(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.local)

    def _event(self, change: str, device: Device, **extra: Any) -> None:
        if self.bus.wants("devices"):
            self.bus.publish("devices", {"change": change, "device": device.summary(), **extra})

    def _alert(
        self,
        severity: Severity,
        rule: str,
        device: Device,
        title: str,
        evidence: dict[str, Any],
        *,
        source: str = "devices",
        detail: str = "",
    ) -> None:
        # One alert per device and change (the fold key is rule, src, dst): a port or
        # finding goes in the rule so two of them on one device are two alerts.
        self.alerts.raise_alert(
            AlertEvent(
                severity=severity,
                source=source,
                rule=f"{rule} {detail}".strip(),
                title=printable(title, limit=300),
                src=device.ip,
                device=device.mac or device.ip,
                evidence={"device": device.id, **evidence},
            )
        )


def _merge_list(into: list[str], more: Iterable[str]) -> bool:
    """Add the items of ``more`` not in ``into`` yet (up to MAX_NAMES); True if any was."""
    size = len(into)
    for item in more:
        if item not in into and len(into) < MAX_NAMES:
            into.append(item)
    return len(into) != size


def _name(device: Device) -> str:
    label = device.ip or device.mac or f"device {device.id}"
    return f"{label} ({device.hostname})" if device.hostname else label


def _where(finding: DeviceFinding) -> str:
    return f" [{finding.port}/{finding.proto}]" if finding.port is not None else ""


def _port(finding: DeviceFinding) -> str:
    return f"{finding.port}/{finding.proto}" if finding.port is not None else ""


def _link_local(ip: str) -> bool:
    return ip.startswith(("fe8", "fe9", "fea", "feb"))  # fe80::/10, as the inventory writes it


def _eui64_mac(ip: str) -> str:
    """The MAC an IPv6 address's interface identifier was made from (modified EUI-64: ff:fe in
    its middle, the universal/local bit flipped), or ''."""
    try:
        interface = ipaddress.IPv6Address(ip).packed[8:]
    except ValueError:
        return ""
    if interface[3:5] != b"\xff\xfe":
        return ""
    return bytes((interface[0] ^ 2, *interface[1:3], *interface[5:])).hex(":")


def _sort_ip(ip: str) -> tuple[int, int]:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0)
    return (address.version, int(address))
