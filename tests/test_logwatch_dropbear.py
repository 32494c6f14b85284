"""The dropbear filter on the lines dropbear writes: its own log (-E, "[pid] Dec 07 23:19:54
message") and syslog (rsyslog, BusyBox syslogd, OpenWrt's logread), IPv4 and IPv6 peers, the
message texts of 0.52 to 2026.94; ``iotsec logs test`` on real files; and a real dropbear on
loopback whose failed logins reach a real engine's jail."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine.logwatch.filters import Examiner, examine, find_filter
from tests.conftest import DATA, ROOT, require_tool, start_engine, wait_for
from tests.test_logwatch_engine import log_alerts

LOGS = DATA / "logs"
# An instant after every line below, so that their syslog times fall in 2026.
NOW = datetime(2026, 12, 8, 12, 0).timestamp()


def at(stamp: str) -> float:
    """The local time of a line's "Dec 07 23:19:54"."""
    return datetime.strptime(f"2026 {stamp}", "%Y %b %d %H:%M:%S").timestamp()


# Real lines of tests/data/logs/dropbear-stderr.log (Dropbear 2022.83 -E), one of each failure
# from each address: (line, host, user).
REAL_FAILURES = [
    ("[29484] Dec 07 23:19:54 Bad password attempt for 'camuser' from 127.0.0.1:35440",
     "127.0.0.1", "camuser"),
    ("[29899] Dec 07 23:20:12 Bad password attempt for 'camuser' from ::1:41774",
     "::1", "camuser"),
    ("[29747] Dec 07 23:20:05 Too-long password attempt for 'camuser' from 127.0.0.1:37782",
     "127.0.0.1", "camuser"),
    ("[30188] Dec 07 23:20:23 Too-long password attempt for 'camuser' from ::1:55546",
     "::1", "camuser"),
    ("[29788] Dec 07 23:20:09 Pubkey auth bad signature for 'camuser' with key SHA256:FUWh2aGR"
     "zPZpofbe6egpiHjYYnlXNdEIi7eF9oP4Tvo from 127.0.0.1:37798", "127.0.0.1", "camuser"),
    ("[30242] Dec 07 23:20:26 Pubkey auth bad signature for 'camuser' with key SHA256:FUWh2aGR"
     "zPZpofbe6egpiHjYYnlXNdEIi7eF9oP4Tvo from ::1:55560", "::1", "camuser"),
    ("[29484] Dec 07 23:19:57 Exit before auth from <127.0.0.1:35440>: (user 'camuser', 10 "
     "fails): Max auth tries reached - user 'camuser'", "127.0.0.1", "camuser"),
    ("[29899] Dec 07 23:20:14 Exit before auth from <::1:41774>: (user 'camuser', 10 fails): "
     "Max auth tries reached - user 'camuser'", "::1", "camuser"),
    # A nonexistent user: the line that says so has no address, its connection's end has.
    ("[29596] Dec 07 23:20:00 Exit before auth from <127.0.0.1:35454>: Max auth tries reached"
     " - user 'is invalid'", "127.0.0.1", ""),
    ("[30018] Dec 07 23:20:18 Exit before auth from <::1:41780>: Max auth tries reached - user"
     " 'is invalid'", "::1", ""),
    # root refused by -w: its tries are logged without an address.
    ("[29652] Dec 07 23:20:04 Exit before auth from <127.0.0.1:37766>: (user 'root', 10 "
     "fails): Max auth tries reached - user 'root'", "127.0.0.1", "root"),
    ("[30107] Dec 07 23:20:21 Exit before auth from <::1:41788>: (user 'root', 10 fails): Max "
     "auth tries reached - user 'root'", "::1", "root"),
    # One wrong password, then the client gave up.
    ("[29683] Dec 07 23:20:05 Exit before auth from <127.0.0.1:37778>: (user 'camuser', 1 "
     "fails): Exited normally", "127.0.0.1", "camuser"),
    ("[30177] Dec 07 23:20:22 Exit before auth from <::1:55534>: (user 'camuser', 1 fails): "
     "Exited normally", "::1", "camuser"),
]  # fmt: skip

# Real lines of the same file that are not failures.
REAL_NOT_FAILURES = [
    "[29481] Dec 07 23:19:54 Not backgrounding",
    "[29484] Dec 07 23:19:54 Child connection from 127.0.0.1:35440",
    "[29596] Dec 07 23:19:57 Login attempt for nonexistent user",
    "[29652] Dec 07 23:20:01 root login rejected",
    "[29792] Dec 07 23:20:09 Exit before auth from <127.0.0.1:44614>: (user 'camuser', 0 fails):"
    " Exited normally",
    "[29856] Dec 07 23:20:10 Pubkey auth succeeded for 'camuser' with ssh-ed25519 key SHA256:FU"
    "Wh2aGRzPZpofbe6egpiHjYYnlXNdEIi7eF9oP4Tvo from 127.0.0.1:44620",
    "[29856] Dec 07 23:20:10 Exit (camuser) from <127.0.0.1:44620>: Disconnect received",
    "[30283] Dec 07 23:20:28 Password auth succeeded for 'camuser' from ::1:55582",
    "[30283] Dec 07 23:20:28 Exit (camuser) from <::1:55582>: Exited normally",
    "[30289] Dec 07 23:20:29 Exit before auth from <::1:55598>: Exited normally",
    "[29481] Dec 07 23:20:30 Early exit: Terminated by signal",
]

# Written from dropbear's source at the tags named (mkj/dropbear), not captured: the texts of
# other versions, and the syslog header of OpenWrt's logread (ubox log/logread.c).
OTHER_VERSIONS = [
    # 0.52 (2008), still on old cameras: lower case.
    ("Nov 24 13:50:01 cam dropbear[801]: bad password attempt for 'admin' from 203.0.113.5:512",
     "203.0.113.5", "admin"),
    ("Nov 24 13:50:02 cam dropbear[801]: exit before auth (user 'admin', 10 fails): Max auth "
     "tries reached - user 'admin' from 203.0.113.5:512", "203.0.113.5", "admin"),
    # 2014.63 to 2019.78: the exits that name the peer name it at the end.
    ("Nov 24 13:50:03 cam dropbear[812]: Login attempt for nonexistent user from "
     "198.51.100.7:60000", "198.51.100.7", ""),
    ("Nov 24 13:50:04 cam dropbear[813]: Exit before auth (user 'root', 10 fails): Max auth "
     "tries reached - user 'root' from 2001:db8::5:40000", "2001:db8::5", "root"),
    ("Nov 24 13:50:05 cam dropbear[814]: Exit before auth: Max auth tries reached - user 'is "
     "invalid' from 198.51.100.8:60001", "198.51.100.8", ""),
    ("Nov 24 13:50:06 cam dropbear[815]: Client trying multiple usernames from 198.51.100.9:1022",
     "198.51.100.9", ""),
    ("Nov 24 13:50:07 cam dropbear[816]: Exit before auth (user 'admin', 1 fails): Client "
     "trying multiple usernames from 198.51.100.10:1023", "198.51.100.10", "admin"),
    ("Nov 24 13:50:08 cam dropbear[817]: Exit before auth: Attempted username with a null byte "
     "from 198.51.100.11:1024", "198.51.100.11", ""),
    ("Nov 24 13:50:09 cam dropbear[818]: Login attempt with wrong user admin from "
     "198.51.100.12:1025", "198.51.100.12", "admin"),
    ("Nov 24 13:50:10 cam dropbear[819]: Pubkey auth bad signature for 'git' with key md5 "
     "7f:00:aa:01 from 203.0.113.6:2222", "203.0.113.6", "git"),
    # A PAM build (2018.76 on names a user that does not exist so).
    ("Nov 24 13:50:11 cam dropbear[820]: Bad PAM password attempt for '<invalid username>' "
     "from 203.0.113.7:2223", "203.0.113.7", "<invalid username>"),
    # 2020.79 on: the exit names the peer first.
    ("[821] Nov 24 13:50:12 Exit before auth from <198.51.100.13:1026>: Client trying multiple "
     "usernames", "198.51.100.13", ""),
    ("[822] Nov 24 13:50:13 Exit before auth from <198.51.100.14:1027>: (user 'root', 0 fails):"
     " Client trying multiple usernames", "198.51.100.14", "root"),
    # 2024.86 on: the nonexistent user's line has its address again.
    ("[823] Nov 24 13:50:14 Login attempt for nonexistent user from 2001:db8::6:40001",
     "2001:db8::6", ""),
    # 2026.94 on: an IPv6 peer in brackets.
    ("[824] Nov 24 13:50:15 Bad password attempt for 'root' from [2001:db8::7]:40002",
     "2001:db8::7", "root"),
    ("[824] Nov 24 13:50:16 Exit before auth from <[2001:db8::7]:40002>: (user 'root', 3 "
     "fails): Max auth tries reached - user 'root'", "2001:db8::7", "root"),
    # An IPv4 client of a dual-stack socket.
    ("Nov 24 13:50:17 cam dropbear[825]: Bad password attempt for 'root' from "
     "::ffff:198.51.100.15:2003", "198.51.100.15", "root"),
    # OpenWrt's logread -F: ctime, then facility.level, no host.
    ("Tue Nov 24 13:50:18 2026 authpriv.warn dropbear[826]: Bad password attempt for 'root' "
     "from 192.168.1.20:40003", "192.168.1.20", "root"),
    # A user name that names another address: the address is the one dropbear put last.
    ("Nov 24 13:50:19 cam dropbear[827]: Exit before auth (user 'a from 10.0.0.1:1', 2 fails): "
     "Max auth tries reached - user 'a from 10.0.0.1:1' from 203.0.113.8:22", "203.0.113.8",
     "a from 10.0.0.1:1"),
]  # fmt: skip

OTHER_NOT_FAILURES = [
    # Up to 2019.78: a key type the server lacks; dropbear does not count it as a failure.
    "Nov 24 13:51:00 cam dropbear[900]: Pubkey auth attempt with unknown algo for 'root' from "
    "203.0.113.6:4000",
    # Up to 2019.78 this exit names no peer: its failures were logged with it.
    "Nov 24 13:51:01 cam dropbear[901]: Exit before auth (user 'root', 3 fails): Disconnect "
    "received",
    "Nov 24 13:51:02 cam dropbear[902]: PAM password auth succeeded for 'root' from "
    "203.0.113.6:4001",
    "Nov 24 13:51:03 cam dropbear[903]: Early exit from <203.0.113.6:4002>: Failed to get "
    "remote version",
    # Another program's line.
    "Nov 24 13:51:04 cam sshd[904]: Bad password attempt for 'root' from 203.0.113.5:51234",
]


def as_rsyslog(line: str) -> str:
    """A real -E line as rsyslog would write it through syslog: constructed, not captured."""
    m = re.match(r"\[(\d+)\] (\w{3}) (\d\d) (\S+) (.*)", line)
    assert m, line
    pid, month, day, clock, message = m.groups()
    return f"{month} {int(day):2d} {clock} gw dropbear[{pid}]: {message}"


def test_the_samples_are_lines_of_the_real_files() -> None:
    real = (LOGS / "dropbear-stderr.log").read_text().splitlines()
    for line in [line for line, _, _ in REAL_FAILURES] + REAL_NOT_FAILURES:
        assert line in real, line


@pytest.mark.parametrize(("line", "host", "user"), REAL_FAILURES)
def test_failures_in_dropbears_own_log(line: str, host: str, user: str) -> None:
    verdict = examine(find_filter("dropbear"), line, NOW)
    own_time = at(line.split("] ", 1)[1][:15])
    assert (verdict.kind, verdict.host, verdict.user, verdict.ts) == ("matched", host, user,
                                                                      own_time)  # fmt: skip


@pytest.mark.parametrize(("line", "host", "user"), REAL_FAILURES)
def test_the_same_failures_through_syslog(line: str, host: str, user: str) -> None:
    """As rsyslog writes them to a file, and as a syslog receiver or the journal hands over
    the message with its program."""
    whole = as_rsyslog(line)
    verdict = examine(find_filter("dropbear"), whole, NOW)
    assert (verdict.kind, verdict.host, verdict.user) == ("matched", host, user)
    assert verdict.ts == at(line.split("] ", 1)[1][:15])
    message = whole.split(": ", 1)[1]
    split = Examiner(find_filter("dropbear")).examine_message("dropbear", message, verdict.ts)
    assert (split.kind, split.host, split.user) == ("matched", host, user)


@pytest.mark.parametrize("line", REAL_NOT_FAILURES)
def test_real_lines_that_are_not_failures(line: str) -> None:
    assert examine(find_filter("dropbear"), line, NOW).kind == "missed"
    assert examine(find_filter("dropbear"), as_rsyslog(line), NOW).kind == "missed"


@pytest.mark.parametrize(("line", "host", "user"), OTHER_VERSIONS)
def test_failures_of_other_versions(line: str, host: str, user: str) -> None:
    verdict = examine(find_filter("dropbear"), line, NOW)
    assert (verdict.kind, verdict.host, verdict.user) == ("matched", host, user)
    second = re.search(r"13:50:(\d\d)", line)
    assert second and verdict.ts == datetime(2026, 11, 24, 13, 50, int(second[1])).timestamp()


@pytest.mark.parametrize("line", OTHER_NOT_FAILURES)
def test_lines_of_other_versions_that_are_not_failures(line: str) -> None:
    assert examine(find_filter("dropbear"), line, NOW).kind == "missed"


def test_busybox_syslogd_lines() -> None:
    """Real lines of dropbear through BusyBox syslogd ("vm authpriv.warn dropbear[pid]: ")."""
    lines = (LOGS / "dropbear-busybox-syslog.log").read_text().splitlines()
    chosen = find_filter("dropbear")
    first = next(line for line in lines if "Bad password attempt" in line)
    verdict = examine(chosen, first, NOW)
    assert (verdict.kind, verdict.host, verdict.user) == ("matched", "127.0.0.1", "camuser")
    assert verdict.ts == at("Dec 07 23:20:31")
    ipv6 = next(line for line in lines if "is invalid" in line and "::1" in line)
    assert examine(chosen, ipv6, NOW).host == "::1"
    started = next(line for line in lines if "syslogd started" in line)
    assert examine(chosen, started, NOW).kind == "missed"


def iotsec_logs_test(path: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "console.cli", "logs", "test", str(path),
                           "dropbear", "--json"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_logs_test_finds_every_failure_of_the_real_files() -> None:
    # dropbear-stderr.log, from each address: 20 bad passwords (10 wrong, 1 then given up, 9
    # after a too-long one), a too-long one, a bad signature, and 5 connections ended after
    # failures (ran out of tries: the user, root refused, too-long; one wrong password; the
    # bad signature) and 1 of a nonexistent user that ran out of tries.
    report = iotsec_logs_test(LOGS / "dropbear-stderr.log")
    assert (report["lines"], report["matched"], report["missed"]) == (96, 56, 40)
    assert report["hosts"] == {"127.0.0.1": 28, "::1": 28}
    assert [r["hits"] for r in report["failregex"]] == [40, 2, 0, 0, 2, 0, 10, 2, 0]
    busybox = iotsec_logs_test(LOGS / "dropbear-busybox-syslog.log")
    assert busybox["hosts"] == {"127.0.0.1": 15, "::1": 14}
    # The lab's: two runs of its bruteforce scenario, each 4 logins as users that do not exist
    # there, until dropbear ended them.
    lab = iotsec_logs_test(LOGS / "dropbear-lab.log")
    assert (lab["lines"], lab["hosts"]) == (25, {"10.253.8.2": 8})


# -- a real dropbear, a real engine ------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on both 127.0.0.1 and ::1."""
    while True:
        with socket.socket() as v4:
            v4.bind(("127.0.0.1", 0))
            port = v4.getsockname()[1]
            with socket.socket(socket.AF_INET6) as v6:
                try:
                    v6.bind(("::1", port))
                except OSError:
                    continue
                return port


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_a_jail_on_dropbears_own_log_alerts(tmp_path: Path) -> None:
    """Dropbear -E writing to a file the engine watches: logins as a user that does not exist,
    until dropbear ends them (-T 2 tries), from 127.0.0.1 and ::1."""
    dropbear, dbclient = require_tool("dropbear"), require_tool("dbclient")
    key = tmp_path / "host_key"
    subprocess.run([require_tool("dropbearkey"), "-t", "ed25519", "-f", str(key)], check=True,
                   capture_output=True)  # fmt: skip
    log = tmp_path / "ssh.log"
    log.touch()
    engine = start_engine(tmp_path / "engine", f"""
[[logwatch.jail]]
name = "dropbear"
filters = ["dropbear"]
files = ["{log}"]
maxretry = 3
findtime = "10m"
ban = false
from_start = true
""")  # fmt: skip
    port = free_port()
    with log.open("ab") as stderr:
        server = subprocess.Popen(
            [dropbear, "-F", "-E", "-T", "2", "-p", f"127.0.0.1:{port}", "-p", f"[::1]:{port}",
             "-r", str(key), "-P", str(tmp_path / "dropbear.pid")],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        wait_for(lambda: accepts(port), "dropbear to listen")
        for host in ("127.0.0.1", "::1"):
            for _ in range(3):
                subprocess.run(
                    [dbclient, "-y", "-y", "-T", "-p", str(port), f"nosuchuser@{host}", "true"],
                    env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                         "DROPBEAR_PASSWORD": "wrong"},
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
                )  # fmt: skip
        alerts = wait_for(lambda: len(log_alerts(engine)) == 2 and log_alerts(engine),
                          "an alert for each address")  # fmt: skip
        assert {a["src"] for a in alerts} == {"127.0.0.1", "::1"}
        for alert in alerts:
            assert alert["rule"] == "dropbear"
            evidence = alert["evidence"]
            assert evidence["failures"] == 3
            assert all("Max auth tries reached" in line for line in evidence["lines"])
            # The lines' own times (whole seconds), not the times they were read.
            assert evidence["last"] == int(evidence["last"]) > time.time() - 120
    finally:
        server.terminate()
        server.wait(timeout=10)
        engine.stop()
