"""What a part raises when it will not or cannot do what it was asked, with a message the user
can act on. The parts know nothing of the control API: its server turns these into replies.
"""

from __future__ import annotations


class EngineError(Exception):
    """A request a part refused or could not carry out."""

    @property
    def code(self) -> str:
        """What the control API's reply says of this error (its server alone knows the codes)."""
        from engine.control.replies import wire_code

        return wire_code(self) or "error"


class NotFound(EngineError):
    """What the request names does not exist (an id, a device, a followed file)."""


class Refused(EngineError):
    """A policy says no: the scan scope, the allow-list, the serial port rules."""


class Exists(Refused):
    """What the request would make is there already (an address inside a network ban)."""


class Invalid(EngineError):
    """The request cannot be carried out as asked (a bad setting, a state that forbids it)."""


class BadArgument(Invalid):
    """An argument is malformed or out of range."""


class BadFilter(BadArgument):
    """A display or BPF filter that does not parse or compile."""


class BadRules(Invalid):
    """Rule files with new problems: the running rules stay."""


class Unavailable(EngineError):
    """Something the request needs cannot be used (a port, a file, the shipped content)."""


class Busy(Unavailable):
    """Too much is under way already; it can be asked again later."""


class CaptureUnavailable(Unavailable):
    """Live capture cannot run here (no capture privilege, no such interface to open)."""


class FirewallFailed(Unavailable):
    """The firewall refused a change."""
