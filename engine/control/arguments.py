"""Reading a command's arguments once the schema has checked their types and bounds: defaults,
caps, and the few checks a type alone cannot say (an address)."""

from __future__ import annotations

import ipaddress
from typing import Any

from engine.control.schema import Int, Schema, Text
from engine.errors import BadArgument

# The arguments of the commands that take only an id, a limit, or an alert's id and note.
ONE_ID: Schema = {"id": Int()}
ONE_LIMIT: Schema = {"limit": Int()}
NOTE_ARGS: Schema = {"id": Int(), "note": Text(4096)}


def number(args: dict[str, Any], key: str) -> int:
    """A whole-number argument that must be given."""
    value = args.get(key)
    if value is None:
        raise BadArgument(f"{key}: an integer is needed")
    return int(value)


def limit(args: dict[str, Any], default: int = 200, most: int = 5000, key: str = "limit") -> int:
    """A count to return: ``default`` when not given, never more than ``most``."""
    value = args.get(key)
    return min(default if value is None else int(value), most)


def text(args: dict[str, Any], key: str, default: str = "") -> str:
    value = args.get(key, default)
    return default if value is None else value


def address(args: dict[str, Any], key: str) -> str:
    """One IPv4 or IPv6 address in its canonical form; empty when not given."""
    value = text(args, key).strip()
    if not value:
        return ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise BadArgument(f"{key}: {value!r} is not an IPv4 or IPv6 address") from None


def mapping(args: dict[str, Any], key: str) -> dict[str, Any]:
    """An object argument (empty when not given)."""
    value = args.get(key) or {}
    if not isinstance(value, dict):
        raise BadArgument(f"{key} must be an object")
    return value
