"""Filters: what a log line means, in fail2ban's terms. A filter is a TOML file (shipped ones in
``rules/logs/``): ``name``, ``description``, ``programs`` (the syslog tags it reads; empty:
any line), ``failregex`` (a list; ``<HOST>`` stands for the address or host name that failed,
``<ADDR>`` for an address only, ``<USER>`` for a user name) and ``ignoreregex``. For a daemon
whose failure line does not name the peer (Mosquitto's "Client X disconnected, not
authorised."), ``remember`` regexes take the host from the line that does ("New connection
from HOST:PORT"), and a failregex without ``<HOST>`` fails the host remembered last.
``nofail`` regexes recognise lines that tell of a failure already counted (OpenSSH writes a
PAM failure and "Failed password" for one attempt): the line is noted, not counted again,
as fail2ban's ``<F-NOFAIL>`` does.

``modes`` names the filter's modes, the first the default (fail2ban's sshd: normal, ddos,
extra, aggressive); an entry of ``failregex``, ``nofail`` or ``ignoreregex`` is a regex for
every mode, or a table ``{ regex = "...", modes = ["aggressive"] }`` for those modes only. A jail
picks the mode (``mode = "aggressive"``), as fail2ban's ``filter = sshd[mode=aggressive]``.

A line is read as: its time (:mod:`engine.logwatch.timestamps`), then, when it has one, the
syslog header (``host program[pid]: ``), then the message the regexes see. A line without a
syslog header is the daemon's own log file (``dropbear -E``), which a jail gave this filter:
``programs`` does not apply to it. Host names are kept as written and never resolved (a lookup
would leave the machine).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from engine import shipped
from engine.logwatch import timestamps

_IPV4 = r"(?:\d{1,3}\.){3}\d{1,3}"
_IPV6 = r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:" + _IPV4 + r"|[0-9A-Fa-f]{0,4})"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
_NAME = rf"{_LABEL}(?:\.{_LABEL})*"
PLACEHOLDERS = {
    "<HOST>": rf"\[?(?P<host>{_IPV4}|{_IPV6}|{_NAME})\]?",
    "<ADDR>": rf"\[?(?P<host>{_IPV4}|{_IPV6})\]?",
    "<USER>": r"(?P<user>.*?)",
}
# "host program[pid]: message" (the host is absent in some files, e.g. the journal's export).
# BusyBox syslogd and OpenWrt's logread put the facility and level before the program
# ("cam authpriv.warn dropbear[812]: ").
_FACILITY = (
    r"(?:auth|authpriv|cron|daemon|ftp|kern|lpr|mail|mark|news|security|syslog|user|uucp"
    r"|local[0-7])\.(?:alert|crit|debug|emerg|err|error|info|none|notice|panic|warn|warning)"
)
_SYSLOG = re.compile(
    rf"(?:(?P<hostname>[\w.:-]+) )?(?:{_FACILITY} )?(?P<program>[\w./-]+)(?:\[\d+\])?: "
    # Solaris and illumos put the message's id and facility.level after the tag.
    r"(?:\[ID \d+ [\w.]+\] )?"
)


class FilterError(ValueError):
    """A filter file that cannot be used: names the file and what is wrong."""


@dataclass(frozen=True)
class Filter:
    name: str
    description: str
    programs: tuple[str, ...]
    failregex: tuple[re.Pattern[str], ...]
    ignoreregex: tuple[re.Pattern[str], ...]
    source: str
    remember: tuple[re.Pattern[str], ...] = ()
    nofail: tuple[re.Pattern[str], ...] = ()
    # The regexes as written, for reports (fail2ban-regex prints them).
    written: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()  # the filter's modes, the default first; () if it has none
    mode: str = ""  # the mode these regexes are for


class Verdict(NamedTuple):
    """What a filter makes of one line. A NamedTuple rather than a frozen dataclass: one is
    made for every line read, in under half the time (measured: 8% of ``iotsec logs test``)."""

    kind: str  # "matched", "noted" (a nofail line), "ignored" or "missed"
    ts: float | None = None
    host: str = ""
    user: str = ""
    regex: int = -1  # which failregex matched


def expand(pattern: str) -> str:
    for placeholder, regex in PLACEHOLDERS.items():
        pattern = pattern.replace(placeholder, regex)
    return pattern


def load_filter(path: str | Path, mode: str = "") -> Filter:
    """Read and compile a filter file for ``mode`` (its default when ""); FilterError names
    the file, the key and the problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FilterError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FilterError(f"{path}: not valid TOML: {exc}") from None
    known = {"name", "description", "programs", "failregex", "ignoreregex", "remember",
             "nofail", "modes"}  # fmt: skip
    unknown = sorted(set(raw) - known)
    if unknown:
        raise FilterError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    modes = tuple(_strings(raw, "modes", path))
    if mode and mode not in modes:
        offered = f"its modes are {', '.join(modes)}" if modes else "it has no modes"
        raise FilterError(f"{path}: no mode {mode!r}: {offered}")
    mode = mode or (modes[0] if modes else "")
    failregex = _entries(raw, "failregex", path, modes, mode)
    remember = _strings(raw, "remember", path)
    if not failregex:
        raise FilterError(f"{path}: failregex: at least one regex is needed")
    for key, patterns in (("failregex", [] if remember else failregex), ("remember", remember)):
        for n, pattern in enumerate(patterns):
            if "<HOST>" not in pattern and "<ADDR>" not in pattern:
                raise FilterError(f"{path}: {key}[{n}]: no <HOST> or <ADDR> in {pattern!r}")
    ignoreregex = _entries(raw, "ignoreregex", path, modes, mode)
    nofail = _entries(raw, "nofail", path, modes, mode)
    return Filter(
        name=str(raw.get("name") or path.stem),
        description=str(raw.get("description", "")),
        programs=tuple(_strings(raw, "programs", path)),
        failregex=tuple(_compile(p, f"{path}: failregex[{n}]") for n, p in enumerate(failregex)),
        ignoreregex=tuple(
            _compile(p, f"{path}: ignoreregex[{n}]") for n, p in enumerate(ignoreregex)
        ),
        source=str(path),
        remember=tuple(_compile(p, f"{path}: remember[{n}]") for n, p in enumerate(remember)),
        nofail=tuple(_compile(p, f"{path}: nofail[{n}]") for n, p in enumerate(nofail)),
        written=tuple(failregex),
        modes=modes,
        mode=mode,
    )


def _strings(raw: dict[str, Any], key: str, path: Path) -> list[str]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FilterError(f"{path}: {key}: expected a list of strings")
    return value


def _entries(
    raw: dict[str, Any], key: str, path: Path, modes: tuple[str, ...], mode: str
) -> list[str]:
    """The regexes of ``key`` that apply in ``mode``: the plain ones, and the tables
    ``{regex, modes}`` that name it."""
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise FilterError(f"{path}: {key}: expected a list of regexes")
    chosen = []
    for n, entry in enumerate(value):
        if isinstance(entry, str):
            chosen.append(entry)
            continue
        where = f"{path}: {key}[{n}]"
        if not isinstance(entry, dict) or set(entry) != {"regex", "modes"}:
            raise FilterError(f"{where}: expected a regex or {{ regex = ..., modes = [...] }}")
        regex, only = entry["regex"], entry["modes"]
        if not isinstance(regex, str) or not isinstance(only, list) or not only:
            raise FilterError(f"{where}: regex is a string and modes a list of mode names")
        strange = [m for m in only if m not in modes]
        if strange:
            raise FilterError(f"{where}: mode {strange[0]!r} is not one of modes {list(modes)}")
        if mode in only:
            chosen.append(regex)
    return chosen


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(expand(pattern))
    except re.error as exc:
        raise FilterError(f"{where}: {exc} in {pattern!r}") from None


def shipped_filters() -> dict[str, Path]:
    """The shipped filters by name; FilterError (saying where it looked) when there are none."""
    try:
        return {p.stem: p for p in shipped.files("logs/*.toml", "log filters")}
    except shipped.MissingContent as exc:
        raise FilterError(str(exc)) from None


def find_filter(name: str, mode: str = "") -> Filter:
    """A shipped filter by name (``sshd``) or a filter file by path (which works also when
    the shipped ones are missing), for ``mode`` (its default when "")."""
    try:
        known = shipped_filters()
        choices = f"shipped ones are {', '.join(known)}"
    except FilterError as exc:
        known, choices = {}, str(exc)
    if name in known:
        return load_filter(known[name], mode)
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        return load_filter(path, mode)
    raise FilterError(f"no filter {name!r}: {choices}, or give a path")


def split_syslog(rest: str) -> tuple[str, str]:
    """(program, message) of a syslog line without its time; ("", rest) for other lines."""
    m = _SYSLOG.match(rest)
    if m is None:
        return "", rest
    return m.group("program"), rest[m.end() :]


def examine(filter_: Filter, line: str, now: float | None = None) -> Verdict:
    """What ``filter_`` makes of ``line`` (without its newline), on its own."""
    return Examiner(filter_).examine(line, now)


class Examiner:
    """Reads the lines of one log through a filter, in order (it remembers hosts for the
    failure lines that do not name theirs)."""

    def __init__(self, filter_: Filter) -> None:
        self.filter = filter_
        self.remembered = ""

    def examine(self, line: str, now: float | None = None) -> Verdict:
        """What the filter makes of a whole line: its time, then (when the filter names
        programs) its syslog header, then the message. A line without a syslog header is
        the daemon's own log (the jail chose the file), so it is not held to ``programs``."""
        try:
            ts, rest = timestamps.parse(line, now)
        except timestamps.NoTime:
            ts, rest = None, line
        if not self.filter.programs:
            return self._examine(rest, ts)
        program, message = split_syslog(rest)
        if not program:
            return self._examine(message, ts)
        return self.examine_message(program, message, ts)

    def examine_message(self, program: str, message: str, ts: float | None) -> Verdict:
        """What the filter makes of a message whose source has already split it from its
        program (a syslog receiver's TAG, the journal's SYSLOG_IDENTIFIER) and time."""
        if self.filter.programs and program.rsplit("/", 1)[-1] not in self.filter.programs:
            return Verdict("missed", ts)
        return self._examine(message, ts)

    def _examine(self, message: str, ts: float | None) -> Verdict:
        filter_ = self.filter
        for pattern in filter_.ignoreregex:
            if pattern.search(message):
                return Verdict("ignored", ts)
        for pattern in filter_.nofail:
            m = pattern.search(message)
            if m is not None:
                host = m.groupdict().get("host")
                return Verdict("noted", ts, normal_host(host) if host else "")
        for pattern in filter_.remember:
            m = pattern.search(message)
            if m is not None:
                self.remembered = normal_host(m.group("host"))
                return Verdict("missed", ts)
        for index, pattern in enumerate(filter_.failregex):
            m = pattern.search(message)
            if m is None:
                continue
            groups = m.groupdict()
            host = normal_host(groups["host"]) if groups.get("host") else self.remembered
            if not host:
                continue
            return Verdict("matched", ts, host, groups.get("user") or "", index)
        return Verdict("missed", ts)


# Cached: an attack comes from a few hundred hosts, each failing many times, and parsing an
# address with ipaddress costs more than all of a line's regexes.
@functools.lru_cache(maxsize=4096)
def normal_host(text: str) -> str:
    """An address in its usual form (``::ffff:1.2.3.4`` as ``1.2.3.4``), a host name as
    written; "" for what is neither (a name must have a letter)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text.lower() if any(c.isalpha() for c in text) else ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
