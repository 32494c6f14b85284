"""What a ban is of and for how long: addresses and networks parsed with ``ipaddress`` (never
passed on as typed; zone ids and control characters refused), and fail2ban's
``bantime.increment`` for repeat offenders."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from engine.text import printable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetError(ValueError):
    """An address or network that cannot be banned as written."""


def parse_target(text: str, *, strict: bool = True) -> Network:
    """``10.0.0.5``, ``2001:db8::1``, ``10.0.0.0/24`` or ``2001:db8::/48`` as a network (an
    address is a network of one); ``strict=False`` takes host bits (``10.0.0.5/24``, as
    ignoreip may be written) as their network. Refused: anything but an address or network,
    and zone ids (``fe80::1%eth0``), which ``ipaddress`` takes and no firewall can."""
    if not isinstance(text, str):
        raise TargetError(f"an address is text, not {type(text).__name__}")
    value = text.strip(" ")
    if not value:
        raise TargetError("no address given")
    if "%" in value:
        raise TargetError(f"{_quoted(text)} has a zone id (%...), which no firewall rule can"
                          " hold: give the address without it")  # fmt: skip
    if any(c.isspace() or not c.isprintable() for c in value):
        raise TargetError(f"{_quoted(text)} holds whitespace or a control character: give"
                          " the address alone")  # fmt: skip
    try:
        return ipaddress.ip_network(value, strict=strict)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise TargetError(
                f"{_quoted(text)} is not an IPv4 or IPv6 address or network"
            ) from None
        raise TargetError(
            f"{_quoted(text)} has host bits set: the network is {loose} (ban that, or one address)"
        ) from None


def _quoted(text: str) -> str:
    """``text`` as a message may show it: escaped, and cut short (a request may be long)."""
    return f"'{printable(text, limit=60)}'"


def shown(network: Network) -> str:
    """An address for a network of one, else the network: how bans are stored and shown."""
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def bantime(base: float, previous: int, factor: float, maximum: float) -> float:
    """How long a ban lasts when its target was banned ``previous`` times before: ``base``
    times ``factor`` for each earlier ban, never more than ``maximum`` (and never less than
    ``base``)."""
    if previous <= 0 or factor <= 1:
        return base
    # Bounded before multiplying, so a long record cannot overflow the float.
    length = base
    for _ in range(previous):
        length *= factor
        if length >= maximum:
            return max(maximum, base)
    return length


@dataclass(frozen=True)
class Ban:
    """One ban as stored: ``expires`` None means it lasts until lifted."""

    id: int
    target: str
    reason: str
    source: str  # "operator", "rule:SID", "jail:NAME"
    created: float
    expires: float | None
    created_by: str
    previous: int
    state: str = "active"  # active, expired, lifted, replaced, proposed, rejected

    @property
    def network(self) -> Network:
        """TargetError when the stored text is not one (a row from before zone ids were
        refused, or written by hand)."""
        return parse_target(self.target)

    def left(self, now: float) -> float | None:
        """Seconds until it expires (None: permanent)."""
        return None if self.expires is None else max(0.0, self.expires - now)

    def record(self, now: float) -> dict[str, Any]:
        left = self.left(now)
        return {
            "id": self.id, "address": self.target, "reason": self.reason, "source": self.source,
            "created": self.created, "expires": self.expires, "created_by": self.created_by,
            "previous": self.previous, "state": self.state,
            "left": None if left is None else round(left, 1),
        }  # fmt: skip


# The columns of a bans row that make a Ban, in its fields' order.
BAN_COLUMNS = "id, address, reason, source, created, expires, created_by, previous, state"
