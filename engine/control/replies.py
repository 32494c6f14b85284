"""What a reply says when a request fails, and what the audit log says when one succeeds: the
one place that knows the wire's error code for each error a part raises."""

from __future__ import annotations

from typing import Any

from engine import errors
from engine.control.protocol import ControlError

# The wire's error code for each error a part may raise: the most specific class wins.
WIRE_CODES: dict[type[Exception], str] = {
    errors.EngineError: "error",
    errors.NotFound: "not_found",
    errors.Refused: "refused",
    errors.Exists: "exists",
    errors.Invalid: "invalid",
    errors.BadArgument: "bad_request",
    errors.BadFilter: "bad_filter",
    errors.BadRules: "rules_error",
    errors.Unavailable: "unusable",
    errors.Busy: "busy",
    errors.CaptureUnavailable: "capture_unavailable",
    errors.FirewallFailed: "firewall",
    ValueError: "invalid",  # a value a handler could not parse (a severity, a duration)
}


def wire_code(exc: Exception) -> str | None:
    """The code a reply carries for ``exc``; None for a programming error (an internal one)."""
    if isinstance(exc, ControlError):
        return exc.code
    for kind in type(exc).__mro__:
        if kind in WIRE_CODES:
            return WIRE_CODES[kind]
    return None


def error(request_id: Any, message: str, code: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": message, "code": code}


def summary(result: Any) -> str:
    if isinstance(result, dict) and "id" in result:
        return f"ok: id {result['id']}"
    return "ok"
