"""The control protocol: one JSON object per line, both ways.

Request ``{"id": 7, "cmd": "alerts.ack", "args": {...}}``; response ``{"id": 7, "ok": true,
"result": ...}`` or ``{"id": 7, "ok": false, "error": "...", "code": "forbidden"}``. After
``subscribe`` the server also sends events ``{"event": "alerts", "data": [...]}``, which carry
``"dropped": N`` when N earlier events were dropped because the client read too slowly.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE = 1 << 20
PROTOCOL_VERSION = 1


class ControlError(Exception):
    """A request the engine refused or could not carry out; ``code`` says which kind."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"request is not valid JSON: {exc}", "bad_request") from None
    if not isinstance(message, dict):
        raise ControlError("a message must be a JSON object", "bad_request")
    return message
