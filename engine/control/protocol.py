"""The control protocol: one JSON object per line, both ways.

Request ``{"id": 7, "cmd": "alerts.ack", "args": {...}}``; response ``{"id": 7, "ok": true,
"result": ...}`` or ``{"id": 7, "ok": false, "error": "...", "code": "forbidden"}``. After
``subscribe`` the server also sends events ``{"event": "alerts", "data": [...]}``, which carry
``"dropped": N`` when N earlier events were dropped because the client read too slowly.
"""

from __future__ import annotations

import json
import math
from typing import Any

from engine.errors import EngineError

MAX_LINE = 1 << 20
PROTOCOL_VERSION = 1
# Deepest nesting of lists and objects a request may have; no command needs more than a few.
MAX_DEPTH = 32


class ControlError(EngineError):
    """A request the engine refused or could not carry out, as the wire says it; ``code``
    says which kind."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self._code = code

    @property
    def code(self) -> str:
        return self._code


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def _no_constant(name: str) -> float:
    raise ControlError(f"request is not valid JSON: {name} is not a number JSON allows",
                       "bad_request")  # fmt: skip


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ControlError(f"request is not valid JSON: {text[:40]} is too large a number",
                           "bad_request")  # fmt: skip
    return value


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (without recursion)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in
                        (item.values() if isinstance(item, dict) else item))  # fmt: skip
    return deepest


def decode(line: bytes) -> dict[str, Any]:
    """One message as the engine sent it."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"message is not valid JSON: {exc}", "bad_request") from None
    if not isinstance(message, dict):
        raise ControlError("a message must be a JSON object", "bad_request")
    return message


def decode_request(line: bytes) -> dict[str, Any]:
    """One request from a client, which is not trusted: refuses what is not strict JSON (NaN,
    Infinity, numbers beyond a float, which could not be echoed back as JSON), nesting deeper
    than :data:`MAX_DEPTH`, and anything but an object."""
    try:
        message = _STRICT.decode(line.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"request is not valid JSON: {exc}", "bad_request") from None
    except RecursionError:
        raise ControlError(f"request nests deeper than {MAX_DEPTH} levels", "bad_request") from None
    if not isinstance(message, dict):
        raise ControlError("a message must be a JSON object", "bad_request")
    # Nesting needs as many brackets: most requests are spared the walk.
    if line.count(b"[") + line.count(b"{") > MAX_DEPTH and _depth(message) > MAX_DEPTH:
        raise ControlError(f"request nests deeper than {MAX_DEPTH} levels", "bad_request")
    return message


_STRICT = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)
