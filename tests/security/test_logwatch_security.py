"""Log watching against a user who plants files where a jail looks (a link to a root-only
secret, a FIFO, a file of their own, a link swapped in for a followed log), and a sender who
floods the syslog receiver (UDP faster than it reads, TCP connections past the cap, idle ones,
messages that never end), each against a real engine."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.control.protocol import ControlError
from tests.conftest import EngineProcess, start_engine, wait_for
from tests.security.conftest import User, as_user, reachable_dir, request_as
from tests.test_logwatch_engine import ATTACKER, failed, log_alerts, request

SECRET = "root:$6$planted-secret-hash:19000:0:99999:7:::"
FORGED = "198.51.100.66"  # the address the victim's own file accuses


@pytest.fixture
def secret() -> Iterator[Path]:
    """A root-only file (0600 in a 0700 directory) outside the logs, like /etc/shadow."""
    directory = Path(tempfile.mkdtemp(prefix="iotsec-secret-"))
    path = directory / "shadow"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    yield path
    shutil.rmtree(directory)


@pytest.fixture
def logs(users: dict[str, User]) -> Iterator[Path]:
    """A log directory the victim owns (a service's own log directory), under a directory the
    test users may traverse."""
    top = reachable_dir("iotsec-logs-")
    directory = top / "logs"
    directory.mkdir()
    os.chown(directory, users["victim"].uid, users["victim"].gid)
    yield directory
    shutil.rmtree(top)


def jail(files: list[str]) -> str:
    listed = ", ".join(f'"{f}"' for f in files)
    return (
        f'[[logwatch.jail]]\nname = "sshd"\nfilters = ["sshd"]\nfiles = [{listed}]\n'
        'maxretry = 3\nfindtime = "10m"\nfrom_start = true\n'
    )


def file_entry(engine: EngineProcess, path: Path) -> dict[str, Any] | None:
    files = request(engine, "logs.status")["files"]
    return next((entry for entry in files if entry["path"] == str(path)), None)


def tail_as_operator(engine: EngineProcess, users: dict[str, User], path: Path) -> list[str]:
    answer = request_as(users["operator"], engine, "logs.tail", {"source": str(path)})
    return [row["text"] for row in answer["lines"]]


def test_a_glob_skips_links_fifos_and_other_users_files_and_says_why(
    secure_engine, users: dict[str, User], logs: Path, secret: Path
) -> None:
    good = logs / "good.log"
    good.write_text("Nov 24 03:00:00 gw sshd[1]: Server listening on 0.0.0.0 port 22.\n")

    def plant() -> None:
        os.symlink(secret, logs / "evil.log")
        os.mkfifo(logs / "fifo.log")
        (logs / "victim.log").write_text("".join(failed(n, host=FORGED) for n in range(5)))

    as_user(users["victim"], plant)
    engine = secure_engine(jail([f"{logs}/*.log"]))

    status = request(engine, "logs.status")
    assert [entry["path"] for entry in status["files"]] == [str(good)]
    reasons = {Path(entry["path"]).name: entry["reason"] for entry in status["skipped"]}
    assert sorted(reasons) == ["evil.log", "fifo.log", "victim.log"]
    assert "a symbolic link; a file a glob finds must not be a link" in reasons["evil.log"]
    assert "a FIFO; only regular files are read" in reasons["fifo.log"]
    assert f"owned by {users['victim'].name}, not by root" in reasons["victim.log"]
    assert "[logwatch] owners" in reasons["victim.log"]
    log = engine.log.read_text()
    assert log.count(f"skipped {logs / 'evil.log'}: a symbolic link") == 1

    # The operator may tail what the engine follows, and nothing else.
    with pytest.raises(ControlError) as refused:
        request_as(users["operator"], engine, "logs.tail", {"source": str(logs / "evil.log")})
    assert refused.value.code == "not_found"
    assert SECRET not in str(refused.value)

    # The real log is followed and counted; the victim's forged failures are not.
    with good.open("a") as handle:
        handle.writelines(failed(n) for n in range(3))
    alert = wait_for(lambda: log_alerts(engine), "the alert from good.log")[0]
    assert alert["src"] == ATTACKER
    jail_status = request(engine, "logs.status")["jails"][0]
    assert jail_status["total_failed"] == 3
    assert all(host["host"] != FORGED for host in jail_status["hosts"])
    assert any("Failed password" in text for text in tail_as_operator(engine, users, good))


def test_a_link_swapped_in_for_a_followed_file_is_not_followed(
    secure_engine, users: dict[str, User], logs: Path, secret: Path
) -> None:
    good = logs / "good.log"
    good.write_text(failed(0))
    engine = secure_engine(jail([f"{logs}/*.log"]))
    wait_for(lambda: request(engine, "logs.status")["jails"][0]["total_failed"] == 1,
             "the first failure")  # fmt: skip

    def swap() -> None:
        os.rename(good, logs / "good.log.1")
        os.symlink(secret, good)

    as_user(users["victim"], swap)
    entry = wait_for(
        lambda: (e := file_entry(engine, good)) and e["state"] == "refused" and e,
        "the follower to refuse the link",
    )
    assert "a symbolic link; a file a glob finds must not be a link" in entry["error"]
    assert entry["rotations"] == 1 and entry["size"] is None
    assert all(SECRET not in text for text in tail_as_operator(engine, users, good))
    assert SECRET not in engine.log.read_text()

    # Put back as a real file, it is followed again (from its start: it is a new file).
    def restore() -> None:
        good.unlink()

    as_user(users["victim"], restore)
    good.write_text(failed(1) + failed(2))
    wait_for(lambda: request(engine, "logs.status")["jails"][0]["alerts"] == 1, "the alert")
    assert file_entry(engine, good)["state"] == "following"


def test_a_named_file_may_be_the_admins_link_but_not_another_users(
    secure_engine, users: dict[str, User], logs: Path, secret: Path
) -> None:
    real = logs.parent / "real.log"
    real.write_text(failed(0) + failed(1) + failed(2))
    admins = logs / "admins.log"
    os.symlink(real, admins)  # root's: as /var/log/syslog may be a link the admin keeps
    planted = logs / "planted.log"
    as_user(users["victim"], lambda: os.symlink(secret, planted))
    engine = secure_engine(jail([str(admins), str(planted)]))

    wait_for(lambda: log_alerts(engine), "the alert from the admin's link")
    entry = wait_for(lambda: file_entry(engine, planted), "the planted link's entry")
    assert entry["state"] == "refused"
    assert f"a symbolic link owned by {users['victim'].name}" in entry["error"]
    assert file_entry(engine, admins)["state"] == "following"
    assert all(SECRET not in text for text in tail_as_operator(engine, users, planted))


# -- the syslog receiver ----------------------------------------------------------------------


def syslog_engine(directory: Path, **keys: str) -> EngineProcess:
    """An engine receiving syslog on free loopback ports, with these [logwatch.syslog] keys."""
    settings = "\n".join(f"{key} = {value}" for key, value in keys.items())
    return start_engine(
        directory,
        f'[logwatch.syslog]\nenabled = true\naddress = "127.0.0.1"\nport = 0\n{settings}\n'
        '[[logwatch.jail]]\nname = "devices"\nfilters = ["dropbear"]\nsyslog = true\n',
    )


def syslog_status(engine: EngineProcess) -> dict[str, Any]:
    return request(engine, "logs.status")["syslog"]


def rss(engine: EngineProcess) -> int:
    """The engine's resident memory in bytes."""
    for line in Path(f"/proc/{engine.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the other end closes ``sock`` within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def test_udp_datagrams_the_kernel_drops_are_counted(tmp_path: Path) -> None:
    engine = syslog_engine(tmp_path / "engine", tcp="false", udp_buffer="32768")
    try:
        port = syslog_status(engine)["udp_port"]
        sent = 200_000
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for n in range(sent):
                sock.sendto(b"<13>Nov 24 13:45:01 dev app: burst %d" % n, ("127.0.0.1", port))

            # The kernel's count comes with the next datagram read: one more now and then.
            def accounted() -> dict[str, Any] | None:
                nonlocal sent
                sock.sendto(b"<13>Nov 24 13:45:02 dev app: after", ("127.0.0.1", port))
                sent += 1
                time.sleep(0.2)
                status = syslog_status(engine)
                return status if status["received"] + status["udp_dropped"] >= sent else None

            status = wait_for(accounted, "every datagram received or counted as dropped", 60)
        assert status["udp_dropped"] > 0
        assert status["received"] + status["udp_dropped"] == sent
        assert status["udp_buffer"] >= 32768
        assert "UDP datagrams dropped by the kernel" in engine.cli("logs").stdout
    finally:
        engine.stop()


def test_tcp_connections_past_the_cap_are_closed_at_once_and_counted(tmp_path: Path) -> None:
    engine = syslog_engine(tmp_path / "engine", udp="false", max_connections="4")
    held: list[socket.socket] = []
    try:
        port = syslog_status(engine)["tcp_port"]
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        wait_for(lambda: syslog_status(engine)["tcp_connections"] == 4, "four connections")
        before = rss(engine)
        # What held 65 MB: many connections, each with an unfinished octet-counted frame.
        frame = b"65000 <13>Nov 24 13:45:01 dev app: " + b"A" * 60_000
        for _ in range(50):
            with socket.create_connection(("127.0.0.1", port)) as extra:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    extra.sendall(frame)  # it may be closed before all of it is sent
                assert closed_by_peer(extra, 5), "a connection past the cap was kept"
        status = syslog_status(engine)
        assert (status["tcp_refused"], status["tcp_connections"]) == (50, 4)
        assert status["tcp_timed_out"] == 0
        assert rss(engine) - before < 8 << 20
        assert "are open already (logwatch.syslog.max_connections)" in engine.log.read_text()

        # A place freed is taken again.
        held.pop().close()
        wait_for(lambda: syslog_status(engine)["tcp_connections"] == 3, "the freed place")
        with socket.create_connection(("127.0.0.1", port)) as again:
            again.sendall(b"<13>Nov 24 13:45:01 dev app: hello\n")
            wait_for(lambda: syslog_status(engine)["received"] == 1, "the message")
        assert syslog_status(engine)["tcp_refused"] == 50
    finally:
        for sock in held:
            sock.close()
        engine.stop()


def test_an_idle_tcp_connection_is_closed(tmp_path: Path) -> None:
    engine = syslog_engine(tmp_path / "engine", udp="false", idle_timeout='"1s"')
    try:
        port = syslog_status(engine)["tcp_port"]
        with socket.create_connection(("127.0.0.1", port)) as idle:
            idle.sendall(b"200 <13>Nov 24 13:45:01 dev app: half")  # and then nothing
            started = time.monotonic()
            assert closed_by_peer(idle, 10)
            assert 0.9 <= time.monotonic() - started < 5
        status = wait_for(
            lambda: (s := syslog_status(engine))["tcp_connections"] == 0 and s, "the close"
        )
        assert status["tcp_timed_out"] == 1 and status["received"] == 0
        assert "nothing sent for 1 s (logwatch.syslog.idle_timeout)" in engine.log.read_text()
    finally:
        engine.stop()


@pytest.mark.parametrize("octet_counted", [False, True])
def test_a_message_that_never_ends_is_cut_and_memory_stays_bounded(
    tmp_path: Path, octet_counted: bool
) -> None:
    engine = syslog_engine(tmp_path / "engine", udp="false", max_message="8192")
    try:
        port = syslog_status(engine)["tcp_port"]
        before = rss(engine)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = b"9999999999 " if octet_counted else b""
            sock.sendall(head + b"<13>Nov 24 13:45:01 dev app: ")
            chunk = b"A" * (1 << 20)
            for _ in range(64):  # 64 MiB without an end
                sock.sendall(chunk)
            wait_for(lambda: syslog_status(engine)["cut"] == 1, "the cut")
            assert rss(engine) - before < 8 << 20
            if not octet_counted:  # a line ends at its newline; the next one is whole
                sock.sendall(b"\n<13>Nov 24 13:45:02 dev app: next\n")
                wait_for(lambda: syslog_status(engine)["received"] == 2, "the next message")
        assert "longer than 8192 bytes: cut" in engine.log.read_text()
    finally:
        engine.stop()
