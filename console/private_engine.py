"""An engine the console starts for itself when none is running, and stops when it quits.

It runs as a separate process (``python -m engine --private DIR``) on its own files in a fresh
private temporary directory: its own socket, which nobody else can reach, and its own database,
so it never takes the lock of the configured engine's. It only records bans (dry-run) and opens
no serial port at start, whatever the config says: it must not touch this host's firewall or a
port another engine needs. Its work never shares the UI's interpreter.
It gets its own session so that a Ctrl+Z or a hangup meant for the console does not stop it
mid-write; the console stops it by PID.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

STOP_TIMEOUT = 5.0


class PrivateEngine:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self.directory: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        assert self.directory is not None, "start() first"
        return self.directory / "control.sock"

    @property
    def log(self) -> Path:
        assert self.directory is not None, "start() first"
        return self.directory / "engine.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start the child (blocking for the fork and exec only; call it off the UI thread)."""
        # mkdtemp makes the directory 0700: the socket inside is reachable only by this user.
        self.directory = Path(tempfile.mkdtemp(prefix="iotsec-console-"))
        command = [sys.executable, "-m", "engine", "--private", str(self.directory)]
        if self.config_path:
            command += ["--config", self.config_path]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )

    def exit_status(self) -> int | None:
        """The child's exit status once it has exited, else ``None``."""
        return self.proc.poll() if self.proc is not None else None

    def log_tail(self, lines: int = 3) -> str:
        """The last lines the engine wrote to stderr, for an error message."""
        if self.directory is None:
            return ""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the child by its PID (SIGTERM, then SIGKILL) and remove its directory."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
