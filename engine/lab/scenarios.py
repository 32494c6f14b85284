"""Traffic scenarios for the lab: `iotsec lab run SCENARIO`. Each runs its clients in the lab's
namespaces, is bounded in count and time, stops by itself, and says what it sent.

Clients run as ``python -m engine.lab.scenarios CLIENT ...`` inside a namespace (or as the
Debian tools nmap and dbclient), so nothing here ever leaves the lab's addresses.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from engine.lab.topology import DEVICES, LabError, Plan

# Guesses an IoT botnet tries first (public knowledge: Mirai's scanner list, abridged).
MIRAI_CREDENTIALS = [
    ("root", "xc3511"), ("root", "vizxv"), ("admin", "admin"), ("root", "admin"),
    ("root", "888888"), ("root", "default"), ("support", "support"), ("root", "12345"),
]  # fmt: skip
BRUTEFORCE_PASSWORDS = ["123456", "password", "admin", "toor"]
SCENARIO_SECONDS = 60
DEVICE_HOSTS = DEVICES.values()


def _client(plan: Plan, netns: str, *args: str, timeout: float = SCENARIO_SECONDS) -> dict:
    """Run one of this module's clients in ``netns``; what it printed as JSON."""
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "engine.lab.scenarios", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise LabError(f"scenario client {args[0]} failed: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def _device(plan: Plan, role: str) -> str:
    return next(d.address for d in plan.devices if d.role == role)


def normal(plan: Plan) -> dict[str, Any]:
    """Ten seconds of a quiet network: DNS lookups, mDNS and SSDP announcements (telemetry
    runs all the time)."""
    return _client(plan, plan.devices[0].netns, "announce", plan.gateway.address, "10")


def bruteforce(plan: Plan) -> dict[str, Any]:
    """Password guessing from outside: Telnet logins on the camera, SSH logins on the SSH
    device (each attempt leaves a line in the device's log)."""
    telnet = _client(plan, plan.attacker.netns, "telnet-guess", _device(plan, "camera"), "23",
                     *[f"root:{p}" for p in BRUTEFORCE_PASSWORDS])  # fmt: skip
    ssh = _ssh_guesses(plan, _device(plan, "ssh"), ["admin", "pi"], BRUTEFORCE_PASSWORDS[:2])
    return {"telnet_attempts": telnet["attempts"], "ssh_attempts": ssh}


def _ssh_guesses(plan: Plan, address: str, users: list[str], passwords: list[str]) -> int:
    dbclient = shutil.which("dbclient")
    if dbclient is None:
        raise LabError("dbclient is missing: install the Debian package dropbear-bin")
    attempts = 0
    for user in users:
        for password in passwords:
            subprocess.run(
                ["ip", "netns", "exec", plan.attacker.netns, dbclient, "-y", "-y", "-T",
                 "-o", "PasswordAuthentication=yes", f"{user}@{address}", "true"],
                env={**os.environ, "DROPBEAR_PASSWORD": password},
                capture_output=True, timeout=15, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            attempts += 1
    return attempts


def scan(plan: Plan) -> dict[str, Any]:
    """A TCP connect and UDP port scan of the LAN from outside, with nmap -n."""
    nmap = shutil.which("nmap")
    if nmap is None:
        raise LabError("nmap is missing: install the Debian package nmap")
    started = time.monotonic()
    # The part of the LAN where the lab's hosts live, so the scan ends in seconds.
    targets = f"{plan.lan_address(1)}-{max(DEVICE_HOSTS) + 5}"
    done = subprocess.run(
        ["ip", "netns", "exec", plan.attacker.netns, nmap, "-n", "-Pn", "-sT", "-sU",
         "-p", "T:21-23,80,443,502,1883,2323,8080,U:161,1900,5683", "--max-retries", "1",
         "--max-rtt-timeout", "300ms", "--host-timeout", "20s", "-oX", "-", targets],
        capture_output=True, text=True, timeout=SCENARIO_SECONDS,
    )  # fmt: skip
    if done.returncode != 0:
        raise LabError(f"nmap failed: {done.stderr.strip()}")
    open_ports = done.stdout.count('state="open"')
    return {"open_ports": open_ports, "seconds": round(time.monotonic() - started, 1)}


def mirai(plan: Plan) -> dict[str, Any]:
    """Busybox-style probes on 23 and 2323 of every device with Mirai's default credentials."""
    attempts = 0
    for device in plan.devices:
        for port in ("23", "2323"):
            result = _client(plan, plan.attacker.netns, "telnet-guess", device.address, port,
                             *[f"{u}:{p}" for u, p in MIRAI_CREDENTIALS[:3]],
                             "--after", "enable;system;shell;sh;/bin/busybox MIRAI")  # fmt: skip
            attempts += result["attempts"]
    return {"attempts": attempts}


def modbus_write(plan: Plan) -> dict[str, Any]:
    """A register write on the controller from a host that never talks to it: outside."""
    return _client(plan, plan.attacker.netns, "modbus-write", _device(plan, "controller"))


SCENARIOS: dict[str, Callable[[Plan], dict[str, Any]]] = {
    "normal": normal,
    "bruteforce": bruteforce,
    "scan": scan,
    "mirai": mirai,
    "modbus-write": modbus_write,
}


def run(plan: Plan, name: str) -> dict[str, Any]:
    if name not in SCENARIOS:
        raise LabError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    started = time.monotonic()
    try:
        result = SCENARIOS[name](plan)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"scenario {name}: {exc.cmd[3]} ran past {exc.timeout:.0f} s") from None
    return {"scenario": name, **result, "elapsed": round(time.monotonic() - started, 1)}


# -- clients, run inside a namespace ---------------------------------------------------------


def telnet_read(sock: socket.socket, wait: float, until: tuple[bytes, ...] = ()) -> bytes:
    """What arrives within ``wait`` seconds (or until one of ``until`` shows), refusing every
    telnet option the server offers."""
    sock.settimeout(wait)
    out = bytearray()
    deadline = time.monotonic() + wait
    try:
        while not any(u in out for u in until) and (data := sock.recv(4096)):
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            i = 0
            while i < len(data):
                if data[i] == 255 and i + 2 < len(data) and data[i + 1] in (251, 252, 253, 254):
                    sock.sendall(
                        bytes([255, 252 if data[i + 1] in (253, 254) else 254, data[i + 2]])
                    )
                    i += 3
                    continue
                out.append(data[i])
                i += 1
    except (TimeoutError, ConnectionError):
        pass
    return bytes(out)


def telnet_guess(address: str, port: int, pairs: list[str], after: str) -> dict[str, Any]:
    """One connection per user:password pair; after a login, the commands in ``after``."""
    attempts = successes = 0
    for pair in pairs:
        user, password = pair.split(":", 1)
        try:
            with socket.create_connection((address, port), timeout=3) as sock:
                attempts += 1
                telnet_read(sock, 0.5)
                sock.sendall(user.encode() + b"\r\n")
                telnet_read(sock, 0.5)
                sock.sendall(password.encode() + b"\r\n")
                # Wait for the verdict: BusyBox login logs a failure only after its delay.
                reply = telnet_read(sock, 5.0, until=(b"incorrect", b"# ", b"$ "))
                if b"#" in reply or b"$" in reply:
                    successes += 1
                    for command in filter(None, after.split(";")):
                        sock.sendall(command.encode() + b"\r\n")
                        telnet_read(sock, 0.2)
        except OSError:
            attempts += 1  # refused or closed: the probe still went out
    return {"attempts": attempts, "successes": successes}


def announce(gateway: str, seconds: float) -> dict[str, Any]:
    """DNS queries to the gateway, mDNS and SSDP announcements, once a second."""
    sent = 0
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    multicast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    multicast.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    multicast.setsockopt(
        socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(_own_address())
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        dns.sendto(_dns_query(sent, "time.iot-vendor.example"), (gateway, 53))
        multicast.sendto(_dns_query(0, "_http._tcp.local", mdns=True), ("224.0.0.251", 5353))
        multicast.sendto(_SSDP_NOTIFY, ("239.255.255.250", 1900))
        sent += 3
        time.sleep(1)
    return {"packets": sent}


_SSDP_NOTIFY = (
    b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n"
    b"LOCATION: http://camera.lab/rootDesc.xml\r\nNT: upnp:rootdevice\r\nNTS: ssdp:alive\r\n"
    b"SERVER: Linux/3.10 UPnP/1.0 MiniUPnPd/2.1\r\nUSN: uuid:ipcam-0001::upnp:rootdevice\r\n\r\n"
)


def _dns_query(query_id: int, name: str, *, mdns: bool = False) -> bytes:
    header = (query_id & 0xFFFF).to_bytes(2, "big") + (b"\x00\x00" if mdns else b"\x01\x00")
    header += b"\x00\x01\x00\x00\x00\x00\x00\x00"
    labels = b"".join(len(p).to_bytes(1, "big") + p.encode() for p in name.split(".")) + b"\x00"
    return header + labels + (b"\x00\x0c" if mdns else b"\x00\x01") + b"\x00\x01"


def _own_address() -> str:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", "eth0"],
                         capture_output=True, text=True).stdout  # fmt: skip
    return json.loads(out)[0]["addr_info"][0]["local"]


def modbus_write_client(address: str) -> dict[str, Any]:
    from pymodbus.client import ModbusTcpClient

    client = ModbusTcpClient(address, port=502, timeout=3)
    if not client.connect():
        raise SystemExit(f"no Modbus connection to {address}")
    reply = client.write_register(1, 999)
    client.close()
    return {"wrote": "register 1 = 999", "error": reply.isError()}


def _main(argv: list[str]) -> None:
    kind, rest = argv[0], argv[1:]
    if kind == "telnet-guess":
        after = ""
        if "--after" in rest:
            index = rest.index("--after")
            after, rest = rest[index + 1], rest[:index] + rest[index + 2 :]
        result = telnet_guess(rest[0], int(rest[1]), rest[2:], after)
    elif kind == "announce":
        result = announce(rest[0], float(rest[1]))
    elif kind == "modbus-write":
        result = modbus_write_client(rest[0])
    else:
        raise SystemExit(f"unknown client {kind}")
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
