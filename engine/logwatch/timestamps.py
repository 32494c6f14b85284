"""The time a log line says it was written, in the formats the daemons we watch use: the line's
own time decides a jail's window, so replaying an old log gives the answer watching it did.

``parse`` returns (epoch seconds, the rest of the line). Formats: RFC 3164 syslog ("Nov 24
13:45:01", no year: the year that puts it closest before ``now``), ISO 8601 / RFC 5424
("2026-11-24T13:45:01.123456+00:00", a naive one is local time), "2026/11/24 13:45:01" (nginx),
"2026-11-24 13:45:01:" (lighttpd), "2026-11-24 13:45:01,123" (ProFTPD), ctime "Tue Nov 24
13:45:01 2026" (vsftpd), an epoch number followed by a colon (mosquitto), and a syslog time or
an epoch number after the process id ("[812] Nov 24 13:45:01": dropbear's own log, -E).
"""

from __future__ import annotations

import functools
import re
import time
from datetime import datetime, timedelta, timezone

_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTHS = {name: number for number, name in enumerate(_NAMES, 1)}

_SYSLOG = re.compile(r"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.\d+)? ")
_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?(?:,\d+)?:?\s+"
)
_SLASHED = re.compile(r"(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)\s+")
_CTIME = re.compile(
    r"(?:[A-Z][a-z]{2} )([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})\s+"
)
_EPOCH = re.compile(r"(\d{9,10})(?:\.\d+)?:\s+")
_BRACKETED = re.compile(r"\[([^\]]{10,40})\]\s+")
# Dropbear (-E) writes "[pid] " and then strftime's "%b %d %H:%M:%S", or the epoch seconds
# when localtime() fails.
_PID_FIRST = re.compile(r"\[\d{1,10}\] (?:(\d{9,10}) )?")


class NoTime(ValueError):
    """The line starts with no time we know."""


def parse(line: str, now: float | None = None) -> tuple[float, str]:
    """(epoch seconds, the rest of the line); NoTime when the line starts with no known time."""
    m = _ISO.match(line)
    if m:
        return _iso(m), line[m.end() :]
    m = _SYSLOG.match(line)
    if m:
        return _syslog(m, time.time() if now is None else now), line[m.end() :]
    m = _CTIME.match(line)
    if m:
        month, day, hh, mm, ss, year = m.groups()
        return _local(int(year), MONTHS[month.lower()], int(day), hh, mm, ss), line[m.end() :]
    m = _SLASHED.match(line)
    if m:
        year, month, day, hh, mm, ss = m.groups()
        return _local(int(year), int(month), int(day), hh, mm, ss), line[m.end() :]
    m = _EPOCH.match(line)
    if m:
        return float(m.group(1)), line[m.end() :]
    m = _PID_FIRST.match(line)
    if m:
        if m.group(1):
            return float(m.group(1)), line[m.end() :]
        stamp = _SYSLOG.match(line, m.end())
        if stamp:
            return _syslog(stamp, time.time() if now is None else now), line[stamp.end() :]
    m = _BRACKETED.match(line)
    if m:
        stamp = m.group(1)
        try:
            when = datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z")  # Apache/nginx access logs
        except ValueError:
            raise NoTime(f"no time we know at the start of the line: {line[:40]!r}") from None
        return when.timestamp(), line[m.end() :]
    raise NoTime(f"no time we know at the start of the line: {line[:40]!r}")


def _local(year: int, month: int, day: int, hh: str, mm: str, ss: str) -> float:
    try:
        return datetime(year, month, day, int(hh), int(mm), int(ss)).timestamp()
    except ValueError as exc:
        raise NoTime(f"not a date: {exc}") from None


def _iso(m: re.Match[str]) -> float:
    year, month, day, hh, mm, ss, fraction, zone = m.groups()
    try:
        when = datetime(int(year), int(month), int(day), int(hh), int(mm), int(ss))
    except ValueError as exc:
        raise NoTime(f"not a date: {exc}") from None
    seconds = float(fraction) if fraction else 0.0
    if zone is None:
        return when.timestamp() + seconds
    if zone == "Z":
        offset = timedelta(0)
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return when.replace(tzinfo=timezone(offset)).timestamp() + seconds


def _syslog(m: re.Match[str], now: float) -> float:
    month_name, day, hh, mm, ss = m.groups()
    zone = time.tzname  # what time.tzset() changes: a new zone must not hit the caches' entries
    year, second = _year(zone, now), int(ss)
    stamp = _minute(zone, year, month_name, day, hh, mm) + second
    if second > 59:
        raise NoTime(f"not a date: second must be in 0..59, not {second}")
    # No year in the line: a time more than a day ahead of now is from last year (a December
    # line read in January).
    if stamp > now + 86400:
        stamp = _minute(zone, year - 1, month_name, day, hh, mm) + second
    return stamp


# The two caches below make a syslog time cost two dict look-ups: a log writes many lines a
# minute, and whoever reads it passes the same ``now`` for many lines.
@functools.lru_cache(maxsize=64)
def _year(zone: tuple[str, str], now: float) -> int:
    return time.localtime(now).tm_year


@functools.lru_cache(maxsize=4096)
def _minute(zone: tuple[str, str], year: int, month_name: str, day: str, hh: str, mm: str) -> float:
    """The epoch seconds of a local minute's start. A second within it is this plus its
    seconds: UTC offsets change only at the start of a minute (daylight saving time too)."""
    month = MONTHS.get(month_name.lower())
    if month is None:
        raise NoTime(f"not a month: {month_name!r}")
    return _local(year, month, int(day), hh, mm, "0")
