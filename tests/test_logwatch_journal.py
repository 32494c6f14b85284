"""The systemd journal as a jail's source, with a real journald: the engine runs in a mount
namespace of the test's own where a private systemd-journald keeps its journal on tmpfs (the
machine's journal is never touched); sshd failures logged there with systemd-cat reach the
jail, which alerts and bans (dry-run), and the cursor read up to is kept."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path

from engine.logwatch.journal import entry_of
from tests.conftest import require_root, require_tool, start_engine, unavailable, wait_for
from tests.test_logwatch_engine import jail_config, log_alerts, request

JOURNALD = Path("/lib/systemd/systemd-journald")
ATTACKER = "203.0.113.60"

# In the namespace: tmpfs over every place journald keeps or announces its journal, journald
# started (its pid kept for the test to end it), then the engine in its place.
NAMESPACE = """
set -e
for d in /run/systemd /run/log /var/log/journal; do mkdir -p "$d"; mount -t tmpfs tmpfs "$d"; done
{journald} & echo $! > {pidfile}
for i in $(seq 50); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
exec "$@"
"""


def test_entry_of_reads_journalctl_json() -> None:
    program, message, ts, line = entry_of({
        "MESSAGE": [70, 97, 105, 108, 0xFF],  # not UTF-8: journalctl gives the bytes
        "SYSLOG_IDENTIFIER": "sshd",
        "_PID": "812",
        "_HOSTNAME": "gw",
        "__REALTIME_TIMESTAMP": "1795536189989882",
    })  # fmt: skip
    assert (program, message, ts) == ("sshd", "Fail\ufffd", 1795536189.989882)
    assert line.endswith(" gw sshd[812]: Fail\ufffd")


def test_journal_failures_reach_the_jail(tmp_path: Path) -> None:
    require_root("a mount namespace with a journald of its own")
    for tool in ("unshare", "nsenter", "systemd-cat", "journalctl"):
        require_tool(tool)
    if not JOURNALD.exists():
        unavailable(f"{JOURNALD} is not installed (make test installs systemd)")
    pidfile = tmp_path / "journald.pid"
    script = NAMESPACE.format(journald=JOURNALD, pidfile=pidfile)
    config = jail_config(Path("/nonexistent"), name='"sshd-journal"', files="[]",
                         journal='["SYSLOG_IDENTIFIER=sshd"]')  # fmt: skip
    engine = start_engine(tmp_path / "engine", config,
                          prefix=("unshare", "--mount", "--propagation", "private",
                                  "sh", "-c", script, "sh"))  # fmt: skip
    try:
        wait_for(
            lambda: request(engine, "logs.status")["journal"][0]["state"] == "following",
            "journalctl",
        )
        for port in (40001, 40002, 40003):
            subprocess.run(
                ["nsenter", "--mount", f"--target={engine.proc.pid}", "systemd-cat", "-t", "sshd"],
                input=f"Failed password for root from {ATTACKER} port {port} ssh2\n",
                text=True, check=True, timeout=10,
            )  # fmt: skip
        alert = wait_for(lambda: log_alerts(engine), "the jail's alert")[0]  # fmt: skip
        assert alert["rule"] == "sshd-journal" and alert["src"] == ATTACKER
        assert len(alert["evidence"]["lines"]) == 3
        assert "sshd" in alert["evidence"]["lines"][0]
        assert alert["evidence"]["sources"] == ["journal:SYSLOG_IDENTIFIER=sshd"]
        bans = wait_for(lambda: request(engine, "bans.list")["bans"], "the ban")
        assert bans[0]["address"] == ATTACKER
        assert engine.stop() == 0
        with sqlite3.connect(engine.db) as conn:
            (cursor,) = conn.execute("SELECT cursor FROM journal_cursors").fetchone()
        assert cursor.startswith("s=")
    finally:
        engine.stop()
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)  # the journald the test started
