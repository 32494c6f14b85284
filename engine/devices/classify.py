"""A guess of what kind of device this is, and why: from what it serves, what it announces over
mDNS and SSDP, how its DHCP client names itself, its MAC's vendor and its host name. The
strongest clue wins; the reason names it, so an operator can judge the guess.
"""

from __future__ import annotations

import re
from typing import Any

# Strengths: what a device serves or announces about itself beats who made its network chip,
# which beats what someone named it.
SERVICE, ANNOUNCED, DHCP, VENDOR, NAME = 50, 40, 30, 20, 10

# (service name from the scanner, kind)
SERVICES = (
    ("rtsp", "camera"),
    ("modbus", "industrial controller"),
    ("mqtt", "MQTT broker"),
    ("mqtts", "MQTT broker"),
    ("coap", "constrained IoT device"),
    ("ipp", "printer"),
    ("jetdirect", "printer"),
)
PORTS = (
    (554, "camera"),
    (8554, "camera"),
    (502, "industrial controller"),
    (102, "industrial controller"),
    (47808, "building controller"),
    (9100, "printer"),
    (631, "printer"),
)

# mDNS service types (the "_x._tcp" part of an instance name).
MDNS = {
    "_ipp": "printer",
    "_ipps": "printer",
    "_printer": "printer",
    "_pdl-datastream": "printer",
    "_scanner": "printer",
    "_googlecast": "media player",
    "_airplay": "media player",
    "_raop": "speaker",
    "_spotify-connect": "speaker",
    "_sonos": "speaker",
    "_hap": "smart-home accessory",
    "_matter": "smart-home accessory",
    "_matterc": "smart-home accessory",
    "_hue": "smart-home bridge",
    "_axis-video": "camera",
    "_rtsp": "camera",
    "_onvif": "camera",
    "_workstation": "computer",
    "_smb": "computer",
    "_rdlink": "computer",
    "_companion-link": "phone or tablet",
    "_apple-mobdev2": "phone or tablet",
    "_mqtt": "MQTT broker",
    "_coap": "constrained IoT device",
    "_esphomelib": "IoT module",
}

# UPnP device types (urn:schemas-upnp-org:device:TYPE:N) and SSDP SERVER products.
UPNP = {
    "InternetGatewayDevice": "router",
    "WANDevice": "router",
    "WANConnectionDevice": "router",
    "MediaRenderer": "media player",
    "MediaServer": "media server",
    "Printer": "printer",
    "DigitalSecurityCamera": "camera",
    "Basic": "",
}
SERVERS = (
    ("miniupnpd", "router"),
    ("ipcamera", "camera"),
    ("hikvision", "camera"),
    ("dlna", "media server"),
)

# The DHCP client's software: specific for phones and ESP chips, only a broad hint (weaker
# than the MAC's vendor) for the clients every embedded Linux ships.
DHCP_CLASSES = (
    ("udhcp", "embedded Linux device", NAME + 5),
    ("android-dhcp", "phone or tablet", DHCP),
    ("msft", "computer", DHCP),
    ("dhcpcd", "Linux computer", NAME + 5),
    ("espressif", "IoT module", DHCP),
)

VENDORS = (
    ("hikvision", "camera"),
    ("dahua", "camera"),
    ("axis communications", "camera"),
    ("reolink", "camera"),
    ("amcrest", "camera"),
    ("hanwha", "camera"),
    ("uniview", "camera"),
    ("xiongmai", "camera"),
    ("wyze", "camera"),
    ("espressif", "IoT module"),
    ("tuya", "IoT module"),
    ("shelly", "IoT module"),
    ("allterco", "IoT module"),
    ("raspberry pi", "single-board computer"),
    ("sonos", "speaker"),
    ("signify", "smart lighting"),
    ("philips lighting", "smart lighting"),
    ("siemens", "industrial controller"),
    ("schneider", "industrial controller"),
    ("rockwell", "industrial controller"),
    ("wago", "industrial controller"),
    ("ubiquiti", "network equipment"),
    ("mikrotik", "network equipment"),
    ("tp-link", "network equipment"),
    ("netgear", "network equipment"),
    ("avm", "router"),
)

NAMES = (
    (re.compile(r"ip-?cam|camera|\bcam\b|nvr|dvr", re.I), "camera"),
    (re.compile(r"printer|\bprn", re.I), "printer"),
    (re.compile(r"^esp[-_]|^esp32|^esp8266|tasmota|shelly|tuya", re.I), "IoT module"),
    (re.compile(r"raspberrypi", re.I), "single-board computer"),
    (re.compile(r"^android|iphone|ipad|galaxy", re.I), "phone or tablet"),
    (re.compile(r"router|gateway|openwrt|fritz", re.I), "router"),
    (re.compile(r"plc|hmi|modbus", re.I), "industrial controller"),
)


def mdns_type(instance: str) -> str:
    """'Office._ipp._tcp.local' -> '_ipp'; '' when the name has no service type."""
    for label in instance.split("."):
        if label.startswith("_") and label not in ("_tcp", "_udp", "_sub"):
            return label
    return ""


def guess(
    services: list[dict[str, Any]], details: dict[str, Any], vendor: str, hostname: str
) -> tuple[str, str]:
    """(kind, reason) from everything known; ("", "") when nothing tells."""
    clues: list[tuple[int, str, str]] = []
    for service in services:
        name, port, proto = service.get("service", ""), service.get("port"), service.get("proto")
        for known, kind in SERVICES:
            if name == known:
                clues.append((SERVICE, kind, f"{name} on {port}/{proto}"))
        for known_port, kind in PORTS:
            if port == known_port and not name:
                clues.append((SERVICE - 5, kind, f"port {port}/{proto} open"))
        for description in (service.get("details") or {}).get("descriptions", []):
            if isinstance(description, dict) and description.get("deviceType"):
                clues += _upnp(str(description["deviceType"]), "UPnP description says")
        server = str((service.get("details") or {}).get("server", "")).lower()
        clues += [
            (ANNOUNCED - 5, kind, f"SSDP server {server!r}")
            for product, kind in SERVERS
            if product in server
        ]
    for instance in details.get("mdns", {}).get("services", []):
        kind = MDNS.get(mdns_type(instance), "")
        if kind:
            clues.append((ANNOUNCED, kind, f"mDNS announces {mdns_type(instance)}"))
    ssdp = details.get("ssdp", {})
    for key in ("nt", "st"):
        if "urn:schemas-upnp-org:device:" in ssdp.get(key, ""):
            clues += _upnp(ssdp[key], "SSDP announces")
    server = ssdp.get("server", "").lower()
    clues += [
        (ANNOUNCED - 5, kind, f"SSDP server {ssdp.get('server')!r}")
        for product, kind in SERVERS
        if product in server
    ]
    vendor_class = details.get("dhcp", {}).get("vendor_class", "")
    clues += [
        (strength, kind, f"DHCP vendor class {vendor_class!r}")
        for prefix, kind, strength in DHCP_CLASSES
        if vendor_class.lower().startswith(prefix)
    ]
    clues += [
        (VENDOR, kind, f"MAC vendor {vendor}") for name, kind in VENDORS if name in vendor.lower()
    ]
    clues += [
        (NAME, kind, f"host name {hostname!r}")
        for pattern, kind in NAMES
        if hostname and pattern.search(hostname)
    ]
    if not clues:
        return "", ""
    _strength, kind, reason = max(clues, key=lambda clue: clue[0])
    return kind, reason


def _upnp(urn: str, said: str) -> list[tuple[int, str, str]]:
    match = re.search(r"urn:schemas-upnp-org:device:([A-Za-z]+):", urn)
    kind = UPNP.get(match.group(1), "") if match else ""
    return [(ANNOUNCED + 5, kind, f"{said} {match.group(1)}")] if match and kind else []
