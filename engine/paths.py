"""Default locations of the config, database, audit key and control socket (root and user)."""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_CONFIG = Path("/etc/iotsec/iotsec.toml")


def is_root() -> bool:
    return os.geteuid() == 0


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def user_config() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "iotsec" / "iotsec.toml"


def state_dir() -> Path:
    """Where the database and audit key live: /var/lib/iotsec for root, XDG state dir otherwise."""
    if is_root():
        return Path("/var/lib/iotsec")
    return _xdg("XDG_STATE_HOME", ".local/state") / "iotsec"


def runtime_dir() -> Path:
    """Where the control socket lives: /run/iotsec for root, $XDG_RUNTIME_DIR or the state dir."""
    if is_root():
        return Path("/run/iotsec")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "iotsec" if runtime else state_dir()


def default_db_path() -> Path:
    return state_dir() / "iotsec.db"


def default_socket_path() -> Path:
    return runtime_dir() / "control.sock"


def config_candidates() -> list[Path]:
    """Config files looked for when neither --config nor $IOTSEC_CONFIG names one, in order."""
    if is_root():
        return [SYSTEM_CONFIG, user_config()]
    return [user_config(), SYSTEM_CONFIG]
