"""``python -m engine [--config FILE] [--socket PATH]``: the daemon without the console's CLI.

The console starts its private engine this way, so the child never imports the console.
"""

from __future__ import annotations

import argparse
import sys

from engine.audit import AuditKeyError
from engine.config import ConfigError, load_config
from engine.control.protocol import ControlError
from engine.daemon import run_engine
from engine.store.db import StoreError
from engine.store.schema import SchemaError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    parser.add_argument("--config", help="config file (default: $IOTSEC_CONFIG, then defaults)")
    parser.add_argument("--socket", help="control socket path (overrides the config)")
    args = parser.parse_args(argv)
    try:
        return run_engine(load_config(args.config).with_socket(args.socket))
    except (ConfigError, StoreError, SchemaError, ControlError, AuditKeyError, OSError) as exc:
        print(f"iotsec engine: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
