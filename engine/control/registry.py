"""The control commands: each part declares its own (name, least role, whether it changes state,
help, arguments, handler) in its ``commands.py``, next to the service they call; the daemon adds
them part by part, and the server dispatches through the registry without knowing any of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from engine.control.schema import Schema
from engine.model import Operator, Role

Args = dict[str, Any]
T = TypeVar("T")
# The engine's read-only store access, which runs a query off the loop.


class Caller(Protocol):
    """Who sent a request, as a handler may know it."""

    operator: Operator
    # The address the client says its SSH session comes from, verified or not (see hello).
    claimed_ssh_client: str


Handler = Callable[[Caller, Args], Awaitable[Any]]


@dataclass(frozen=True)
class Command:
    name: str
    role: Role
    changes_state: bool  # audited, whether it succeeds, fails or is refused
    help: str
    args: Schema
    handler: Handler


class Registry:
    """The commands by name."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def command(self, name: str, role: Role = Role.VIEWER, *, changes_state: bool = False,
                args: Schema | None = None) -> Callable[[Handler], Handler]:  # fmt: skip
        """Add the decorated handler as ``name``, with the least role it needs and the
        arguments it takes; its docstring is its help."""

        def add(handler: Handler) -> Handler:
            if name in self._commands:
                raise ValueError(f"control command {name} is registered twice")
            help_text = " ".join((handler.__doc__ or "").split())
            self._commands[name] = Command(name, role, changes_state, help_text, args or {},
                                           handler)  # fmt: skip
            return handler

        return add

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def names(self, role: Role) -> list[str]:
        """The commands ``role`` may use, sorted."""
        return sorted(n for n, c in self._commands.items() if c.role <= role)

    def __iter__(self) -> Iterator[Command]:
        return iter(list(self._commands.values()))

    @property
    def commands(self) -> dict[str, Command]:
        """A copy of the table, by name."""
        return dict(self._commands)
