"""The arguments each control command takes: their types and bounds, checked for every request
before its handler runs, so a handler only ever sees the types it declared.

A request with an argument its command does not take, or a value of the wrong type or out of
bounds, is refused as ``bad_request`` naming the argument. JSON ``null`` means "not given".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.control.protocol import ControlError

# Longest text a name or id may be; prose arguments say their own limit.
NAME_LIMIT = 256
INT_MAX = (1 << 63) - 1


def _refuse(key: str, what: str) -> ControlError:
    return ControlError(f"{key}: {what}", "bad_request")


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)  # fmt: skip


@dataclass(frozen=True)
class Int:
    """A whole number from ``lo`` to ``hi`` (a string of digits is taken too, as the CLI's
    arguments arrive)."""

    lo: int = 0
    hi: int = INT_MAX

    def check(self, key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _refuse(key, f"must be an integer, not {_kind(value)}")
        if isinstance(value, str):
            text = value.strip()
            if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= 20):
                raise _refuse(key, f"must be an integer, got {value[:40]!r}")
            value = int(text)
        if not self.lo <= value <= self.hi:
            raise _refuse(key, f"must be from {self.lo} to {self.hi}, got {value}")


@dataclass(frozen=True)
class Number:
    """A finite number from ``lo`` to ``hi``."""

    lo: float = 0.0
    hi: float = 1e12

    def check(self, key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _refuse(key, f"must be a number, not {_kind(value)}")
        if not (math.isfinite(value) and self.lo <= value <= self.hi):
            raise _refuse(key, f"must be from {self.lo:g} to {self.hi:g}, got {value}")


@dataclass(frozen=True)
class Text:
    """A string of at most ``limit`` characters."""

    limit: int = NAME_LIMIT

    def check(self, key: str, value: Any) -> None:
        if not isinstance(value, str):
            raise _refuse(key, f"must be a string, not {_kind(value)}")
        if len(value) > self.limit:
            raise _refuse(key, f"is longer than {self.limit} characters")


@dataclass(frozen=True)
class Flag:
    """``true`` or ``false``: never a string such as ``"false"``, which would read as true."""

    def check(self, key: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise _refuse(key, f"must be true or false, not {_kind(value)}")


@dataclass(frozen=True)
class Duration:
    """A duration as text (``90s``, ``1h``) or a number of seconds."""

    def check(self, key: str, value: Any) -> None:
        if isinstance(value, str):
            Text(64).check(key, value)
        else:
            Number(0, 10 * 365 * 86400).check(key, value)


@dataclass(frozen=True)
class Texts:
    """A list of at most ``count`` strings of at most ``limit`` characters each (``one``: a
    single string is taken as a list of one)."""

    count: int = 1000
    limit: int = NAME_LIMIT
    one: bool = False

    def check(self, key: str, value: Any) -> None:
        if self.one and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise _refuse(key, f"must be a list of strings, not {_kind(value)}")
        if len(value) > self.count:
            raise _refuse(key, f"holds more than {self.count} items")
        for item in value:
            Text(self.limit).check(f"{key}[]", item)


@dataclass(frozen=True)
class Object:
    """A JSON object of at most ``count`` keys; its handler checks what the keys mean."""

    count: int = 64

    def check(self, key: str, value: Any) -> None:
        if not isinstance(value, dict):
            raise _refuse(key, f"must be an object, not {_kind(value)}")
        if len(value) > self.count:
            raise _refuse(key, f"has more than {self.count} keys")


Spec = Int | Number | Text | Flag | Duration | Texts | Object
Schema = Mapping[str, Spec]


def validate(command: str, schema: Schema, args: dict[str, Any]) -> None:
    """Refuse ``args`` unless every one is declared by ``schema`` and holds what it says."""
    for key, value in args.items():
        spec = schema.get(key)
        if spec is None:
            takes = ", ".join(sorted(schema)) or "no arguments"
            raise ControlError(
                f"{command} takes no argument {key[:40]!r} (it takes {takes})", "bad_request"
            )
        if value is not None:
            spec.check(key, value)
