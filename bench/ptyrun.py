"""Running a full-screen program on a pseudo-terminal for the console benchmarks."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import termios
import threading
import time


class PtyProcess:
    """A child on a pty of a given size; its screen output is read (and kept) by a thread."""

    def __init__(self, argv: list[str], *, cols: int = 80, rows: int = 24,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.start = time.perf_counter()
        pid, fd = pty.fork()
        if pid == 0:
            os.execvpe(argv[0], argv, {**os.environ, "TERM": "xterm-256color", **(env or {})})
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.5)
                if ready:
                    data = os.read(self.fd, 65536)
                    if not data:
                        return
                    with self._lock:
                        self.output += data
            except OSError:
                return

    def wait_for(self, marker: bytes, timeout: float = 20.0) -> float:
        """Seconds from start until ``marker`` appeared on the screen."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self._lock:
                if marker in self.output:
                    return time.perf_counter() - self.start
            time.sleep(0.002)
        raise TimeoutError(f"{marker!r} did not appear within {timeout}s")

    def cpu_seconds(self) -> float:
        """User + system CPU time the child has used so far."""
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Hang up, as a dropped SSH session would, and reap the child."""
        os.close(self.fd)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return
            time.sleep(0.05)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
