"""Default-credential checks, as RouterSploit's do, only when a scan asks for them: the shipped
pairs (``rules/creds/default-credentials.toml``, each source cited) are tried on the Telnet,
SSH, HTTP basic-auth and MQTT services a scan found, at most ``max_attempts`` per service,
one at a time with ``delay`` between them, stopping at the first that works. A login that works
is closed at once: nothing is run on the device."""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from engine import shipped
from engine.model import Severity
from engine.scan.findings import Finding, Service
from engine.scan.probes import http_get, mqtt_connect, telnet_options

SHIPPED_LIST = "creds/default-credentials.toml"  # under the shipped folder
LOGIN_WAIT = 5.0
PROMPT_SETTLE = 0.3
SHELL_PROMPT = re.compile(rb"[#$>%]\s*$")
REFUSED = re.compile(rb"incorrect|failed|denied|invalid|login:\s*$", re.I)


@dataclass(frozen=True)
class Pair:
    user: str
    password: str
    source: str


def load_pairs(path: Path) -> dict[str, list[Pair]]:
    """Pairs per service ("telnet", "ssh", "http", "mqtt"), in the order they are tried."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    out: dict[str, list[Pair]] = {}
    for source in raw.get("source", []):
        for service in source["services"]:
            known = out.setdefault(service, [])
            for user, password in source["pairs"]:
                pair = Pair(user, password, source["name"])
                if all((p.user, p.password) != (user, password) for p in known):
                    known.append(pair)
    return out


@functools.cache
def shipped_pairs() -> dict[str, list[Pair]]:
    """The shipped pairs, read once: a scan checks every host it found against them (and a
    serial console its login prompt). MissingContent when the list is missing or empty: a
    check that tried nothing must not pass for one that found nothing."""
    path = shipped.file(SHIPPED_LIST)
    pairs = load_pairs(path)
    if not pairs:
        raise shipped.MissingContent(f"{path}: no credential pairs: {shipped.REINSTALL}")
    return pairs


async def check(
    address: str,
    services: list[Service],
    *,
    max_attempts: int = 10,
    delay: float = 0.5,
    pairs: dict[str, list[Pair]] | None = None,
) -> list[Finding]:
    """Try the default pairs on each service that takes a login; a finding per service where
    one worked."""
    pairs = shipped_pairs() if pairs is None else pairs
    checks = []
    for service in services:
        kind = _kind(service)
        if kind is not None:
            checks.append(_check_one(address, service, kind, pairs.get(kind, [])[:max_attempts],
                                     delay))  # fmt: skip
    return [f for f in await asyncio.gather(*checks) if f is not None]


def _kind(service: Service) -> str | None:
    if service.proto != "tcp":
        return None
    if service.service in ("telnet", "ssh"):
        return service.service
    if service.service == "http" and str(service.details.get("auth", "")).lower() == "basic":
        return "http"
    if service.service == "mqtt" and service.details.get("connack") not in (None, 0):
        return "mqtt"  # a broker that refuses anonymous clients: does it take a default?
    return None


async def _check_one(address: str, service: Service, kind: str, pairs: list[Pair],
                     delay: float) -> Finding | None:  # fmt: skip
    attempt: Callable[[str, int, Pair], Awaitable[bool]] = ATTEMPTS[kind]
    for n, pair in enumerate(pairs):
        if n:
            await asyncio.sleep(delay)
        try:
            worked = await asyncio.wait_for(attempt(address, service.port, pair), LOGIN_WAIT * 2)
        except (OSError, TimeoutError, EOFError):
            continue
        if worked:
            shown = pair.password if pair.password else "(empty)"
            return Finding(
                "default-credentials", Severity.CRITICAL,
                f"Default credentials accepted on {kind.upper() if kind != 'http' else 'HTTP'}",
                f"{pair.user} / {shown} logged in on port {service.port} ({pair.source} list); "
                f"attempt {n + 1} of at most {len(pairs)}",
                f"Change the password of {pair.user!r} (and every other default account) now; "
                "disable the service if it is not needed. This is how botnets take devices.",
                service.port,
            )  # fmt: skip
    return None


# -- one login attempt per protocol --------------------------------------------------------------


async def _telnet(address: str, port: int, pair: Pair) -> bool:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), LOGIN_WAIT)
    try:
        if not await _expect(reader, writer, rb"login:\s*$"):
            return False
        writer.write(pair.user.encode() + b"\r\n")
        seen = await _expect(reader, writer, rb"assword:\s*$|[#$>%]\s*$")
        if seen is None:
            return False
        if seen.rstrip().endswith(b":"):
            # login flushes what was typed ahead of its password prompt (as getpass does):
            # a password sent the instant the prompt shows is lost.
            await asyncio.sleep(PROMPT_SETTLE)
            writer.write(pair.password.encode() + b"\r\n")
            seen = await _expect(reader, writer, rb"[#$>%]\s*$|login:\s*$|incorrect|failed")
        return seen is not None and bool(SHELL_PROMPT.search(seen)) and \
            not REFUSED.search(seen[-200:])  # fmt: skip
    finally:
        writer.close()


async def _expect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  pattern: bytes) -> bytes | None:  # fmt: skip
    """Read (refusing every Telnet option) until ``pattern`` matches the text; None if not."""
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOGIN_WAIT
    while loop.time() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), deadline - loop.time())
        except TimeoutError:
            return None
        if not chunk:
            return None
        text, refusals = telnet_options(chunk)
        if refusals:
            writer.write(refusals)
        # BusyBox's ash asks where the cursor is (ESC [6n) right after its prompt.
        data += re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", text)
        if re.search(pattern, data, re.I):
            return data
    return None


async def _ssh(address: str, port: int, pair: Pair) -> bool:
    import asyncssh

    try:
        connection = await asyncssh.connect(
            address, port, username=pair.user, password=pair.password, known_hosts=None,
            client_keys=None, agent_path=None, config=None, connect_timeout=LOGIN_WAIT,
            preferred_auth="password,keyboard-interactive",
        )  # fmt: skip
    except (asyncssh.PermissionDenied, asyncssh.DisconnectError):
        return False
    connection.close()
    return True


async def _http(address: str, port: int, pair: Pair) -> bool:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), LOGIN_WAIT)
    try:
        token = base64.b64encode(f"{pair.user}:{pair.password}".encode()).decode()
        writer.write(http_get(address, f"Authorization: Basic {token}"))
        status = await asyncio.wait_for(reader.readline(), LOGIN_WAIT)
        code = status.split(b" ")[1:2]
        return bool(code) and code[0][:1] in (b"2", b"3")
    finally:
        writer.close()


async def _mqtt(address: str, port: int, pair: Pair) -> bool:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), LOGIN_WAIT)
    try:
        writer.write(mqtt_connect(pair.user, pair.password))
        answer = await asyncio.wait_for(reader.readexactly(4), LOGIN_WAIT)
        if answer[0] == 0x20 and answer[3] == 0:
            writer.write(b"\xe0\x00")
            return True
        return False
    finally:
        writer.close()


ATTEMPTS: dict[str, Callable[[str, int, Pair], Awaitable[bool]]] = {
    "telnet": _telnet,
    "ssh": _ssh,
    "http": _http,
    "mqtt": _mqtt,
}
