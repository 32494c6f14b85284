"""End to end: the real ``iotsec console`` in a real terminal (tmux at 80x24, TERM=screen),
read back from the screen, against a real engine.

Each test uses its own tmux server (``tmux -L``) and kills only that server.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_helpers import request

from engine.control.client import Client
from tests.conftest import (
    ROOT,
    EngineProcess,
    SerialDevice,
    require_tool,
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
    ) -> int:
        """Run ``iotsec --config CONFIG console`` (or other ``args``) in an 80x24 window; the
        pane's process id (the console's, unless ``prefix`` puts a wrapper in front of it)."""
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
        self("new-session", "-d", "-s", "console", "-x", "80", "-y", "24", shell)
        return int(self("list-panes", "-t", "console", "-F", "#{pane_pid}").strip())

    def screen(self, *, escapes: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "console")

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
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


def test_without_an_engine_the_console_starts_a_private_one_and_stops_it(tmp_path, tmux):
    config = write_config(tmp_path)
    pid = tmux.start_console(config)
    engine_pid = int(tmux.wait_for(r"● private engine pid (\d+)").group(1))
    assert _running(engine_pid)
    cmdline = Path(f"/proc/{engine_pid}/cmdline").read_text().split("\0")
    assert cmdline[1:4] == ["-m", "engine", "--socket"]
    socket = Path(cmdline[4])
    assert socket.parent.name.startswith("iotsec-console-")
    assert socket.parent.stat().st_mode & 0o777 == 0o700
    assert cmdline[5:7] == ["--config", str(config)]

    # It is a real engine: what it raises shows up in the console.
    with Client(socket) as client:
        client.request("alerts.inject", {"severity": "high", "title": "from the private engine"})
    tmux.wait_for(r"HIGH open .*from the private engine")

    tmux.keys("q")
    wait_gone(pid)
    wait_gone(engine_pid)
    assert not socket.parent.exists()


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
    tmux.wait_for(r"ttyCAM 115200 8N1 connected")
    tmux.wait_for(r"(?m)^/ #")
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
