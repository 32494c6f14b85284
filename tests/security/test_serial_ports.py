"""Security finding C1 of issue 17: the engine (root) opened any port an operator named. Each
attack is replayed as the real operator user against a real engine, and must be refused,
naming the port and the rule, with nothing touched: a file through spy://, another user's
terminal, a service outside the scan scope, links out of /dev, devices that are no serial
line. The policy's rules are also checked one by one on devices this machine may not have."""

from __future__ import annotations

import grp
import os
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.config import ConfigError, parse_config
from engine.control.protocol import ControlError
from engine.scan.scope import parse_scope
from engine.serial.allow import Device, PortPolicy, PortRefused, controlling, resolve
from tests.conftest import EchoListener, EngineProcess, require_tool, wait_for
from tests.security.conftest import GROUP, User, reachable_dir, request_as

VICTIM_FILE = b"root's own data\n"


def start(secure_engine, tmp_path: Path, extra: str = "") -> EngineProcess:
    """A secure engine with its transcripts in ``tmp_path`` (``extra``: more [serial] keys,
    then any other tables)."""
    engine = secure_engine(f'[serial]\ntranscript_dir = "{tmp_path / "transcripts"}"\n{extra}')
    # The engine gives its socket to the group just after it listens (and root got in).
    gid = grp.getgrnam(GROUP).gr_gid
    wait_for(lambda: engine.socket.stat().st_gid == gid, "the socket's group", 5)
    return engine


def refused(user: User, engine: EngineProcess, port: str, rule: str) -> str:
    """Ask ``engine`` as ``user`` to open ``port``; it must be refused by ``rule``, named with
    the port in the message. The message."""
    with pytest.raises(ControlError) as caught:
        request_as(user, engine, "serial.open", {"port": port})
    assert caught.value.code == "refused", caught.value
    assert str(caught.value).startswith(f"{port}: refused ({rule}): "), caught.value
    return str(caught.value)


def no_sessions(users: dict[str, User], engine: EngineProcess) -> None:
    assert request_as(users["admin"], engine, "serial.list") == []
    assert request_as(users["admin"], engine, "serial.sessions") == []


@pytest.fixture
def pty() -> Iterator[tuple[int, int, str]]:
    """A pty pair: (master, slave, the slave's path in /dev/pts)."""
    master, slave = os.openpty()
    yield master, slave, os.ttyname(slave)
    os.close(master)
    os.close(slave)


# -- the attacks, replayed ---------------------------------------------------------------------


def test_a_spy_url_neither_writes_nor_creates_a_file(secure_engine, users, tmp_path) -> None:
    engine = start(secure_engine, tmp_path)
    top = reachable_dir("iotsec-spy-")
    try:
        victim = top / "victim"
        victim.write_bytes(VICTIM_FILE)
        victim.chmod(0o644)
        os.utime(victim, (1_000_000, 1_000_000))
        before = victim.stat()
        new = top / "new"
        for target in (victim, new):
            port = f"spy:///dev/nonexistent?file={target}"
            message = refused(users["operator"], engine, port, "url-scheme")
            assert "spy:// is never opened for a client" in message
        # pyserial's scheme is case-blind: so is the policy.
        refused(users["operator"], engine, f"SPY:///dev/null?file={victim}", "url-scheme")
        after = victim.stat()
        assert victim.read_bytes() == VICTIM_FILE
        assert (after.st_mtime_ns, after.st_size, after.st_uid) == (
            before.st_mtime_ns,
            before.st_size,
            0,
        )
        assert not new.exists()
        no_sessions(users, engine)
    finally:
        for path in top.iterdir():
            path.unlink()
        top.rmdir()


@pytest.mark.parametrize("port", ["loop://", "LOOP://", "alt:///dev/ttyS0?class=Serial",
                                  "hwgrep://.*", "cp2110://0001:0002:00"])  # fmt: skip
def test_url_handlers_that_reach_local_things_are_refused(
    secure_engine, users, tmp_path, port
) -> None:
    engine = start(secure_engine, tmp_path)
    message = refused(users["operator"], engine, port, "url-scheme")
    assert "is never opened for a client" in message
    no_sessions(users, engine)


def test_another_users_login_terminal_is_never_opened(secure_engine, users, tmp_path, pty) -> None:
    master, slave, path = pty
    victim = users["victim"]
    os.chown(path, victim.uid, -1)
    attrs = termios.tcgetattr(slave)
    attrs[4] = attrs[5] = termios.B9600
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    before = termios.tcgetattr(slave)
    # The victim's session: a process that made the pty its controlling terminal, as a login
    # shell does (setsid, not a group leader, neither forks).
    shell = subprocess.Popen([require_tool("setsid"), "--ctty", "sleep", "600"], stdin=slave,
                             user=victim.uid, group=victim.gid, extra_groups=[])  # fmt: skip
    try:
        wait_for(lambda: controlling(_device(path)), "the victim's session on the pty", 5)
        os.write(master, b"my secret\n")  # what the victim typed, not yet read
        plain = start(secure_engine, tmp_path)
        refused(users["operator"], plain, path, "serial-line")
        refused(users["operator"], plain, path, "serial-line")  # a second try changes nothing
        no_sessions(users, plain)
        # Even when an admin allowed it, the pty is a session's terminal: never opened.
        allowing = start(secure_engine, tmp_path, f'allow = ["{path}"]\n')
        message = refused(users["operator"], allowing, path, "login-terminal")
        assert f"(pid {shell.pid}, user {victim.name})" in message
        no_sessions(users, allowing)
        after = termios.tcgetattr(slave)
        assert after == before and after[5] == termios.B9600  # still 9600 baud
        assert os.stat(path).st_uid == victim.uid
        assert os.read(slave, 100) == b"my secret\n"  # nothing read it meanwhile
    finally:
        shell.kill()
        shell.wait()
    # Once nobody's terminal, the pty the admin allowed opens (the refusal was the session).
    wait_for(lambda: controlling(_device(path)) is None, "the session to end", 5)
    info = request_as(users["operator"], allowing, "serial.open", {"port": path})
    assert info["state"] == "connected"
    request_as(users["operator"], allowing, "serial.close", {"id": info["id"]})


def _device(path: str) -> Device:
    info = os.stat(path)
    return Device(path, os.major(info.st_rdev), os.minor(info.st_rdev), info.st_uid)


def test_socket_urls_reach_only_the_scan_scope(
    secure_engine, users, tmp_path, echo_listener: EchoListener
) -> None:
    # The listener stands for an internal service, outside any scan scope.
    outside = start(secure_engine, tmp_path)
    url = f"socket://127.0.0.1:{echo_listener.port}"
    message = refused(users["operator"], outside, url, "scan-scope")
    assert "no scan scope is configured" in message
    refused(users["operator"], outside, f"rfc2217://127.0.0.1:{echo_listener.port}", "scan-scope")
    scoped = start(secure_engine, tmp_path, '[scan]\nscope = ["10.253.99.0/24"]\n')
    message = refused(users["operator"], scoped, url, "scan-scope")
    assert "127.0.0.1 is outside the scan scope (10.253.99.0/24)" in message
    time.sleep(0.5)  # a connection would have been made by now
    assert echo_listener.accepted == 0
    no_sessions(users, scoped)

    inside = start(secure_engine, tmp_path, '[scan]\nscope = ["127.0.0.0/8"]\n')
    # Names are never resolved, not even in scope.
    refused(users["operator"], inside, f"socket://localhost:{echo_listener.port}", "url-address")
    refused(users["operator"], inside, f"{url}?logging=debug", "url-options")
    assert echo_listener.accepted == 0
    info = request_as(users["operator"], inside, "serial.open", {"port": url})
    assert info["state"] == "connected"
    wait_for(lambda: echo_listener.accepted == 1, "the connection")
    request_as(users["operator"], inside, "serial.write", {"id": info["id"], "text": "hi\n"})
    wait_for(
        lambda: request_as(users["operator"], inside, "serial.get", {"id": info["id"]})["rx"],
        "the echo",
    )


def test_links_and_paths_out_of_dev_are_refused(secure_engine, users, tmp_path, pty) -> None:
    _master, _slave, path = pty
    allowed = reachable_dir("iotsec-allowed-")
    elsewhere = reachable_dir("iotsec-elsewhere-")
    shm = Path("/dev/shm") / f"iotsec-test-{os.getpid()}"
    try:
        secret = elsewhere / "secret"
        secret.write_bytes(VICTIM_FILE)
        (elsewhere / "ttyPTY").symlink_to(path)  # to a pty, from a place nobody allowed
        (allowed / "ttyOUT").symlink_to(secret)  # allowed place, out of /dev
        (allowed / "ttyDIR").symlink_to(elsewhere)  # a directory link out of /dev
        (allowed / "ttyFILE").write_bytes(b"")
        shm.write_bytes(b"")
        engine = start(secure_engine, tmp_path, f'allow = ["{allowed}/*"]\n')
        operator = users["operator"]
        refused(operator, engine, str(elsewhere / "ttyPTY"), "inside-dev")
        refused(operator, engine, str(secret), "inside-dev")
        refused(operator, engine, str(allowed / "ttyOUT"), "links-in-dev")
        refused(operator, engine, str(allowed / "ttyDIR" / "ttyPTY"), "links-in-dev")
        refused(operator, engine, str(allowed / "ttyFILE"), "inside-dev")
        refused(operator, engine, str(shm), "char-device")
        refused(operator, engine, "/dev/pts/../../etc/shadow", "path")
        refused(operator, engine, "/dev/stdin", "links-in-dev")
        refused(operator, engine, "/dev/null", "terminal")
        refused(operator, engine, "/dev/tty", "terminal")
        refused(operator, engine, path, "serial-line")  # a pty nobody allowed
        assert secret.read_bytes() == VICTIM_FILE
        no_sessions(users, engine)
        # The same pty through a link the admin allowed opens, and talks.
        (allowed / "ttyCAM").symlink_to(path)
        info = request_as(operator, engine, "serial.open", {"port": str(allowed / "ttyCAM")})
        assert info["state"] == "connected" and info["name"] == "ttyCAM"
        os.write(_master, b"U-Boot\r\n")
        wait_for(
            lambda: request_as(operator, engine, "serial.get", {"id": info["id"]})["rx"] >= 8,
            "the device's bytes",
        )
    finally:
        shm.unlink(missing_ok=True)
        for top in (allowed, elsewhere):
            for entry in top.iterdir():
                entry.unlink()
            top.rmdir()


def test_a_port_the_config_opens_is_trusted_as_written(secure_engine, users, tmp_path) -> None:
    engine = start(secure_engine, tmp_path, 'open = ["loop://"]\n')
    sessions = request_as(users["operator"], engine, "serial.list")
    assert [s["port"] for s in sessions] == ["loop://"] and sessions[0]["state"] == "connected"


# -- the rules, one by one ----------------------------------------------------------------------

SCOPE = parse_scope(["10.0.0.0/24"])


def policy(allow: tuple[str, ...] = (), urls: tuple[str, ...] = ("rfc2217", "socket"),
           trusted: tuple[str, ...] = ()) -> PortPolicy:  # fmt: skip
    return PortPolicy(allow, urls, SCOPE, trusted, uid=0)


def tty(path: str, major: int, minor: int, uid: int = 0, *, on_usb: bool = False,
        by_id: str = "") -> Device:  # fmt: skip
    """A terminal device as sysfs would describe it."""
    name = path.removeprefix("/dev/")
    return Device(path, major, minor, uid, "tty", name, on_usb, by_id)


@pytest.mark.parametrize(
    "device",
    [
        tty("/dev/ttyUSB0", 188, 0, on_usb=True),
        tty("/dev/ttyACM3", 166, 3, on_usb=True),
        tty("/dev/ttyS0", 4, 64),
        tty("/dev/ttyAMA0", 204, 64),
        tty("/dev/ttymxc1", 207, 17),
        tty("/dev/ttyTHS2", 238, 2),
        tty("/dev/rfcomm0", 216, 0),
        tty("/dev/ttyXR0", 240, 0, on_usb=True),  # an unusual name, on USB
    ],
)
def test_serial_lines_are_accepted(device: Device) -> None:
    assert policy().judge(device.path, device) is None


def test_a_by_id_name_is_a_serial_line() -> None:
    link = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10K5XYZ-if00-port0"
    device = tty("/dev/ttyXYZ0", 240, 1, by_id=link)
    assert policy().judge(link, device) is None


def test_terminals_that_are_no_serial_line_need_allow() -> None:
    for device in (tty("/dev/tty1", 4, 1), Device("/dev/pts/4", 136, 4, 0)):
        assert policy().judge(device.path, device)[0] == "serial-line"
        assert policy(allow=(device.path,)).judge(device.path, device) is None
    pts = Device("/dev/pts/7", 136, 7, 0)
    assert policy(allow=("/dev/pts/*",)).judge("/srv/lab/ttyCAM", pts) is None
    assert policy(allow=("/srv/lab/tty*",)).judge("/srv/lab/ttyCAM", pts) is None
    assert policy(allow=("/srv/lab/tty*",)).judge("/srv/other/ttyCAM", pts)[0] == "serial-line"


def test_what_is_no_terminal_or_an_alias_is_refused_even_when_allowed() -> None:
    everything = policy(allow=("/dev/*",))
    for device in (
        Device("/dev/null", 1, 3, 0, subsystem="mem", name="null"),
        Device("/dev/watchdog", 10, 130, 0, subsystem="misc", name="watchdog"),
        Device("/dev/whatever", 250, 0, 0),  # sysfs does not know it
        tty("/dev/tty", 5, 0),
        tty("/dev/console", 5, 1),
        tty("/dev/ptmx", 5, 2),
        tty("/dev/tty0", 4, 0),
    ):
        assert everything.judge(device.path, device)[0] == "terminal", device


def test_another_users_serial_line_needs_allow() -> None:
    taken = tty("/dev/ttyS1", 4, 65, uid=1234)
    rule, why = policy().judge(taken.path, taken)
    assert rule == "owner" and "belongs to user" in why
    assert policy(allow=("/dev/ttyS1",)).judge(taken.path, taken) is None
    mine = tty("/dev/ttyS1", 4, 65, uid=4321)
    assert PortPolicy((), (), SCOPE, uid=4321).judge(mine.path, mine) is None


@pytest.mark.parametrize(
    ("port", "rule"),
    [
        ("socket://10.0.0.5:23", None),
        ("rfc2217://10.0.0.5:2217?poll_modem&timeout=5", None),
        ("socket://10.0.1.5:23", "scan-scope"),
        ("socket://[fe80::1]:23", "scan-scope"),
        ("socket://camera.local:23", "url-address"),
        ("socket://10.0.0.5", "url-address"),
        ("socket://10.0.0.5:99999", "url-address"),
        ("socket://10.0.0.5:23?logging=debug", "url-options"),
        ("spy://10.0.0.5:23", "url-scheme"),
        ("loop://", "url-scheme"),
        ("sPy:///dev/ttyS0?file=/etc/passwd", "url-scheme"),
        ("/dev/pts/../../etc/passwd", "path"),
        ("dev/ttyS0", "path"),
        ("/etc/passwd", "inside-dev"),
    ],
)
def test_urls_and_paths_before_any_file_is_touched(port: str, rule: str | None) -> None:
    if rule is None:
        assert policy().check(port) == port
        return
    with pytest.raises(PortRefused) as caught:
        policy().check(port)
    assert caught.value.rule == rule and str(caught.value).startswith(f"{port}: refused ({rule})")


def test_a_url_is_rebuilt_from_what_was_checked() -> None:
    assert policy().check("SOCKET://user@10.0.0.5:23/path#x") == "socket://10.0.0.5:23"
    with pytest.raises(PortRefused, match="rfc2217:// is not in \\[serial\\] urls"):
        policy(urls=("socket",)).check("rfc2217://10.0.0.5:2217")
    assert policy(trusted=("loop://",)).check("loop://") == "loop://"
    with pytest.raises(PortRefused, match="no scan scope is configured"):
        PortPolicy((), ("socket",), [], uid=0).check("socket://10.0.0.5:23")


def test_links_are_followed_only_inside_dev() -> None:
    base = Path("/dev/shm") / f"iotsec-resolve-{os.getpid()}"
    base.mkdir()
    try:
        (base / "null").symlink_to("../../null")
        (base / "hop").symlink_to(base / "null")
        (base / "out").symlink_to("/etc/passwd")
        (base / "via").symlink_to("/dev/../etc/passwd")
        (base / "loop").symlink_to(base / "loop")
        assert resolve(str(base / "hop"))[0] == "/dev/null"
        for name in ("out", "via", "loop"):
            with pytest.raises(PortRefused) as caught:
                resolve(str(base / name))
            assert caught.value.rule == "links-in-dev"
        with pytest.raises(FileNotFoundError):
            resolve(str(base / "missing"))
    finally:
        for entry in base.iterdir():
            entry.unlink()
        base.rmdir()


def test_the_controlling_terminal_is_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "812").mkdir()
    tty_nr = os.makedev(136, 4)
    (tmp_path / "812" / "stat").write_text(f"812 (tricky) (name) S 1 812 812 {tty_nr} 812 0\n")
    holder = controlling(Device("/dev/pts/4", 136, 4, 0), tmp_path)
    assert holder is not None and (holder.pid, holder.command) == (812, "tricky) (name")
    assert controlling(Device("/dev/pts/5", 136, 5, 0), tmp_path) is None


def test_the_config_names_a_bad_allow_or_url_scheme() -> None:
    with pytest.raises(ConfigError, match=r"serial\.urls: 'spy' cannot be allowed to clients"):
        parse_config({"serial": {"urls": ["socket", "spy"]}})
    with pytest.raises(ConfigError, match=r"serial\.allow: 'pts/\*' is not an absolute path"):
        parse_config({"serial": {"allow": ["pts/*"]}})
    config = parse_config({"serial": {"allow": ["/dev/pts/*"], "urls": ["rfc2217"]}})
    assert config.serial.allow == ("/dev/pts/*",) and config.serial.urls == ("rfc2217",)
