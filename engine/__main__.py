"""``python -m engine [--config FILE] [--socket PATH | --private DIR]``: the daemon without the
console's CLI.

The console starts its private engine this way (``--private``), so the child never imports the
console.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.audit import AuditKeyError
from engine.config import ConfigError, load_config
from engine.control.endpoint import SocketUnusable
from engine.daemon import run_engine
from engine.store.db import StoreError
from engine.store.schema import SchemaError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    parser.add_argument("--config", help="config file (default: $IOTSEC_CONFIG, then defaults)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--socket", help="control socket path (overrides the config)")
    where.add_argument(
        "--private",
        metavar="DIR",
        help="a console's private engine: database and socket in DIR, dry-run bans, no serial"
        " port opened at start, whatever the config says",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.private:
            return run_engine(config.private(Path(args.private)))
        return run_engine(config.with_socket(args.socket))
    except (ConfigError, StoreError, SchemaError, SocketUnusable, AuditKeyError, OSError) as exc:
        print(f"iotsec engine: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
