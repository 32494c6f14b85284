"""The serial console's prefix commands (Ctrl-T, as in tio; ``[serial] prefix``), without
Textual: what the key typed after the prefix asks for, and the listing ``prefix ?`` shows.
The pane carries the commands out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The prefix commands: key as listed, the key's name, what it does (``prefix ?`` lists them in
# this order).
COMMANDS: list[tuple[str, str, str]] = [
    ("?", "question_mark", "list these commands"),
    ("B", "B", "change the baud rate"),
    ("m", "m", "line ending sent for Enter: CR, LF, CR LF"),
    ("M", "M", "line ending received: LF, CR, CR LF"),
    ("e", "e", "local echo on/off"),
    ("h", "h", "hex view on/off"),
    ("w", "w", "long lines: wrap them, or cut them (then ←/→ scroll sideways)"),
    ("←/→", "left", "scroll cut lines sideways"),
    ("t", "t", "timestamps: off, absolute, relative, delta"),
    ("b", "b", "send a break"),
    ("d", "d", "toggle DTR"),
    ("r", "r", "toggle RTS"),
    ("p", "p", "pulse DTR (reset many boards)"),
    ("x", "x", "send a macro ([serial.macros])"),
    ("F", "F", "send a file, raw"),
    ("f", "f", "log file: where this session's transcript is"),
    ("a", "a", "try default credentials at a login prompt (opt-in)"),
    ("/", "slash", "search the scrollback"),
    ("n", "n", "next (older) match; N: newer"),
    ("l", "l", "clear the view"),
    ("R", "R", "reconnect now"),
    ("o", "o", "open another port"),
    ("s", "s", "switch to the next session"),
    ("c", "c", "close this session"),
    ("i", "i", "findings column on/off"),
    ("1-3", "1", "show the Traffic, Devices or Alerts pane (in the console)"),
    ("q", "q", "quit"),
]
# Every key that names a command: those listed, the other half of a pair (→, N), not the
# pane digits (they depend on the app).
COMMAND_KEYS = frozenset({key for _, key, _ in COMMANDS} - {"1"} | {"right", "N"})


@dataclass(frozen=True)
class Resolved:
    """What a key typed after the prefix asks for: ``prompt`` (the prefix again: wait for the
    command), ``pane`` (show the pane ``value``), ``command`` (the command of key ``value``),
    or ``unknown`` (``value`` says so)."""

    kind: Literal["prompt", "pane", "command", "unknown"]
    value: str


class PrefixCommands:
    """The commands behind ``prefix`` (a Textual key name, "ctrl+t"); ``panes`` are the panes
    the digits 1, 2, ... show, in the console (none in ``iotsec serial``)."""

    def __init__(self, prefix: str, panes: tuple[str, ...] = ()) -> None:
        self.prefix = prefix.strip().lower()
        self.panes = panes

    @property
    def name(self) -> str:
        """The prefix as the operator reads it: Ctrl-T."""
        return self.prefix.replace("ctrl+", "Ctrl-").title().replace("Ctrl-", "Ctrl-")

    def resolve(self, key: str) -> Resolved:
        if key == self.prefix:
            return Resolved("prompt", f"{self.name}: command? (? lists them)")
        if len(key) == 1 and key.isdigit() and 1 <= int(key) <= len(self.panes):
            return Resolved("pane", self.panes[int(key) - 1])
        if key in COMMAND_KEYS:
            return Resolved("command", key)
        return Resolved("unknown", f"{self.name} {key}: no such command (? lists them)")

    def listing(self) -> list[tuple[str, str]]:
        """(keys, what they do) for the help screen, the prefix itself last."""
        rows = [(f"{self.name} {shown}", what) for shown, _key, what in COMMANDS]
        rows.append((f"{self.name} {self.name}", "send the prefix key itself"))
        return rows
