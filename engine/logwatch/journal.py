"""The systemd journal as a source (modern sshd logs there, not to a file): ``journalctl
--follow --output=json`` with the jail's matches, so no Python binding is needed; where there
is no journalctl or no journal, the source says so and the rest goes on. The cursor of the
last entry read is saved (at most every second, and at the end) and the next run starts after
it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from typing import Any

from engine.logwatch.syslog import SyslogMessage

log = logging.getLogger("iotsec.logwatch")

RETRY = 10.0  # seconds before journalctl is started again after it ended
SAVE_EVERY = 1.0
MAX_ENTRY = 1 << 20  # journalctl's JSON line for one entry, at most

# (program, message, time, the line as shown)
Entry = tuple[str, str, float | None, str]


def entry_of(raw: dict[str, Any]) -> Entry:
    """One journal entry (journalctl's JSON) as a syslog-like line."""
    message = _text(raw.get("MESSAGE"))
    program = _text(raw.get("SYSLOG_IDENTIFIER") or raw.get("_COMM"))
    try:
        ts: float | None = int(raw["__REALTIME_TIMESTAMP"]) / 1e6
    except (KeyError, TypeError, ValueError):
        ts = None
    shown = SyslogMessage(
        ts,
        _text(raw.get("_HOSTNAME")),
        program,
        _text(raw.get("SYSLOG_PID") or raw.get("_PID")),
        message,
        facility=1,
        severity=_int(raw.get("PRIORITY"), 6),
        peer="",
    )
    line = shown.line()
    return program, message, ts, line


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _text(value: Any) -> str:
    # journalctl writes a field that is not valid UTF-8 as a list of byte values.
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return bytes(v & 0xFF for v in value).decode("utf-8", "replace")
    if isinstance(value, list):
        return _text(value[0]) if value else ""
    return "" if value is None else str(value)


class JournalReader:
    def __init__(
        self,
        matches: list[str],
        handler: Callable[[list[Entry]], None],
        *,
        cursor: str = "",
        from_start: bool = False,
        directory: str = "",
        save_cursor: Callable[[str], None] | None = None,
    ) -> None:
        self.matches = matches
        self.handler = handler
        self.cursor = cursor
        self.from_start = from_start
        self.directory = directory
        self.save_cursor = save_cursor
        self.state = "not started"
        self._saved = cursor
        self._saved_at = 0.0
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.began = time.time()

    async def start(self) -> None:
        if shutil.which("journalctl") is None:
            self.state = "unavailable: journalctl not found (no systemd journal here)"
            log.warning("logwatch: journal %s", self.state)
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._save(force=True)

    def command(self) -> list[str]:
        args = ["journalctl", "--follow", "--output=json", "--no-pager", "--quiet"]
        if self.directory:
            args.append(f"--directory={self.directory}")
        if self.cursor:
            args.append(f"--after-cursor={self.cursor}")
        elif not self.from_start:
            # From when following began, not from when journalctl got going: nothing logged
            # in between is missed.
            args.append(f"--since=@{self.began:.6f}")
        return [*args, "--lines=all", *self.matches]

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._follow()
            except OSError as exc:
                self.state = f"error: cannot run journalctl: {exc}"
            if self._stopping:
                return
            log.warning("logwatch: journal %s; again in %gs", self.state, RETRY)
            await asyncio.sleep(RETRY)

    async def _follow(self) -> None:
        process = self._process = await asyncio.create_subprocess_exec(
            *self.command(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            limit=MAX_ENTRY,
        )
        assert process.stdout is not None and process.stderr is not None
        self.state = "following"
        try:
            while True:
                try:
                    raw = await process.stdout.readline()
                except ValueError:  # an entry longer than MAX_ENTRY: skipped
                    continue
                if not raw:
                    break
                self._entry(raw)
        finally:
            if process.returncode is None:
                process.terminate()
            error = (await process.stderr.read()).decode("utf-8", "replace").strip()
            code = await process.wait()
            self._save(force=True)
        if not self._stopping:
            self.state = f"error: journalctl ended ({code}): {error or 'no message'}"

    def _entry(self, raw: bytes) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        self.handler([entry_of(data)])
        cursor = data.get("__CURSOR")
        if isinstance(cursor, str):
            self.cursor = cursor
            self._save()

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        due = force or now - self._saved_at >= SAVE_EVERY
        if self.save_cursor is None or not due or self.cursor == self._saved:
            return
        self.save_cursor(self.cursor)
        self._saved, self._saved_at = self.cursor, now
