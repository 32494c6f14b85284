"""Serial ports: what is plugged in, the stable name of a device node, and why one cannot be
opened, said so that a technician can act on it (which group, which command)."""

from __future__ import annotations

import errno
import grp
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from serial.tools import list_ports

BY_ID = Path("/dev/serial/by-id")


@dataclass(frozen=True)
class PortInfo:
    device: str
    by_id: str
    description: str
    hwid: str
    manufacturer: str
    serial_number: str


def available() -> list[PortInfo]:
    """The serial ports the system lists (USB adapters, on-board UARTs). Ptys are not listed:
    a path can always be typed instead."""
    found = []
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        found.append(
            PortInfo(
                device=port.device,
                by_id=stable_path(port.device) or "",
                description=port.description if port.description != "n/a" else "",
                hwid=port.hwid if port.hwid != "n/a" else "",
                manufacturer=port.manufacturer or "",
                serial_number=port.serial_number or "",
            )
        )
    return found


def is_url(port: str) -> bool:
    """A pyserial URL (``socket://...``), told as pyserial tells it."""
    return "://" in port


def stable_path(port: str) -> str | None:
    """The ``/dev/serial/by-id`` link of a device node: a USB adapter plugged back in may come
    back as ttyUSB1, but its by-id name stays the same."""
    if is_url(port):
        return None
    if port.startswith(str(BY_ID) + "/"):
        return port
    try:
        target = os.path.realpath(port)
        links = list(BY_ID.iterdir())
    except OSError:
        return None
    for link in sorted(links):
        if os.path.realpath(link) == target:
            return str(link)
    return None


def short_name(port: str) -> str:
    """A name for the port in titles and transcript file names: ``ttyUSB0``,
    ``usb-FTDI_FT232R_A10K5XYZ``, ``socket-127.0.0.1-7000``."""
    if is_url(port):
        scheme, _, rest = port.partition("://")
        name = f"{scheme}-{rest.split('?')[0]}" if rest else scheme
    else:
        name = Path(port).name.removesuffix("-if00-port0")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "serial"


def open_problem(port: str, error: BaseException) -> str:
    """What went wrong opening ``port``, with what to do about it."""
    code = getattr(error, "errno", None)
    if code == errno.EACCES:
        return _permission_message(port)
    if code == errno.ENOENT:
        return (
            f"{port}: no such device; is the adapter plugged in? `iotsec serial list` shows"
            " the ports found (ptys are not listed: type their path)"
        )
    if code == errno.EBUSY or "exclusive" in str(error).lower():
        return f"{port}: in use by another program (see `fuser -v {port}`)"
    if code == errno.ENOTTY:
        return f"{port}: not a terminal device"
    return f"{port}: cannot open: {_reason(error)}"


def _reason(error: BaseException) -> str:
    text = str(error)
    # pyserial wraps the OS error as "could not open port X: [Errno N] reason: 'X'".
    match = re.search(r"\[Errno \d+\] ([^:]+)", text)
    return match.group(1) if match else text


def _permission_message(port: str) -> str:
    try:
        info = os.stat(port)
    except OSError:
        return f"{port}: permission denied"
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    mode = stat.filemode(info.st_mode)
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "$USER"
    member = _member_of(group, user)
    if member and info.st_gid not in os.getgroups():
        return (
            f"{port}: permission denied ({mode}, group {group}). You are in the {group} group,"
            " but this login session started before you were added: log out and back in (or"
            f" run `newgrp {group}`)"
        )
    return (
        f"{port}: permission denied ({mode}, group {group}). Add yourself to the {group}"
        f" group: `sudo usermod -aG {group} {user}`, then log out and back in"
    )


def _member_of(group: str, user: str) -> bool:
    try:
        return user in grp.getgrnam(group).gr_mem
    except KeyError:
        return False
