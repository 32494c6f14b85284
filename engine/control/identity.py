"""Which SSH client a control connection really comes from, so that the allow-list protects the
operator's own address without trusting what the client says.

A client may claim an address in ``hello`` (its ``SSH_CLIENT``). The claim counts only when it is
one address (never a network) and something the client cannot forge confirms it:

- a login session of the peer's user in utmp (written by root's login programs) from that
  address, or
- the peer process's ``SSH_CONNECTION`` (read from ``/proc/PID/environ`` where the engine may)
  names that address, and that exact TCP connection (client address and port to server address
  and port) is established on this box now, which only a real SSH connection can make so.

Anything else is ignored, and the reply says why.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from engine.respond.allowlist import UTMP, logins

PROC = Path("/proc")
_ESTABLISHED = "01"


@dataclass(frozen=True)
class SshClient:
    """The outcome of a claim: the verified address (or None) and how it was decided."""

    address: str | None
    note: str
    claimed: str = ""  # the one address claimed, verified or not ("" when it was none)


def verify(claim: str, pid: int, user: str, *, utmp: Path = UTMP, proc: Path = PROC) -> SshClient:
    """Check the ``claim`` (an ``SSH_CLIENT`` or ``SSH_CONNECTION`` value, or an address) of
    the process ``pid`` run by ``user``."""
    first = claim.split()[0] if claim.split() else ""
    try:
        if "%" in first or "/" in first:
            raise ValueError
        address = str(ipaddress.ip_address(first))
    except ValueError:
        return SshClient(None, f"ignored: {first[:64]!r} is not one IPv4 or IPv6 address")
    for login in logins(utmp):
        if login.user == user and _same(login.address, address):
            return SshClient(address, f"verified: {user} is logged in on {login.tty} from it",
                             address)  # fmt: skip
    connection = _environ_connection(proc, pid)
    if connection is None:
        why = (f"no login of {user} from {address} in utmp, and the client's SSH_CONNECTION"
               " could not be read")  # fmt: skip
    elif not _same(connection[0], address):
        why = f"the client's SSH_CONNECTION names {connection[0]}, not {address}"
    elif not _established(proc, connection):
        why = f"no SSH connection from {address} is established on this box"
    else:
        return SshClient(address, "verified: the client's SSH connection is established",
                         address)  # fmt: skip
    return SshClient(None, f"ignored: {why} (it still keeps your own bans off it)", address)


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _environ_connection(proc: Path, pid: int) -> tuple[str, int, str, int] | None:
    """``SSH_CONNECTION`` of the process (client address, port, server address, port)."""
    try:
        environ = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(b"SSH_CONNECTION="):
            parts = entry.split(b"=", 1)[1].decode(errors="replace").split()
            if len(parts) == 4 and parts[1].isdigit() and parts[3].isdigit():
                return parts[0], int(parts[1]), parts[2], int(parts[3])
    return None


def _established(proc: Path, connection: tuple[str, int, str, int]) -> bool:
    """Whether the kernel has this TCP connection established, seen from the server's side."""
    client, client_port, server, server_port = connection
    try:
        wanted_remote = ipaddress.ip_address(client), client_port
        wanted_local = ipaddress.ip_address(server), server_port
    except ValueError:
        return False
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != _ESTABLISHED:
                continue
            local, remote = _endpoint(fields[1]), _endpoint(fields[2])
            if _matches(local, wanted_local) and _matches(remote, wanted_remote):
                return True
    return False


def _endpoint(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """``0100007F:0016`` (the kernel's byte order, per 32-bit word) as an address and port."""
    raw, port = text.split(":")
    words = bytes.fromhex(raw)
    host = b"".join(words[i : i + 4][::-1] for i in range(0, len(words), 4))
    return ipaddress.ip_address(host), int(port, 16)


def _matches(seen: tuple, wanted: tuple) -> bool:
    address, port = seen
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address, port) == wanted
