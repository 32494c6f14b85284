"""Addresses that are never banned: the loopback ranges, the box's own addresses, the config's
``ignoreip``, and the SSH client of every operator logged into the box — those the control
API's clients say they come from, and those in utmp (``who``) — so that nobody locks
themselves or a colleague out.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from engine import thisbox
from engine.respond.targets import Network, parse_target, shown

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
UTMP = Path("/var/run/utmp")
# glibc's struct utmp on Linux: type, pid, line, id, user, host, exit, session, time, address.
_UTMP = struct.Struct("<hxxi32s4s32s256shhiii16s20x")
USER_PROCESS = 7


@dataclass(frozen=True)
class Allowed:
    network: Network
    why: str  # "loopback", "this box (eth0)", "ignoreip", "SSH client of alice"


@dataclass(frozen=True)
class Login:
    """A login session in utmp that came from an address (root's login programs write it)."""

    user: str
    tty: str
    address: str


def logins(utmp: Path = UTMP) -> list[Login]:
    """The login sessions in utmp (what ``who`` lists) that name a remote address."""
    try:
        data = utmp.read_bytes()
    except OSError:
        return []
    found = []
    for offset in range(0, len(data) - _UTMP.size + 1, _UTMP.size):
        kind, _pid, line, _id, user, host, *_rest, raw = _UTMP.unpack_from(data, offset)
        if kind != USER_PROCESS:
            continue
        address = _utmp_address(raw, host)
        if address is not None:
            found.append(Login(user.split(b"\0")[0].decode(errors="replace"),
                               line.split(b"\0")[0].decode(errors="replace"), address))  # fmt: skip
    return found


def ssh_clients(utmp: Path = UTMP) -> list[Allowed]:
    """The remote addresses of the login sessions in utmp."""
    return [Allowed(ipaddress.ip_network(login.address),
                    f"SSH client of {login.user} (logged in on {login.tty})")
            for login in logins(utmp)]  # fmt: skip


def _utmp_address(raw: bytes, host: bytes) -> str | None:
    if raw[4:] == bytes(12) and raw[:4] != bytes(4):
        return str(ipaddress.IPv4Address(raw[:4]))
    if raw != bytes(16):
        return str(ipaddress.IPv6Address(raw))
    # Some login programs leave the address out and write it as the host, a link-local one
    # with the interface it came in on (fe80::1%eth0): a ban never has one, so it is left out.
    text = host.split(b"\0")[0].decode(errors="replace").partition("%")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def own_addresses() -> list[Allowed]:
    """The addresses of this box's interfaces (in its network namespace)."""
    return [Allowed(ipaddress.ip_network(address.ip), f"this box ({interface.name})")
            for interface in thisbox.interfaces() for address in interface.addresses]  # fmt: skip


class AllowList:
    """What may never be banned; ``operators`` gives the SSH clients of the operators connected
    to the control API."""

    def __init__(self, ignoreip: Iterable[str], operators: Callable[[], Iterable[Allowed]],
                 utmp: Path = UTMP) -> None:  # fmt: skip
        self.fixed = [Allowed(n, "loopback") for n in LOOPBACK]
        for text in ignoreip:
            self.fixed.append(Allowed(parse_target(text, strict=False), "ignoreip"))
        self.operators = operators
        self.utmp = utmp

    def entries(self) -> list[Allowed]:
        return [*self.fixed, *own_addresses(), *ssh_clients(self.utmp), *self.operators()]

    def refusal(self, network: Network, entries: list[Allowed] | None = None) -> str | None:
        """Why ``network`` must not be banned, or None: it is, holds or overlaps an allowed
        address or network (of ``entries``, else of :meth:`entries` now)."""
        for entry in self.entries() if entries is None else entries:
            allowed = entry.network
            if allowed.version == network.version and allowed.overlaps(network):
                if allowed == network:
                    relation = "is"
                elif allowed.supernet_of(network):
                    relation = "is in"
                elif network.supernet_of(allowed):
                    relation = "contains"
                else:
                    relation = "overlaps"
                return f"{shown(network)} {relation} {shown(allowed)}: {entry.why}, never banned"
        return None
