"""End to end: the real ``iotsec console`` in a real terminal (tmux at 80x24, TERM=screen),
read back from the screen, against a real engine.

Each test uses its own tmux server (``tmux -L``) and kills only that server.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import request

from console.severity import LABEL
from engine.control.client import Client
from tests.conftest import (
    ROOT,
    EngineProcess,
    SerialDevice,
    require_tool,
    start_engine,
    start_serial_engine,
    write_config,
)


def _running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie waiting to be reaped has finished)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


class Tmux:
    def __init__(self, name: str) -> None:
        self.tmux = require_tool("tmux")
        self.server = f"iotsec-test-{name}-{os.getpid()}"

    def __call__(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [self.tmux, "-L", self.server, *args], capture_output=True, text=True, check=check
        )
        return done.stdout

    def start_console(
        self,
        config: Path,
        *extra_env: str,
        prefix: tuple[str, ...] | list[str] = (),
        args: tuple[str, ...] = ("console",),
        session: str = "console",
    ) -> int:
        """Run ``iotsec --config CONFIG console`` (or other ``args``) in an 80x24 window of tmux
        session ``session``; the pane's process id (the console's, unless ``prefix`` puts a
        wrapper in front of it)."""
        command = [
            *prefix,
            "env",
            "TERM=screen",
            *extra_env,
            sys.executable,
            "-m",
            "console.cli",
            "--config",
            str(config),
            *args,
        ]
        shell = f"cd {shlex.quote(str(ROOT))} && exec {shlex.join(command)}"
        self("new-session", "-d", "-s", session, "-x", "80", "-y", "24", shell)
        return int(self("list-panes", "-t", session, "-F", "#{pane_pid}").strip())

    def screen(self, *, escapes: bool = False, session: str = "console") -> str:
        return self("capture-pane", "-p", *(["-e"] if escapes else []), "-t", session)

    def wait_for(
        self, pattern: str, timeout: float = 15.0, session: str = "console"
    ) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(session=session)
            if match := re.search(pattern, screen):
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on screen after {timeout} s:\n{screen}")
            time.sleep(0.05)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "console", *keys)

    def kill(self) -> None:
        self("kill-server", check=False)


@pytest.fixture
def tmux(request) -> Iterator[Tmux]:
    t = Tmux(request.node.name[:40])
    yield t
    t.kill()


def wait_gone(pid: int, timeout: float = 5.0) -> float:
    start = time.monotonic()
    while _running(pid):
        assert time.monotonic() - start < timeout, f"process {pid} still running"
        time.sleep(0.02)
    return time.monotonic() - start


def test_acknowledge_in_tmux_then_quit(engine, tmux):
    pid = tmux.start_console(engine.config)
    tmux.wait_for(r"● engine │ capture: stopped")
    alert_id = int(
        engine.cli(
            "alerts",
            "inject",
            "--severity",
            "critical",
            "--src",
            "203.0.113.7",
            "--title",
            "ET TELNET busybox MIRAI hackers",
        ).stdout
    )
    tmux.wait_for(r"CRIT open +1 203\.0\.113\.7 .*ET TELNET busybox")
    colours = tmux.screen(escapes=True)
    assert "38;2;" not in colours and "38;5;" not in colours, "16 colours only on TERM=screen"
    tmux.keys("a")
    tmux.wait_for(rf"Acknowledge alert #{alert_id}")
    tmux.keys("checking the camera from tmux", "Enter")
    screen = tmux.wait_for(r"CRIT acked +1 203\.0\.113\.7").string
    assert f"Alert {alert_id} acknowledged" in screen
    alert = request(engine, "alerts.get", {"id": alert_id})
    assert alert["state"] == "acknowledged"
    assert alert["ack_note"] == "checking the camera from tmux"
    tmux.keys("q")
    wait_gone(pid)


def test_the_console_exits_when_its_terminal_goes_away(engine, tmux):
    pid = tmux.start_console(engine.config)
    tmux.wait_for(r"● engine")
    # Like an SSH connection dropping: the terminal is gone and the shell's job gets SIGHUP.
    tmux("kill-session", "-t", "console")
    wait_gone(pid)


def test_the_console_exits_when_its_terminal_goes_away_while_it_is_drawing(engine, tmux):
    """The terminal may vanish while the console is still drawing its first screens; Textual's
    shutdown can then block writing to it, and the console must leave all the same."""
    for delay in (0.1, 0.2, 0.3, 0.45, 0.6, 0.8):
        pid = tmux.start_console(engine.config)
        time.sleep(delay)
        tmux.kill()
        wait_gone(pid, timeout=8.0)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_console_exits_without_spinning_when_no_hangup_signal_comes(engine, tmux):
    """In its own session the console gets no SIGHUP when the terminal closes; it notices the
    dead terminal itself instead of spinning on end-of-file."""
    setsid = require_tool("setsid")
    wrapper = tmux.start_console(engine.config, prefix=[setsid, "-w"])
    tmux.wait_for(r"● engine")
    (pid,) = (int(p) for p in Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split())
    before = _cpu_seconds(pid)
    tmux("kill-session", "-t", "console")
    started = time.monotonic()
    last = before
    while _running(pid):
        assert time.monotonic() - started < 5, "the console is still running"
        last = _cpu_seconds(pid)
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    print(f"exited {elapsed:.2f} s after the terminal closed, using {last - before:.2f} s CPU")
    assert last - before < 0.5 * elapsed + 0.1, "the console spun on the dead terminal"


def _host_has_our_table() -> bool:
    """Whether this host's firewall has the engine's ``inet iotsec`` table (False without nft)."""
    nft = shutil.which("nft")
    if nft is None:
        return False
    done = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, check=False)
    return "table inet iotsec" in done.stdout


def _lock_is_free(db: Path) -> bool:
    """Whether no process holds the database's engine lock (``<db>.lock``)."""
    lock = Path(f"{db}.lock")
    if not lock.exists():
        return True
    with lock.open("rb") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(file, fcntl.LOCK_UN)
    return True


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_without_an_engine_the_console_starts_a_private_one_and_stops_it(tmp_path, tmux):
    # A config that asks for the host's firewall and a serial port: the private engine takes
    # neither, nor the configured database or socket.
    config = write_config(
        tmp_path, '[respond]\nbackend = "nftables"\n[serial]\nopen = ["/dev/ttyS0"]\n'
    )
    table_before = _host_has_our_table()
    pid = tmux.start_console(config)
    engine_pid = int(tmux.wait_for(r"● private engine pid (\d+)").group(1))
    assert _running(engine_pid)
    cmdline = Path(f"/proc/{engine_pid}/cmdline").read_text().split("\0")
    assert cmdline[1:4] == ["-m", "engine", "--private"]
    directory = Path(cmdline[4])
    socket = directory / "control.sock"
    assert directory.name.startswith("iotsec-console-")
    assert directory.stat().st_mode & 0o777 == 0o700
    assert cmdline[5:7] == ["--config", str(config)]

    with Client(socket) as client:
        status = client.request("status")
        assert status["store"]["path"] == str(directory / "iotsec.db")
        assert status["control"]["socket"] == str(socket)
        assert status["bans"]["backend"] == "dry-run"
        assert status["serial"]["sessions"] == 0
        # It is a real engine: what it raises shows up in the console.
        client.request("alerts.inject", {"severity": "high", "title": "from the private engine"})
    tmux.wait_for(r"HIGH open .*from the private engine")
    assert not (tmp_path / "run" / "control.sock").exists()
    assert _lock_is_free(tmp_path / "state" / "iotsec.db")
    assert _host_has_our_table() == table_before

    tmux.keys("q")
    wait_gone(pid)
    wait_gone(engine_pid)
    assert not directory.exists()


def test_consoles_wait_for_their_engine_and_resume_when_it_is_back(tmux):
    """An engine killed under two consoles: both say so with its socket, neither starts an
    engine in its place (which would hold its database), and both are back within 2 s of it."""
    top = Path(tempfile.mkdtemp(prefix="iotsec-gone-"))  # short: the path fits on one line
    engine = start_engine(top)
    try:
        table_before = _host_has_our_table()
        consoles = {name: tmux.start_console(engine.config, session=name) for name in ("a", "b")}
        for name in consoles:
            tmux.wait_for(r"● engine │ capture", session=name)
        engine.stop(signal.SIGKILL)
        for name in consoles:
            tmux.wait_for(rf"engine gone: {re.escape(str(engine.socket))}", session=name)
            tmux.wait_for(r"reconnects to the same socket", session=name)
        time.sleep(1.5)  # long enough for a console to have started an engine of its own
        for name, pid in consoles.items():
            assert _children(pid) == [], f"console {name} started a process"
        assert _lock_is_free(engine.db), "something holds the engine's database"
        assert _host_has_our_table() == table_before

        engine = start_engine(top)  # returns once the engine answers
        back = time.monotonic()
        for name in consoles:
            left = 2.0 - (time.monotonic() - back)
            tmux.wait_for(r"● engine │ capture", timeout=max(left, 0.0), session=name)
        print(f"both consoles back {time.monotonic() - back:.2f} s after the engine")
        assert "Engine gone" not in tmux.screen(session="a")
    finally:
        engine.stop()
        shutil.rmtree(top, ignore_errors=True)


def test_a_console_without_permission_on_the_socket_says_why_and_starts_nothing(tmux):
    """Root without the capabilities that bypass file permissions is refused by the socket's
    mode like any user; the console names the socket's group and starts no engine."""
    setpriv = require_tool("setpriv")
    top = Path(tempfile.mkdtemp(prefix="iotsec-denied-"))
    engine = start_engine(top)
    try:
        os.chown(engine.socket, pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
        engine.socket.chmod(0o660)
        caps = "-dac_override,-dac_read_search"
        pid = tmux.start_console(
            engine.config, prefix=[setpriv, "--bounding-set", caps, "--inh-caps", caps]
        )
        tmux.wait_for(r"✕ refused: .*permission denied")
        screen = tmux.wait_for(r"The engine refused this console").string
        assert "join the group nogroup" in " ".join(screen.replace("│", " ").split()), screen
        assert "Retrying every 10 s" in screen
        assert _children(pid) == []
        tmux.keys("q")
        wait_gone(pid)
    finally:
        engine.stop()
        shutil.rmtree(top, ignore_errors=True)


def test_no_color_draws_without_colour_and_keeps_the_labels(engine, tmux):
    request(
        engine, "alerts.inject", {"severity": "critical", "title": "root shell", "src": "10.0.0.5"}
    )
    tmux.start_console(engine.config, "NO_COLOR=1")
    tmux.wait_for(r"CRIT open +1 10\.0\.0\.5")
    screen = tmux.screen(escapes=True)
    params = [p for seq in re.findall(r"\x1b\[([\d;]*)m", screen) for p in seq.split(";") if p]
    # Only greys (black, white and their bright forms) may appear, never a hue.
    hues = {str(n) for n in [*range(31, 37), *range(41, 47), *range(91, 97), *range(101, 107)]}
    assert not hues & set(params), f"colour codes on screen: {sorted(hues & set(params))}"
    assert "38" not in params and "48" not in params, "no 256-colour or true-colour codes"


def test_traffic_drill_down_in_tmux(engine, tmux):
    """An on-call engineer's path at 80x24: the flow list, the flow's packets, one packet."""
    from tests.test_capture_decode import pcap

    request(engine, "capture.replay", {"path": str(pcap("sv_mqtt311_pub_userpass.pcap"))})
    pid = tmux.start_console(engine.config)
    tmux.wait_for(r"● engine │ capture: stopped")
    tmux.keys("1")
    tmux.wait_for(r"mqtt\s+\[::1\]:38458\s+\[::1\]:1883\s+12")
    tmux.wait_for(r"Packets 12")
    tmux.keys("Enter")  # into the flow's packets
    tmux.wait_for(r"⏎ Decode")  # the packet list has the focus
    # The list starts at the newest packet; the fourth from the top is the CONNECT, and the
    # list scrolls to show it under the cursor.
    tmux.keys(*["Up"] * 11, "Down", "Down", "Down")
    tmux.wait_for(r"16:21:28\.214\s+131 ")
    tmux.keys("Enter")
    tmux.wait_for(r"Packet #4 .* 131 bytes")
    tmux.wait_for(r"▼ Ethernet")
    tmux.keys("Escape")
    tmux.wait_for(r"Packets 12")
    tmux.keys("q")
    wait_gone(pid)


@pytest.fixture
def serial_engine(tmp_path: Path) -> Iterator[EngineProcess]:
    """An engine that may open the emulated device's pty (it is in [serial] allow)."""
    engine = start_serial_engine(tmp_path)
    yield engine
    engine.stop()


def test_the_serial_bench_tool_in_tmux(serial_engine, tmux, serial_device: SerialDevice):
    engine = serial_engine
    pid = tmux.start_console(engine.config, args=("serial", str(serial_device.path)))
    tmux.wait_for(r"ttyCAM connected  115200 8N1")
    tmux.wait_for(r"(?m)^/ #")
    # The kernel's long command line wraps onto the next rows instead of being cut at 80.
    assert re.search(r"(?m)^0 root=/dev/mtdblock2 rootfstype=cramfs ", tmux.screen())
    tmux.keys("id", "Enter")
    tmux.wait_for(r"uid=0\(root\) gid=0\(root\)")
    # What would retitle, clear or switch the operator's terminal is shown, not obeyed.
    tmux.keys("noise", "Enter")
    tmux.wait_for(r"\\x9b31m\\x85")
    screen = tmux.screen()
    assert "\\xff\\xfe\\xc3(" in screen and "BusyBox v1.20.2" in screen
    title = tmux("display-message", "-p", "-t", "console", "#{pane_title}")
    assert "pwned" not in title
    tmux.keys("C-t", "q")
    wait_gone(pid)
    assert request(engine, "serial.list") == []  # it closed the session it opened


ATTRIBUTES = {1: "bold", 2: "dim", 7: "reverse"}


def _sgr_cells(screen: str) -> list[tuple[str, list[dict[str, object]]]]:
    """Each line of a ``capture-pane -e`` screen: its text, and the SGR state of each character
    (bold, dim, reverse, and the 16-colour foreground and background codes)."""
    state: dict[str, object] = {}
    lines = []
    for line in screen.split("\n"):
        text, states = [], []
        for part in re.split(r"(\x1b\[[\d;]*m)", line):
            if not part.startswith("\x1b["):
                text.append(part)
                states += [dict(state)] * len(part)
                continue
            codes = [int(c) for c in part[2:-1].split(";") if c] or [0]
            while codes:
                code = codes.pop(0)
                if code == 0:
                    state = {}
                elif code in ATTRIBUTES:
                    state[ATTRIBUTES[code]] = True
                elif code in (22, 27):
                    for name in ("bold", "dim") if code == 22 else ("reverse",):
                        state.pop(name, None)
                elif code in (38, 48):  # 256 or true colour: kept whole, so a test can see it
                    size = 1 if codes[0] == 5 else 3
                    state["fg" if code == 38 else "bg"] = tuple(codes[: size + 1])
                    del codes[: size + 1]
                elif 30 <= code <= 37 or 90 <= code <= 97:
                    state["fg"] = code
                elif 40 <= code <= 47 or 100 <= code <= 107:
                    state["bg"] = code
                elif code == 39:
                    state.pop("fg", None)
                elif code == 49:
                    state.pop("bg", None)
        lines.append(("".join(text), states))
    return lines


def _style_at(screen: str, pattern: str) -> dict[str, object]:
    """The SGR state of the first character of group 1 of ``pattern`` on ``screen``."""
    for text, states in _sgr_cells(screen):
        if match := re.search(pattern, text):
            return states[match.start(1)]
    raise AssertionError(f"{pattern!r} not on screen:\n{screen}")


# Injected in this order, so the alert of each severity comes from its own 10.0.0.N.
INJECTED = ("info", "low", "medium", "high", "critical")


def _inject_one_of_each_severity(engine: EngineProcess) -> None:
    for n, sev in enumerate(INJECTED, 1):
        request(
            engine, "alerts.inject", {"severity": sev, "title": f"{sev} x", "src": f"10.0.0.{n}"}
        )


def _severity_styles(tmux: Tmux) -> tuple[dict[str, dict], dict[str, dict]]:
    """How each severity's label is drawn in its alerts row and in the status bar."""
    tmux.wait_for(r"INFO +open +1 +10\.0\.0\.1")
    tmux.wait_for(r"open: CRIT 1 HIGH 1 MED 1 LOW 1 INFO 1")
    screen = tmux.screen(escapes=True)
    rows, bar = {}, {}
    for n, sev in enumerate(INJECTED, 1):
        label = LABEL[sev]
        rows[sev] = _style_at(screen, rf"({label}) +open +1 +10\.0\.0\.{n} ")
        bar[sev] = _style_at(screen, rf"open:.*\b({label}) 1")
    return rows, bar


def _assert_drawn(tmux: Tmux, expected: dict[str, dict[str, object]]) -> None:
    """Each severity's label, in its row and in the status bar, has exactly the weight (bold,
    reverse) and at least the colours ``expected``. Textual draws dim as a dimmer grey (37
    instead of the text's 97), not as the dim attribute."""
    rows, bar = _severity_styles(tmux)
    for sev, want in expected.items():
        for where, got in (("row", rows[sev]), ("status bar", bar[sev])):
            weight = {k: True for k in ("bold", "reverse") if got.get(k)}
            assert {k: v for k, v in want.items() if k not in ("fg", "bg")} == weight, (
                f"{sev} in the {where}: {got}, not {want}"
            )
            assert want.items() <= got.items(), f"{sev} in the {where}: {got}, not {want}"


def test_severities_in_16_colours_are_one_palette(engine, tmux):
    """On TERM=screen each severity has the same colour in the table and the status bar:
    CRIT bold bright white on red, HIGH bold bright red, MED bright yellow, LOW bright cyan,
    INFO dim."""
    _inject_one_of_each_severity(engine)
    tmux.start_console(engine.config)
    _assert_drawn(
        tmux,
        {
            "critical": {"bold": True, "fg": 97, "bg": 41},
            "high": {"bold": True, "fg": 91},
            "medium": {"fg": 93},
            "low": {"fg": 96},
            "info": {"fg": 37},
        },
    )


def test_severities_under_no_color_are_told_by_weight(engine, tmux):
    """NO_COLOR: CRIT reverse bold, HIGH bold, MED plain, LOW and INFO dim; none in the dark
    grey that red became before, on the near-black background."""
    _inject_one_of_each_severity(engine)
    tmux.start_console(engine.config, "NO_COLOR=1")
    _assert_drawn(
        tmux,
        {
            "critical": {"bold": True, "reverse": True, "fg": 97},
            "high": {"bold": True, "fg": 97},
            "medium": {"fg": 97},
            "low": {"fg": 37},
            "info": {"fg": 37},
        },
    )


def test_on_call_ban_the_attacker_and_acknowledge_its_alerts_in_few_keys(engine, tmux):
    """The on-call path: an alert is on screen, its attacker is banned for 24 hours and all its
    alerts are acknowledged with one note, in 8 keys besides the note's text."""

    def inject(src: str, sid: str, title: str) -> int:
        args = ("--severity", "high", "--src", src, "--rule", sid, "--title", title)
        return int(engine.cli("alerts", "inject", *args).stdout)

    other = inject("198.51.100.4", "2019102", "ET SCAN ssdp discovery")
    attacker = "203.0.113.9"
    ids = [
        inject(attacker, "2008860", "ET TELNET login failed"),
        inject(attacker, "2023019", "ET TELNET busybox"),
    ]
    pid = tmux.start_console(engine.config)
    tmux.wait_for(r"HIGH open +1 203\.0\.113\.9 .*ET TELNET busybox")
    keys = 0

    def press(*sent: str) -> None:
        nonlocal keys
        keys += len(sent)
        tmux.keys(*sent)

    press("b")
    tmux.wait_for(r"Ban 203\.0\.113\.9, the attacker of alert")
    press("Down", "Down", "Enter")  # the third length: 24 hours
    tmux.wait_for(r"Banned 203\.0\.113\.9 for 1d")
    press("Space", "Space")
    tmux.wait_for(r"2 selected")
    press("a")
    tmux.wait_for(r"Acknowledge 2 alerts")
    tmux.keys("attacker banned 24h, checking the cameras")
    press("Enter")
    tmux.wait_for(r"2 alerts acknowledged")
    assert keys <= 8
    (ban,) = request(engine, "bans.list")["bans"]
    assert ban["address"] == attacker
    assert 86000 < ban["left"] <= 86400
    for alert_id in ids:
        alert = request(engine, "alerts.get", {"id": alert_id})
        assert alert["state"] == "acknowledged"
        assert alert["ack_note"] == "attacker banned 24h, checking the cameras"
    assert request(engine, "alerts.get", {"id": other})["state"] == "open"
    tmux.keys("q")
    wait_gone(pid)
