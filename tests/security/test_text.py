"""Text that came from outside reaches neither the terminal nor the engine's log as it came:
control characters, C1 and Unicode format characters (bidi overrides, zero-width) are shown
escaped, and a value cannot forge a log line."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from engine.control.protocol import ControlError
from engine.text import printable, unsafe_character
from tests.security.conftest import request_as


def test_every_control_and_format_character_is_escaped() -> None:
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        unsafe = (code < 0x20 and char != "\t") or 0x7F <= code <= 0x9F or (
            unicodedata.category(char) == "Cf")  # fmt: skip
        assert (printable(char) != char) == unsafe, f"U+{code:04X}"
        assert (unsafe_character(f"a{char}b") is not None) == unsafe, f"U+{code:04X}"
    assert printable("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert printable("admin\u200b") == "admin\\u200b"
    assert printable("déjà vu 東京\tok") == "déjà vu 東京\tok"  # letters and tabs stay


def test_a_bidi_override_in_an_alert_title_is_shown_escaped(secure_engine) -> None:
    engine = secure_engine()
    with engine.client() as root:
        root.request("alerts.inject", {"title": "login from 10.0.0.5\u202e1.0.0.01"})
    shown = engine.cli("alerts").stdout
    assert "10.0.0.5\\u202e1.0.0.01" in shown and "\u202e" not in shown


def test_a_newline_in_a_value_does_not_forge_a_log_line(secure_engine, users) -> None:
    """The reported case: a newline in a serial port name wrote a line of its own."""
    engine = secure_engine()
    forged = "2026-12-07 00:00:00,000 CRITICAL iotsec.engine: FORGED"
    # Refused ports are logged with who asked: the log line holds the client's string.
    for port in (f"spy:///dev/null\n{forged}", f"loop://\r{forged}", f"alt://x\x1b[2K{forged}"):
        with pytest.raises(ControlError) as refused:
            request_as(users["operator"], engine, "serial.open", {"port": port})
        assert refused.value.code == "refused"
    log = engine.log.read_text()
    assert "FORGED" in log, "the refused ports should be logged"
    assert not any(line.startswith(forged[:10] + " 00:00") for line in log.splitlines())
    assert "\x1b" not in log and "\r" not in log
