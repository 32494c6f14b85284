"""The content shipped with iotsec (the repository's top-level ``rules/``: packet rules,
classtypes, log filters, default credentials), found one way whatever the install: through
importlib.resources, as the engine package's ``rules`` folder. In the repository that folder is
a link to ``rules/`` (so a checkout and an editable install read the files users edit); a wheel
carries a copy (pyproject.toml's package-data), wherever pip puts it (a venv, --user, --prefix).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

REINSTALL = "the install is incomplete: reinstall iotsec from its wheel or the repository"


class MissingContent(FileNotFoundError):
    """Shipped content that is missing or empty; the message names what and where it looked."""


def folder() -> Path:
    """Where the shipped content is (in a checkout, the repository's ``rules/``)."""
    return Path(str(resources.files("engine").joinpath("rules"))).resolve()


def file(name: str) -> Path:
    """One shipped file by its name under ``rules/`` (``creds/default-credentials.toml``)."""
    path = folder() / name
    if not path.is_file():
        raise MissingContent(f"the shipped {name} is missing from {folder()}: {REINSTALL}")
    return path


def files(pattern: str, what: str) -> list[Path]:
    """The shipped files matching ``pattern`` (``packet/*.rules``), sorted; ``what`` names
    them in the error when there are none."""
    where = folder()
    found = sorted(p for p in where.glob(pattern) if p.is_file())
    if not found:
        raise MissingContent(f"no shipped {what} ({pattern}) in {where}: {REINSTALL}")
    return found
