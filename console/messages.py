"""What panes, screens and widgets ask of the app they run in: they say what the operator wants
to see, and the app, which knows its panes and views, shows it. A message no app handles (the
``iotsec serial`` app has no other panes) is dropped.

Textual's messages set attributes of their own after ``__init__``, so these are plain (not
frozen) dataclasses; nothing changes them after they are made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


@dataclass
class ShowPane(Message):
    """Bring a pane of the console into view (``traffic``, ``devices``, ``alerts``, ``serial``)."""

    pane: str


@dataclass
class ShowFlow(Message):
    """Show one flow (a rule alert's ``evidence["flow"]``) in the Traffic pane; ``origin`` says
    where it was asked for ("alert #12")."""

    flow: dict[str, Any]
    origin: str


@dataclass
class ShowTraffic(Message):
    """Show the traffic of these addresses (a device's) in the Traffic pane."""

    hosts: tuple[str, ...]


@dataclass
class ShowSerial(Message):
    """Show the serial session attached to an inventory device in the Serial pane."""

    device_id: str


@dataclass
class OpenView(Message):
    """Open one of the views over the panes: ``rules``, ``bans``, ``logs`` or ``silences``."""

    view: str


@dataclass
class ScanStarted(Message):
    """A scan was started in the engine from here: the Devices pane says when it ends."""

    scan_id: int


@dataclass
class SerialDevices(Message):
    """The inventory devices (by id) that an open serial session is attached to, sent by the
    Serial pane whenever that set changes."""

    devices: frozenset[str]
