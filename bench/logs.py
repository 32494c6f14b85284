"""Log filters against fail2ban-regex, on the same generated auth.log.

Writes a 100,000-line auth.log in syslog format (a mix like a box on the Internet sees:
OpenSSH failures of many kinds from a few hundred hosts, IPv4 and IPv6, successful logins,
sessions, cron and kernel noise), then times `iotsec logs test FILE sshd --json` and
`fail2ban-regex --out ip FILE /etc/fail2ban/filter.d/sshd.conf` in the same run, and compares
the failure lines matched per host (fail2ban counts some pre-auth forms only in its aggressive
mode, so both are printed with the hosts where they differ).
Targets: >= 3x fail2ban-regex's lines/s; matched lines per host within 1% of fail2ban's.

Run: .venv/bin/python bench/logs.py [--lines 100000] [--runs 3]   (apt-get install fail2ban)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

TARGET_RATE, TARGET_AGREEMENT = 3.0, 0.01
FAIL2BAN_SSHD = "/etc/fail2ban/filter.d/sshd.conf"


def generate(path: Path, lines: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    hosts = [f"203.0.113.{n}" for n in range(1, 200)] + [f"198.51.100.{n}" for n in range(1, 80)]
    hosts += [f"2001:db8::{n:x}" for n in range(1, 40)]
    users = ["root", "admin", "ubnt", "pi", "oracle", "test", "user", "support", "git"]
    failures = [
        "Failed password for {u} from {h} port {p} ssh2",
        "Failed password for invalid user {u} from {h} port {p} ssh2",
        "Invalid user {u} from {h} port {p}",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost={h}  user={u}",
        "error: maximum authentication attempts exceeded for {u} from {h} port {p} ssh2 [preauth]",
        "Disconnecting authenticating user {u} {h} port {p}: Too many authentication failures "
        "[preauth]",
    ]
    noise = [
        ("sshd", "Accepted publickey for alice from 10.0.0.{n} port {p} ssh2: ED25519 SHA256:x"),
        ("sshd", "pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)"),
        ("sshd", "Received disconnect from 10.0.0.{n} port {p}:11: disconnected by user"),
        ("CRON", "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"),
        ("systemd", "Started Session {n} of User alice."),
        ("kernel", "[{n}.000000] usb 1-1: new high-speed USB device number {n} using xhci_hcd"),
    ]
    start = time.mktime((2026, 11, 24, 0, 0, 0, 0, 0, -1))
    with path.open("w") as out:
        for i in range(lines):
            stamp = time.strftime("%b %d %H:%M:%S", time.localtime(start + i * 0.5))
            if rng.random() < 0.6:
                text = rng.choice(failures).format(u=rng.choice(users), h=rng.choice(hosts),
                                                   p=rng.randrange(1024, 65535))  # fmt: skip
                program = "sshd"
            else:
                program, text = rng.choice(noise)
                text = text.format(n=rng.randrange(1, 250), p=rng.randrange(1024, 65535))
            out.write(f"{stamp} gw {program}[{1000 + i % 5000}]: {text}\n")


def timed(argv: list[str], runs: int) -> tuple[float, str]:
    seconds, output = [], ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        seconds.append(time.perf_counter() - started)
        output = done.stdout
    return statistics.median(seconds), output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    fail2ban = shutil.which("fail2ban-regex")
    iotsec = str(Path(sys.executable).with_name("iotsec"))
    with tempfile.TemporaryDirectory(prefix="iotsec-bench-logs-") as tmp:
        log = Path(tmp) / "auth.log"
        generate(log, args.lines)
        ours_s, ours_out = timed([iotsec, "logs", "test", str(log), "sshd", "--json"], args.runs)
        ours = json.loads(ours_out)
        print(f"{'reader':<34} {'wall s':>7} {'lines/s':>10} {'matched':>8} {'hosts':>6}")
        print(f"{'iotsec logs test (sshd)':<34} {ours_s:>7.2f} {args.lines / ours_s:>10,.0f}"
              f" {ours['matched']:>8,} {len(ours['hosts']):>6}")  # fmt: skip
        if fail2ban is None or not Path(FAIL2BAN_SSHD).exists():
            print("fail2ban-regex: not installed (apt-get install fail2ban), comparison skipped")
            return
        theirs_s, theirs_out = timed([fail2ban, "--out", "ip", str(log), FAIL2BAN_SSHD],
                                     args.runs)  # fmt: skip
        theirs = Counter(line.strip() for line in theirs_out.splitlines() if line.strip())
        print(f"{'fail2ban-regex (stock sshd)':<34} {theirs_s:>7.2f}"
              f" {args.lines / theirs_s:>10,.0f} {sum(theirs.values()):>8,}"
              f" {len(theirs):>6}")  # fmt: skip
        ratio = theirs_s / ours_s
        differing = {h: (ours["hosts"].get(h, 0), theirs.get(h, 0))
                     for h in set(ours["hosts"]) | set(theirs)
                     if ours["hosts"].get(h, 0) != theirs.get(h, 0)}  # fmt: skip
        worst = max((abs(a - b) / max(b, 1) for a, b in differing.values()), default=0.0)
        print(f"hosts where the counts differ: {len(differing)}; largest difference"
              f" {worst:.1%}")  # fmt: skip
        for host, (a, b) in sorted(differing.items())[:10]:
            print(f"  {host:<20} ours {a:>6}  fail2ban {b:>6}")
        print(f"target >= {TARGET_RATE:g}x fail2ban-regex's lines/s:"
              f" {'PASS' if ratio >= TARGET_RATE else 'FAIL'} ({ratio:.1f}x)")  # fmt: skip
        print(f"target matched per host within {TARGET_AGREEMENT:.0%}:"
              f" {'PASS' if worst <= TARGET_AGREEMENT else 'FAIL'} ({worst:.1%})")  # fmt: skip


if __name__ == "__main__":
    main()
