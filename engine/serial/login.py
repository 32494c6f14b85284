"""The opt-in default-credential check of a serial console's login prompt: the shipped pairs
are typed through the session one at a time, as a technician would, stopping at the first that
gives a shell; that shell is logged out of at once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.scan.creds import Pair
from engine.serial.analyze import clean_line

LOGIN_PROMPT = re.compile(r"login:\s*$", re.I)
PASSWORD_PROMPT = re.compile(r"password:\s*$", re.I)
SHELL_PROMPT = re.compile(r"[#$]\s*$")
# login's own refusals (not any "failed" a profile script may print after a good login).
REFUSED = re.compile(r"login incorrect|login failed|authentication fail|login:\s*$", re.I)
PROMPT_WAIT = 3.0
VERDICT_WAIT = 6.0  # BusyBox login waits ~3 s after a wrong password
KEEP = 4096


@dataclass(frozen=True)
class LoginResult:
    pair: Pair | None
    tried: int
    reason: str  # why it stopped without a pair, or how the shell answered


class LoginCheck:
    def __init__(self, send: Callable[[bytes], Awaitable[object]], enter: bytes) -> None:
        self._send = send
        self._enter = enter
        self._text = ""
        self._arrived = asyncio.Event()

    def received(self, data: bytes) -> None:
        """What the device sent (the service passes every batch while the check runs)."""
        text = "\n".join(
            clean_line(line) for line in re.split(r"\r*\n", data.decode(errors="replace"))
        )
        self._text = (self._text + text)[-KEEP:]
        self._arrived.set()

    async def run(self, pairs: list[Pair]) -> LoginResult:
        tried = 0
        for pair in pairs:
            if await self._fresh_prompt() is not LOGIN_PROMPT:
                reason = (
                    "no login prompt (already logged in?)"
                    if tried == 0
                    else "the login prompt went away"
                )
                return LoginResult(None, tried, reason)
            tried += 1
            answer = await self._type(
                pair.user.encode(), (PASSWORD_PROMPT, SHELL_PROMPT, LOGIN_PROMPT), PROMPT_WAIT
            )
            if answer is PASSWORD_PROMPT:
                answer = await self._type(
                    pair.password.encode(), (SHELL_PROMPT, REFUSED), VERDICT_WAIT
                )
            if answer is SHELL_PROMPT:
                await self._type(b"exit", (), 0)
                return LoginResult(pair, tried, "a shell answered")
        return LoginResult(None, tried, f"none of {tried} pairs worked")

    async def _fresh_prompt(self) -> re.Pattern[str] | None:
        """Enter, for a new login prompt (a getty that took it as a user name asks for its
        password: one more Enter fails that login and brings the prompt back)."""
        seen = await self._type(b"", (LOGIN_PROMPT, SHELL_PROMPT, PASSWORD_PROMPT), PROMPT_WAIT)
        if seen is PASSWORD_PROMPT:
            seen = await self._type(b"", (LOGIN_PROMPT, SHELL_PROMPT), VERDICT_WAIT)
        return seen

    async def _type(
        self, text: bytes, expect: tuple[re.Pattern[str], ...], timeout: float
    ) -> re.Pattern[str] | None:
        """Type ``text`` and Enter, then wait for the first of ``expect`` at the end of what
        comes back; None when nothing matched in time."""
        self._text = ""
        self._arrived.clear()
        await self._send(text + self._enter)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            tail = self._text.rstrip("\n").rsplit("\n", 1)[-1] if self._text else ""
            for pattern in expect:
                if pattern.search(tail) or (pattern is REFUSED and pattern.search(self._text)):
                    return pattern
            left = deadline - loop.time()
            if left <= 0:
                return None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return None
