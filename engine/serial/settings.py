"""A serial line's settings (baud, framing, flow control, DTR/RTS) and the session's line-ending
maps, checked once so that a wrong value is refused with the name of the setting."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import serial

PARITIES = {
    "none": serial.PARITY_NONE,
    "even": serial.PARITY_EVEN,
    "odd": serial.PARITY_ODD,
    "mark": serial.PARITY_MARK,
    "space": serial.PARITY_SPACE,
}
FLOWS = ("none", "rtscts", "xonxoff")
DATA_BITS = (5, 6, 7, 8)
STOP_BITS = (1, 1.5, 2)
# What the Enter key (and a newline in a macro) sends; what ends a received line in the view.
MAP_OUT = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n"}
MAP_IN = ("lf", "cr", "crlf")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it and what is accepted."""


@dataclass(frozen=True)
class LineSettings:
    baud: int = 115200
    data_bits: int = 8
    parity: str = "none"
    stop_bits: float = 1
    flow: str = "none"
    dtr: bool = True
    rts: bool = True
    # Line-ending maps, separately for what is sent and what is received (see MAP_OUT, MAP_IN).
    map_out: str = "cr"
    map_in: str = "lf"
    # Show what is typed in the view too, for devices that do not echo.
    echo: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.baud, bool) or not isinstance(self.baud, int) or self.baud <= 0:
            raise SettingsError(f"baud: a positive whole number is needed, got {self.baud!r}")
        if self.data_bits not in DATA_BITS:
            raise SettingsError(f"data_bits: expected 5, 6, 7 or 8, got {self.data_bits!r}")
        if self.parity not in PARITIES:
            raise SettingsError(
                f"parity: expected one of {', '.join(PARITIES)}, got {self.parity!r}"
            )
        if self.stop_bits not in STOP_BITS:
            raise SettingsError(f"stop_bits: expected 1, 1.5 or 2, got {self.stop_bits!r}")
        if self.flow not in FLOWS:
            raise SettingsError(f"flow: expected one of {', '.join(FLOWS)}, got {self.flow!r}")
        if self.map_out not in MAP_OUT:
            raise SettingsError(f"map_out: expected cr, lf or crlf, got {self.map_out!r}")
        if self.map_in not in MAP_IN:
            raise SettingsError(f"map_in: expected lf, cr or crlf, got {self.map_in!r}")

    @property
    def framing(self) -> str:
        """As picocom and tio print it: ``8N1``."""
        stop = "1.5" if self.stop_bits == 1.5 else str(int(self.stop_bits))
        return f"{self.data_bits}{self.parity[0].upper()}{stop}"

    def describe(self) -> str:
        """``115200 8N1`` and the flow control when there is one."""
        flow = "" if self.flow == "none" else f" {self.flow}"
        return f"{self.baud} {self.framing}{flow}"

    def enter(self) -> bytes:
        return MAP_OUT[self.map_out]

    def outgoing(self, text: str) -> bytes:
        """Text typed or from a macro as it goes on the line: newlines mapped by ``map_out``."""
        data = text.replace("\r\n", "\n").encode("utf-8", "surrogateescape")
        return data.replace(b"\n", self.enter()) if self.map_out != "lf" else data

    def to_pyserial(self) -> dict[str, Any]:
        return {
            "baudrate": self.baud,
            "bytesize": self.data_bits,
            "parity": PARITIES[self.parity],
            "stopbits": self.stop_bits,
            "rtscts": self.flow == "rtscts",
            "xonxoff": self.flow == "xonxoff",
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def changed(self, changes: dict[str, Any]) -> LineSettings:
        """These settings with ``changes`` applied (unknown names refused)."""
        return settings_from(changes, self)


FIELDS = {f.name: f.type for f in dataclasses.fields(LineSettings)}


def settings_from(values: dict[str, Any], base: LineSettings | None = None) -> LineSettings:
    """Settings from a mapping (control API, CLI, config): names checked, numbers coerced."""
    base = base or LineSettings()
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise SettingsError(f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(FIELDS))}")
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        current = getattr(base, name)
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise SettingsError(f"{name}: expected true or false, got {value!r}")
        elif isinstance(current, int | float) and isinstance(value, str):
            try:
                value = float(value) if name == "stop_bits" else int(value)
            except ValueError:
                raise SettingsError(f"{name}: expected a number, got {value!r}") from None
        elif isinstance(current, str):
            if not isinstance(value, str):
                raise SettingsError(f"{name}: expected text, got {value!r}")
            value = value.lower().replace("-", "").replace("/", "")
        clean[name] = value
    return dataclasses.replace(base, **clean)
