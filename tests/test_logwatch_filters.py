"""Log filters on lines in the daemons' real formats (written from their sources and manuals):
which lines are failures, of which host and user, which must not match, and ``iotsec logs
test`` counting a file like fail2ban-regex does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.logwatch import timestamps
from engine.logwatch.filters import (
    Examiner,
    FilterError,
    examine,
    find_filter,
    load_filter,
    split_syslog,
)
from tests.conftest import ROOT

# An instant after every syslog line below, so their year is this one.
NOW = datetime(2026, 11, 24, 23, 0, 0).timestamp()

SSHD_FAILURES = [
    ("Nov 24 13:45:01 gw sshd[1234]: Failed password for root from 203.0.113.5 port 52514 ssh2",
     "203.0.113.5", "root"),
    ("Nov 24 13:45:02 gw sshd[1234]: Failed password for invalid user admin from 203.0.113.5 "
     "port 52515 ssh2", "203.0.113.5", "admin"),
    ("Nov 24 13:45:03 gw sshd[1235]: Invalid user oracle from 2001:db8::7 port 40022",
     "2001:db8::7", "oracle"),
    ("Nov 24 13:45:05 gw sshd[1237]: error: maximum authentication attempts exceeded for root "
     "from 203.0.113.9 port 2200 ssh2 [preauth]", "203.0.113.9", "root"),
    ("Nov 24 13:45:09 gw sshd[1241]: User bob from 198.51.100.5 not allowed because not listed "
     "in AllowUsers", "198.51.100.5", "bob"),
    ("Nov 24 13:45:11 gw sshd-session[1243]: Failed password for root from 203.0.113.5 port "
     "52516 ssh2", "203.0.113.5", "root"),
    ("Nov 24 13:45:12 gw sshd[1244]: Failed keyboard-interactive/pam for invalid user pi from "
     "203.0.113.10 port 1022 ssh2", "203.0.113.10", "pi"),
    # PAM through OpenSSH (Linux, macOS: "illegal user"), old and BSD forms, tcpwrappers,
    # Solaris/illumos's message id, a JSch client's disconnect without a port.
    ("Nov 24 13:45:15 gw sshd[1247]: error: PAM: Authentication failure for root from "
     "203.0.113.12", "203.0.113.12", "root"),
    ("Nov 24 13:45:16 mac sshd[1248]: error: PAM: authentication error for illegal user bob "
     "from 203.0.113.13", "203.0.113.13", "bob"),
    ("Nov 24 13:45:17 bsd sshd[1249]: ROOT LOGIN REFUSED FROM 203.0.113.14", "203.0.113.14", ""),
    ("Nov 24 13:45:18 gw sshd[1250]: refused connect from scanner.example.net (203.0.113.15)",
     "203.0.113.15", ""),
    ("Nov 24 13:45:19 sol sshd[1251]: [ID 800047 auth.info] Failed password for root from "
     "203.0.113.16 port 40111 ssh2", "203.0.113.16", "root"),
    ("Nov 24 13:45:20 gw sshd[1252]: Illegal user test from 203.0.113.17", "203.0.113.17",
     "test"),
    ("Nov 24 13:45:21 gw sshd[1253]: Received disconnect from 203.0.113.18: 3: "
     "com.jcraft.jsch.JSchException: Auth fail [preauth]", "203.0.113.18", ""),
    ("Nov 24 13:45:22 gw sshd[1254]: User not known to the underlying authentication module "
     "for nobody from 203.0.113.19", "203.0.113.19", "nobody"),
    # A user name that tries to name another address: the address is the one at the end.
    ("Nov 24 13:45:14 gw sshd[1246]: Invalid user x from 10.0.0.1 from 203.0.113.11 port 22",
     "203.0.113.11", "x from 10.0.0.1"),
]  # fmt: skip

# The same attempt told again (sshd writes "Failed ..." for it too): noted, not counted twice.
SSHD_NOTED = [
    ("2026-11-24T13:45:04.123456+00:00 gw sshd[1236]: pam_unix(sshd:auth): authentication "
     "failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=attacker.example.net  user=root",
     "attacker.example.net", "root"),
    ("Nov 24 13:45:06 gw sshd[1238]: Disconnecting authenticating user root 203.0.113.9 port "
     "2200: Too many authentication failures [preauth]", "203.0.113.9", "root"),
]  # fmt: skip

# What fail2ban's normal mode does not count, and the modes that do (sshd's mode = ...): a
# failed public key (a client offers its keys in turn: counting them bans a user whose third
# key works), connections closed before authentication, algorithms nobody agreed on.
SSHD_BY_MODE = [
    ("Nov 24 13:45:07 gw sshd[1239]: Connection closed by invalid user test 198.51.100.3 port "
     "39990 [preauth]", "198.51.100.3", {"ddos", "aggressive"}),
    ("Nov 24 13:45:08 gw sshd[1240]: Failed publickey for git from ::ffff:198.51.100.4 port "
     "50001 ssh2: RSA SHA256:Lz1hV2rXbSxUvB", "198.51.100.4", {"aggressive"}),
    ("Nov 24 13:45:10 gw sshd[1242]: Unable to negotiate with 198.51.100.6 port 41234: no "
     "matching key exchange method found. Their offer: diffie-hellman-group1-sha1 [preauth]",
     "198.51.100.6", {"extra", "aggressive"}),
    ("Nov 24 13:45:13 gw sshd[1245]: Disconnected from invalid user ubnt 2001:db8:0:1::99 port "
     "51000 [preauth]", "2001:db8:0:1::99", {"ddos", "aggressive"}),
    ("Nov 24 13:45:23 gw sshd[1255]: Connection closed by 203.0.113.20 port 22 [preauth]",
     "203.0.113.20", {"ddos", "aggressive"}),
    ("Nov 24 13:45:24 gw sshd[1256]: Did not receive identification string from 203.0.113.21 "
     "port 40000", "203.0.113.21", {"ddos", "aggressive"}),
    ("Nov 24 13:45:25 gw sshd[1257]: Received disconnect from 203.0.113.22 port 40001:14: No "
     "supported authentication methods available [preauth]", "203.0.113.22",
     {"extra", "aggressive"}),
]  # fmt: skip
MODES = ("normal", "ddos", "extra", "aggressive")

SSHD_NOT_FAILURES = [
    "Nov 24 13:46:00 gw sshd[1300]: Accepted password for alice from 203.0.113.20 port 50000 ssh2",
    "Nov 24 13:46:01 gw sshd[1300]: Accepted publickey for alice from 2001:db8::20 port 50000 "
    "ssh2: ED25519 SHA256:x",
    "Nov 24 13:46:02 gw sshd[1300]: pam_unix(sshd:session): session opened for user alice(uid="
    "1000) by (uid=0)",
    "Nov 24 13:46:03 gw sshd[1300]: Received disconnect from 203.0.113.20 port 50000:11: "
    "disconnected by user",
    "Nov 24 13:46:04 gw sshd[1300]: Disconnected from user alice 203.0.113.20 port 50000",
    "Nov 24 13:46:05 gw CRON[1301]: Failed password for root from 203.0.113.5 port 1 ssh2",
    "Nov 24 13:46:06 gw sshd[1302]: Server listening on 0.0.0.0 port 22.",
    "Nov 24 13:46:07 gw sshd[1303]: Connection closed by 203.0.113.21 port 50001",
]


WEB_AND_FTP = [
    ("web-auth", '2026/11/24 13:53:00 [error] 812#812: *41 user "admin": password mismatch, '
     'client: 203.0.113.5, server: _, request: "GET / HTTP/1.1", host: "10.77.0.40"',
     "203.0.113.5", "admin"),
    ("web-auth", '2026/11/24 13:53:01 [error] 812#812: *42 user "root" was not found in '
     '"/etc/nginx/.htpasswd", client: 2001:db8::5, server: cam.example, request: "GET /api '
     'HTTP/1.1"', "2001:db8::5", "root"),
    ("web-auth", "2026-11-24 13:53:02: (mod_auth.c.853) password doesn't match for /cgi-bin/ "
     "username: admin IP: 198.51.100.8", "198.51.100.8", "admin"),
    ("web-auth", "2026-11-24 13:53:03: (mod_auth.c.853) password doesn't match for /admin "
     "username: ubnt, IP: 198.51.100.9", "198.51.100.9", "ubnt"),
    ("web-auth", "Nov 24 13:53:04 OpenWrt luci: failed login on / for root from 192.0.2.77",
     "192.0.2.77", "root"),
    ("ftp", 'Tue Nov 24 13:54:00 2026 [pid 3311] [anonymous] FAIL LOGIN: Client "203.0.113.5"',
     "203.0.113.5", "anonymous"),
    ("ftp", 'Tue Nov 24 13:54:01 2026 [pid 3312] [admin] FAIL LOGIN: Client '
     '"::ffff:198.51.100.3"', "198.51.100.3", "admin"),
    ("ftp", "Nov 24 13:54:02 nas vsftpd[3313]: pam_unix(vsftpd:auth): authentication failure; "
     "logname= uid=0 euid=0 tty=ftp ruser=admin rhost=ftp-scanner.example.org",
     "ftp-scanner.example.org", ""),
    ("ftp", "Nov 24 13:54:03 nas proftpd[4410]: nas.example (203.0.113.5[203.0.113.5]) - USER "
     "admin (Login failed): Incorrect password", "203.0.113.5", "admin"),
    ("ftp", "2026-11-24 13:54:04,123 nas proftpd[4411] nas.example (2001:db8::6[2001:db8::6]): "
     "USER guest: no such user found from 2001:db8::6 [2001:db8::6] to 10.0.0.5:21",
     "2001:db8::6", "guest"),
]  # fmt: skip

WEB_AND_FTP_NOT_FAILURES = [
    ("web-auth", '2026/11/24 13:55:00 [error] 812#812: *50 open() "/usr/share/nginx/html/favicon'
     '.ico" failed (2: No such file or directory), client: 203.0.113.5, server: _'),
    ("web-auth", "Nov 24 13:55:01 OpenWrt luci: accepted login on / for root from 192.0.2.77"),
    ("ftp", 'Tue Nov 24 13:55:02 2026 [pid 3320] [admin] OK LOGIN: Client "203.0.113.5"'),
    ("ftp", "Nov 24 13:55:03 nas proftpd[4420]: nas.example (203.0.113.5[203.0.113.5]) - USER "
     "admin: Login successful."),
]  # fmt: skip


@pytest.mark.parametrize(("name", "line", "host", "user"), WEB_AND_FTP)
def test_web_and_ftp_failures(name: str, line: str, host: str, user: str) -> None:
    verdict = examine(find_filter(name), line, NOW)
    assert (verdict.kind, verdict.host, verdict.user) == ("matched", host, user)


@pytest.mark.parametrize(("name", "line"), WEB_AND_FTP_NOT_FAILURES)
def test_web_and_ftp_lines_that_are_not_failures(name: str, line: str) -> None:
    assert examine(find_filter(name), line, NOW).kind == "missed"


def test_mosquitto_failures_take_the_host_of_the_connection_before(tmp_path: Path) -> None:
    """Mosquitto 2.x logs the refusal without the address, after the line that has it."""
    log = tmp_path / "mosquitto.log"
    log.write_text(
        "1795873501: mosquitto version 2.0.15 running\n"
        "1795873502: New connection from 203.0.113.5:37076 on port 1883.\n"
        "1795873502: Client <unknown> disconnected, not authorised.\n"
        "1795873503: New connection from ::1:44852 on port 8883.\n"
        "1795873503: New client connected from ::1:44852 as sensor-1 (p2, c1, k60, u'iot').\n"
        "1795873504: New connection from 2001:db8::9:50000 on port 1883.\n"
        "1795873504: Client auto-7F81B465 disconnected, not authorised.\n"
        "1795873505: Client sensor-1 disconnected.\n"
    )
    done = iotsec("logs", "test", str(log), "mosquitto", "--json")
    report = json.loads(done.stdout)
    assert (report["lines"], report["matched"], report["missed"]) == (8, 2, 6)
    assert report["hosts"] == {"203.0.113.5": 1, "2001:db8::9": 1}
    alone = examine(find_filter("mosquitto"), "1795873504: Client x disconnected, not authorised.")
    assert alone.kind == "missed", "no connection line before it: no host to blame"


def test_the_kernel_log_of_our_own_drops() -> None:
    """nf_log's format, as syslog (with the kernel's clock) and the journal write it."""
    chosen = find_filter("iotsec-firewall")
    v4 = ("Nov 24 13:52:00 gw kernel: [ 8123.456789] iotsec-ban: IN=eth0 OUT= MAC=02:00:00:00:00"
          ":01:02:00:00:00:00:02:08:00 SRC=203.0.113.5 DST=10.77.0.40 LEN=60 TOS=0x00 PREC=0x00 "
          "TTL=63 ID=4242 DF PROTO=TCP SPT=40022 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0"
          )  # fmt: skip
    v6 = ("2026-11-24T13:52:01+00:00 gw kernel: iotsec-ban: IN=eth0 OUT= MAC=33:33:00:00:00:01 "
          "SRC=2001:0db8:0000:0000:0000:0000:0000:0005 DST=fd00:0000:0000:0000:0000:0000:0000:0001"
          " LEN=64 TC=0 HOPLIMIT=64 FLOWLBL=0 PROTO=UDP SPT=5353 DPT=5353 LEN=24")  # fmt: skip
    assert examine(chosen, v4, NOW).host == "203.0.113.5"
    assert examine(chosen, v6, NOW).host == "2001:db8::5"
    other = v4.replace("iotsec-ban: ", "[UFW BLOCK] ")
    assert examine(chosen, other, NOW).kind == "missed", "another firewall's log"


@pytest.mark.parametrize(("line", "host", "user"), SSHD_FAILURES)
def test_sshd_failures(line: str, host: str, user: str) -> None:
    verdict = examine(find_filter("sshd"), line, NOW)
    assert (verdict.kind, verdict.host, verdict.user) == ("matched", host, user)


@pytest.mark.parametrize(("line", "host", "user"), SSHD_NOTED)
def test_sshd_lines_that_repeat_a_failure_are_noted(line: str, host: str, user: str) -> None:
    verdict = examine(find_filter("sshd"), line, NOW)
    assert (verdict.kind, verdict.host) == ("noted", host)


@pytest.mark.parametrize("line", SSHD_NOT_FAILURES)
def test_sshd_lines_that_are_not_failures(line: str) -> None:
    for mode in MODES:
        assert examine(find_filter("sshd", mode), line, NOW).kind == "missed", mode


@pytest.mark.parametrize(("line", "host", "counted"), SSHD_BY_MODE)
def test_sshd_modes_count_what_fail2bans_modes_count(line: str, host: str,
                                                    counted: set[str]) -> None:  # fmt: skip
    """Counted in the modes that count it; otherwise noted (understood, not counted), or
    missed where even fail2ban's filter has no regex for it in that mode."""
    assert find_filter("sshd").mode == "normal"
    for mode in MODES:
        verdict = examine(find_filter("sshd", mode), line, NOW)
        if mode in counted:
            assert (verdict.kind, verdict.host) == ("matched", host), mode
        else:
            assert verdict.kind in ("noted", "missed"), mode
    for line_, _, _ in SSHD_FAILURES:
        assert all(examine(find_filter("sshd", m), line_, NOW).kind == "matched" for m in MODES)


def test_a_filters_modes_are_checked(tmp_path: Path) -> None:
    with pytest.raises(FilterError, match="no mode 'paranoid': its modes are normal, ddos"):
        find_filter("sshd", "paranoid")
    with pytest.raises(FilterError, match="no mode 'aggressive': it has no modes"):
        find_filter("dropbear", "aggressive")
    bad = tmp_path / "bad.toml"
    bad.write_text('modes = ["a"]\nfailregex = [{ regex = "x <HOST>", modes = ["b"] }]\n')
    with pytest.raises(FilterError, match=r"failregex\[0\]: mode 'b' is not one of modes"):
        find_filter(str(bad))
    bad.write_text('modes = ["a"]\nfailregex = [{ regex = "x <HOST>" }]\n')
    with pytest.raises(FilterError, match=r"failregex\[0\]: expected a regex or"):
        find_filter(str(bad))


# -- messages their source has already split (a syslog receiver, the journal) ----------------

# The journal's SYSLOG_IDENTIFIER and MESSAGE of OpenSSH entries (a syslog receiver's TAG and
# MSG are the same), with the time the source gave or none.
SSHD_MESSAGES = [
    ("sshd", "Failed password for root from 203.0.113.5 port 52514 ssh2", 1795873501.0,
     "matched", "203.0.113.5"),
    ("sshd-session", "Invalid user oracle from 2001:db8::7 port 40022", None,
     "matched", "2001:db8::7"),
    ("/usr/sbin/sshd", "Failed password for git from ::ffff:198.51.100.4 port 50001 ssh2",
     1795873502.5, "matched", "198.51.100.4"),
    ("sshd", "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
     "rhost=203.0.113.9  user=root", 1795873503.0, "noted", "203.0.113.9"),
    ("sshd", "Accepted publickey for alice from 2001:db8::20 port 50000 ssh2: ED25519 SHA256:x",
     1795873504.0, "missed", ""),
    ("CRON", "Failed password for root from 203.0.113.5 port 1 ssh2", 1795873505.0, "missed", ""),
]  # fmt: skip


@pytest.mark.parametrize(("program", "message", "ts", "kind", "host"), SSHD_MESSAGES)
def test_a_message_split_by_its_source(
    program: str, message: str, ts: float | None, kind: str, host: str
) -> None:
    """The program is the filter's by its basename; the time is the one the source gave."""
    verdict = Examiner(find_filter("sshd")).examine_message(program, message, ts)
    assert (verdict.kind, verdict.host, verdict.ts) == (kind, host, ts)


def test_a_message_gets_the_verdict_of_its_whole_line() -> None:
    lines = [line for line, _, _ in SSHD_FAILURES + SSHD_NOTED] + SSHD_NOT_FAILURES
    for line in lines:
        ts, rest = timestamps.parse(line, NOW)
        program, message = split_syslog(rest)
        whole = Examiner(find_filter("sshd")).examine(line, NOW)
        alone = Examiner(find_filter("sshd")).examine_message(program, message, ts)
        assert (alone.kind, alone.ts, alone.host, alone.user, alone.regex) == (
            whole.kind, whole.ts, whole.host, whole.user, whole.regex
        ), line  # fmt: skip


def test_headers_of_busybox_and_openwrt_and_lines_without_one() -> None:
    """BusyBox syslogd and OpenWrt's logread write the facility and level before the program;
    a file line with no header is the daemon's own log, whatever programs the filter names,
    while a received message without a program is no daemon's."""
    assert split_syslog("cam authpriv.warn dropbear[812]: Bad") == ("dropbear", "Bad")
    assert split_syslog("authpriv.warn dropbear[812]: Bad") == ("dropbear", "Bad")
    assert split_syslog("vm auth.warn login[16990]: invalid") == ("login", "invalid")
    assert split_syslog("gw.lan sshd[1]: Failed") == ("sshd", "Failed")
    message = "Failed password for root from 203.0.113.5 port 52514 ssh2"
    own = examine(find_filter("sshd"), f"2026-11-24T13:45:01Z {message}", NOW)
    assert (own.kind, own.host) == ("matched", "203.0.113.5")
    received = Examiner(find_filter("sshd")).examine_message("", message, None)
    assert received.kind == "missed"


def test_messages_remember_the_host_of_the_message_before() -> None:
    """Mosquitto through the journal: its refusal names no address, the connection before does."""
    examiner = Examiner(find_filter("mosquitto"))
    connection = "New connection from 203.0.113.5:37076 on port 1883."
    assert examiner.examine_message("mosquitto", connection, None).kind == "missed"
    refusal = examiner.examine_message(
        "mosquitto", "Client <unknown> disconnected, not authorised.", None
    )
    assert (refusal.kind, refusal.host) == ("matched", "203.0.113.5")


def test_every_shipped_filter_loads() -> None:
    from engine.logwatch.filters import shipped_filters

    names = shipped_filters()
    assert "sshd" in names
    for path in names.values():
        assert load_filter(path).failregex


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('failregex = ["^Failed from <HOST"]', "no <HOST> or <ADDR>"),
        ('failregex = ["^(unclosed <HOST>"]', "failregex[0]: missing ), unterminated subpattern"),
        ('failregex = ["<HOST>"]\nbantime = 3', "unknown key 'bantime'"),
        ("failregex = [", "not valid TOML"),
        ('description = "nothing"', "at least one regex is needed"),
    ],
)
def test_a_bad_filter_names_the_file_and_the_problem(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(FilterError) as caught:
        load_filter(path)
    assert str(caught.value).startswith(str(path)) and why in str(caught.value)


# -- times -----------------------------------------------------------------------------------


def test_times_in_the_formats_daemons_write() -> None:
    utc = datetime(2026, 11, 24, 13, 45, 1, tzinfo=UTC).timestamp()
    assert timestamps.parse("2026-11-24T13:45:01Z x")[0] == utc
    assert timestamps.parse("2026-11-24T15:45:01.5+02:00 x")[0] == utc + 0.5
    assert timestamps.parse("1795873501: mosquitto")[0] == 1795873501.0
    assert timestamps.parse("[24/Nov/2026:13:45:01 +0000] GET")[0] == utc
    local = datetime(2026, 11, 24, 13, 45, 1).timestamp()
    assert timestamps.parse("Nov 24 13:45:01 gw sshd", NOW) == (local, "gw sshd")
    assert timestamps.parse("2026/11/24 13:45:01 [error] 7#7:")[0] == local
    assert timestamps.parse("Tue Nov 24 13:45:01 2026 [pid 3] FAIL")[0] == local
    # Dropbear's own log (-E): the pid first; the epoch seconds when localtime() failed.
    assert timestamps.parse("[812] Nov 24 13:45:01 Bad", NOW) == (local, "Bad")
    assert timestamps.parse("[812] 1795873501 Bad") == (1795873501.0, "Bad")
    # No year in syslog: a December line read in January is from the year before.
    january = datetime(2027, 1, 2).timestamp()
    assert (
        timestamps.parse("Dec 31 23:59:59 gw x", january)[0]
        == datetime(2026, 12, 31, 23, 59, 59).timestamp()
    )
    for line in ("hello world", "[812] hello", "[812] 42 hello"):
        with pytest.raises(timestamps.NoTime):
            timestamps.parse(line)


def test_syslog_times_read_in_a_burst() -> None:
    """Lines of one minute, read again with another ``now``: each keeps its own second, and
    the year still follows ``now``."""
    minute = datetime(2026, 11, 24, 13, 45).timestamp()
    seconds = [timestamps.parse(f"Nov 24 13:45:{s:02d} gw x", NOW)[0] - minute for s in range(60)]
    assert seconds == list(range(60))
    last_year = datetime(2025, 12, 31, 23, 59, 30).timestamp()
    assert timestamps.parse("Dec 31 23:59:30 gw x", NOW)[0] == last_year
    january = datetime(2026, 1, 2).timestamp()
    assert timestamps.parse("Dec 31 23:59:30 gw x", january)[0] == last_year
    december = datetime(2027, 12, 31, 23, 59, 45).timestamp()
    assert timestamps.parse("Dec 31 23:59:30 gw x", december)[0] == (
        datetime(2027, 12, 31, 23, 59, 30).timestamp()
    )
    for line in ("Dec 31 23:59:60 gw x", "Feb 30 10:00:00 gw x", "Foo 12 10:00:00 gw x"):
        with pytest.raises(timestamps.NoTime):
            timestamps.parse(line, NOW)


def test_syslog_times_follow_a_change_of_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A syslog time is local time: read again after the zone changed, it is another instant."""
    line = "Jul 14 12:00:00 gw sshd[1]: x"
    try:
        for zone, hours in (("UTC", 0), ("America/New_York", 4), ("UTC", 0)):
            monkeypatch.setenv("TZ", zone)
            time.tzset()
            expected = datetime(2026, 7, 14, 12, tzinfo=UTC).timestamp() + hours * 3600
            assert timestamps.parse(line, NOW)[0] == expected, zone
    finally:
        monkeypatch.undo()
        time.tzset()


# -- iotsec logs test ------------------------------------------------------------------------


def iotsec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)  # fmt: skip


def test_logs_test_counts_like_fail2ban_regex(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    noted = [line for line, _, _ in SSHD_NOTED]
    lines = [line for line, _, _ in SSHD_FAILURES] + noted + SSHD_NOT_FAILURES
    log.write_bytes(("\n".join(lines) + "\n").encode() + b"Nov 24 13:47:00 gw sshd[9]: \xff\xfe\n")
    done = iotsec("logs", "test", str(log), "sshd", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    counts = [report[k] for k in ("lines", "matched", "missed", "ignored", "noted")]
    assert counts == [len(lines) + 1, len(SSHD_FAILURES), len(SSHD_NOT_FAILURES) + 1, 0,
                      len(noted)]  # fmt: skip
    assert report["mode"] == "normal"
    assert report["hosts"]["203.0.113.5"] == 3 and "attacker.example.net" not in report["hosts"]
    assert sum(report["hosts"].values()) == len(SSHD_FAILURES)
    assert sum(r["hits"] for r in report["failregex"]) == len(SSHD_FAILURES)
    assert report["banned"] == []
    banned = json.loads(iotsec("logs", "test", str(log), "sshd", "--json", "--maxretry", "3",
                               "--findtime", "1m").stdout)["banned"]  # fmt: skip
    assert banned == ["203.0.113.5"]

    by_mode = tmp_path / "modes.log"
    by_mode.write_text("".join(f"{line}\n" for line, _, _ in SSHD_BY_MODE))
    for mode in MODES:
        report = json.loads(iotsec("logs", "test", str(by_mode), "sshd", "--mode", mode,
                                   "--json").stdout)  # fmt: skip
        assert report["mode"] == mode
        assert report["matched"] == sum(mode in counted for _, _, counted in SSHD_BY_MODE)
    refused = iotsec("logs", "test", str(by_mode), "sshd", "--mode", "paranoid")
    assert refused.returncode == 1 and "no mode 'paranoid'" in refused.stderr
    text = iotsec("logs", "test", str(log), "sshd", "--print-missed").stdout
    assert f"Lines: {len(lines) + 1} lines, 0 ignored, {len(SSHD_FAILURES)} matched" in text
    assert "Server listening on 0.0.0.0 port 22." in text, "a missed line"


def test_logs_test_says_what_is_wrong(tmp_path: Path) -> None:
    done = iotsec("logs", "test", str(tmp_path / "nope.log"), "sshd")
    assert done.returncode == 1 and "nope.log: No such file or directory" in done.stderr
    log = tmp_path / "a.log"
    log.write_text("x\n")
    done = iotsec("logs", "test", str(log), "no-such-filter")
    assert "no filter 'no-such-filter': shipped ones are" in done.stderr


def test_a_window_is_decided_by_the_lines_times_not_the_reading(tmp_path: Path) -> None:
    """Five failures an hour apart never ban with a 10 minute window, however fast read."""
    log = tmp_path / "auth.log"
    log.write_text("".join(
        f"2026-11-24T{10 + n:02d}:00:00Z gw sshd[1]: Invalid user u from 203.0.113.50 port 22\n"
        for n in range(5)
    ))  # fmt: skip
    started = time.monotonic()
    report = json.loads(iotsec("logs", "test", str(log), "sshd", "--json").stdout)
    assert time.monotonic() - started < 30
    assert report["hosts"] == {"203.0.113.50": 5} and report["banned"] == []
