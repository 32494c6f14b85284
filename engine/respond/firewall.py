"""What a firewall backend does for the ban manager, and the dry-run backend that only records
it. A backend holds one element per banned network, with the time it has left (the kernel
expires it itself where it can); every change of one decision is applied at once."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from engine.respond.targets import Network, shown


class FirewallError(Exception):
    """A firewall change that failed; ``permission`` when for want of CAP_NET_ADMIN."""

    def __init__(self, message: str, permission: bool = False) -> None:
        super().__init__(message)
        self.permission = permission


@dataclass(frozen=True)
class Element:
    network: Network
    timeout: float | None  # seconds left; None: until removed


@dataclass(frozen=True)
class Refused:
    """An element the firewall would not take, and why."""

    element: Element
    why: str


class Firewall(Protocol):
    name: str
    enforcing: bool  # whether its bans reach the kernel

    def install(self, elements: list[Element]) -> list[Refused]:
        """Make our table (sets, chains) anew, holding ``elements``: all of them, or when
        some cannot be written or the firewall refuses them, all of the others (returned:
        the ones left out, and why). FirewallError when the table itself cannot be made."""

    def change(self, add: list[Element], remove: list[Network]) -> None:
        """Add and remove elements in one transaction."""

    def observe(self) -> dict[str, tuple[int, int]] | None:
        """Packets and bytes dropped per banned network (where the backend counts them), read
        in one look; None when our table is not there whole (someone flushed the ruleset)."""

    def uninstall(self) -> None:
        """Remove everything of ours from the firewall."""


def add_apart(add: Callable[[list[Element]], None], elements: list[Element]) -> list[Refused]:
    """Add ``elements`` with ``add`` in halves, and halves of the halves that fail, down to
    one each: a batch applies whole or not at all, and one element the firewall refuses must
    not keep the others out. The ones it refuses are returned, each with its error."""
    if not elements:
        return []
    try:
        add(elements)
        return []
    except FirewallError as exc:
        if exc.permission:
            raise
        if len(elements) == 1:
            return [Refused(elements[0], str(exc))]
    half = len(elements) // 2
    return add_apart(add, elements[:half]) + add_apart(add, elements[half:])


MAX_RECORDED = 1000


class DryRun:
    """Records what it would do and does nothing: the default until the config picks a real
    backend, so that a new install cannot block anyone by surprise."""

    name = "dry-run"
    enforcing = False

    def __init__(self) -> None:
        self.elements: dict[str, Element] = {}
        self.actions: deque[tuple[float, str]] = deque(maxlen=MAX_RECORDED)

    def _record(self, text: str) -> None:
        self.actions.append((time.time(), text))

    def install(self, elements: list[Element]) -> list[Refused]:
        self.elements = {shown(e.network): e for e in elements}
        self._record(f"would install the ban table with {len(elements)} bans")
        return []

    def change(self, add: list[Element], remove: list[Network]) -> None:
        for network in remove:
            self.elements.pop(shown(network), None)
            self._record(f"would unban {shown(network)}")
        for element in add:
            self.elements[shown(element.network)] = element
            left = "until lifted" if element.timeout is None else f"for {element.timeout:.0f}s"
            self._record(f"would ban {shown(element.network)} {left}")

    def observe(self) -> dict[str, tuple[int, int]] | None:
        return {}

    def uninstall(self) -> None:
        self.elements.clear()
        self._record("would remove the ban table")
