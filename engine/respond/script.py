"""The values a firewall script is made of (``nft -f``, ``ipset restore``): each is rendered here
from a parsed object or a constant and checked against a strict pattern before it is written,
so that nothing a client typed, or an older version stored, reaches a script as it was written
(``ipaddress`` keeps an IPv6 zone id such as ``%x }\\nflush ruleset``, and str() gives it back).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from engine.respond.firewall import Element, FirewallError, Refused
from engine.respond.targets import Network, shown

_ELEMENTS = {
    4: re.compile(r"\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?"),
    # Hex groups and colons, with an IPv4 tail where Python writes one (::ffff:192.0.2.1).
    6: re.compile(r"[0-9a-f:]{2,39}(?:\d{1,3}(?:\.\d{1,3}){3})?(?:/\d{1,3})?"),
}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_WORDS = re.compile(r"[A-Za-z0-9 _:./-]{1,64}")


class ScriptError(FirewallError):
    """A value that may not be written into a firewall script."""


def element(network: Network) -> str:
    """``network`` as a set element: made anew from its number and prefix length, so that
    nothing but the address comes along, and checked."""
    if getattr(network.network_address, "scope_id", None) is not None:
        raise ScriptError(f"{str(network)!r} has a zone id: it is never written into a firewall")
    fresh = type(network)((int(network.network_address), network.prefixlen))
    text = shown(fresh)
    if not _ELEMENTS[fresh.version].fullmatch(text):
        raise ScriptError(f"{text!r} is not an address or network a firewall script may hold")
    return text


def name(text: str) -> str:
    """A table, set or chain name: ours are constants, and they are checked all the same."""
    if not _NAME.fullmatch(text):
        raise ScriptError(f"{text!r} is not a name a firewall script may hold")
    return text


def words(text: str) -> str:
    """Plain text a script holds in quotes or as one word (a log prefix, a rate): letters,
    digits, spaces and ``_:./-``, no quote that could end it."""
    if not _WORDS.fullmatch(text):
        raise ScriptError(f"{text!r} is not text a firewall script may hold")
    return text


def time_left(element: Element, longest: float) -> float | None:
    """The seconds ``element`` has left as the firewall may hold them: None for none (a ban
    until lifted, or one longer than ``longest``, which the set then holds without a timeout
    and the engine lifts when it ends). ScriptError when it is not a number of seconds."""
    seconds = element.timeout
    if seconds is None:
        return None
    if (isinstance(seconds, bool) or not isinstance(seconds, int | float)
            or not math.isfinite(seconds) or seconds < 0):  # fmt: skip
        raise ScriptError(f"{seconds!r} is not a time left in seconds")
    return None if seconds > longest else float(seconds)


def writable(
    elements: list[Element], render: Callable[[Element], str]
) -> tuple[list[Element], list[Refused]]:
    """The elements ``render`` writes without a ScriptError, and the ones it refuses, with
    why: a bad one is left out before anything reaches the firewall."""
    good, refused = [], []
    for item in elements:
        try:
            render(item)
        except ScriptError as exc:
            refused.append(Refused(item, str(exc)))
        else:
            good.append(item)
    return good, refused
