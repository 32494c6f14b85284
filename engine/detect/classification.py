"""Classtypes (Suricata's classification.config: a name, a description and a priority) and the
severity a rule's alerts get: from the rule's ``priority``, else from its classtype's.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine import shipped
from engine.detect.rules import Rule
from engine.model import Severity

# Suricata's regular expression, less strict about spaces: the description may hold commas.
LINE = re.compile(r"config\s+classification\s*:\s*([A-Za-z0-9_\-]+)\s*,\s*(.+?)\s*,\s*(\d+)\s*")
# What Suricata gives a rule with neither priority nor classtype.
DEFAULT_PRIORITY = 3


class ClassificationError(Exception):
    """A classification file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Classtype:
    name: str
    description: str
    priority: int


Classifications = Mapping[str, Classtype]


def load_classifications(path: Path) -> dict[str, Classtype]:
    """Read a classification.config; comments (``#``) and blank lines are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClassificationError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ClassificationError(f"{path}: not UTF-8 text: {exc.reason}") from None
    found: dict[str, Classtype] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parsed = LINE.fullmatch(line)
        if parsed is None:
            expected = "config classification: name,description,priority"
            raise ClassificationError(f"{path}:{number}: expected '{expected}'")
        name, description, priority = parsed[1], parsed[2], int(parsed[3])
        if priority < 1:
            raise ClassificationError(f"{path}:{number}: {name}: priority must be 1 or more")
        if name in found:
            raise ClassificationError(f"{path}:{number}: classtype {name!r} defined twice")
        found[name] = Classtype(name, description, priority)
    return found


@functools.cache
def shipped_classifications() -> Classifications:
    """The classtypes shipped in rules/classification.config, read once; MissingContent when
    the file is not there."""
    return load_classifications(shipped.file("classification.config"))


def severity_for(priority: int) -> Severity:
    """Suricata's priorities as severities: 1 high, 2 medium, 3 low, 4 and above info."""
    if priority <= 1:
        return Severity.HIGH
    return {2: Severity.MEDIUM, 3: Severity.LOW}.get(priority, Severity.INFO)


def severity_of(rule: Rule, classes: Classifications | None = None) -> Severity:
    """The severity of a rule's alerts: its ``priority`` keyword wins over its classtype."""
    if rule.priority is not None:
        return severity_for(rule.priority)
    known = shipped_classifications() if classes is None else classes
    classtype = known.get(rule.classtype)
    return severity_for(classtype.priority if classtype else DEFAULT_PRIORITY)
