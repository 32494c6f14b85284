"""The lab's serial device: the far end of a socat pty pair, behaving like an IP camera's UART.

On power-up it prints a U-Boot banner and counts down to autoboot; a key during the countdown
drops to the U-Boot prompt (`help`, `printenv`, `version`, `boot`), otherwise the kernel boots
and a BusyBox root shell appears without any login, as on many cheap cameras (``--user``
puts a getty with one account in front of it). ``--uboot FILE`` replays a recorded U-Boot
session instead of the built-in one: its ``## boot`` section is the banner, the other sections
answer the commands they are named after. The shell also answers ``noise`` (bytes a wrong baud
rate or a binary file would send) and ``flood N`` (N bytes of log lines at full speed).

socat runs this module with its standard input and output joined to the pty (`EXEC:`), so
``python -m engine.lab.serial_device`` is the device.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

UBOOT_BANNER = """\

U-Boot 2014.04 (Mar 12 2019 - 10:21:55)

CPU: XM530 (ARMv7 Cortex-A7 @ 800MHz)
DRAM:  64 MiB
SF: Detected XM25QH64A with page size 256 Bytes, erase size 64 KiB, total 8 MiB
In:    serial
Out:   serial
Err:   serial
Net:   eth0
"""
AUTOBOOT_PROMPT = "Hit any key to stop autoboot: "
ENVIRONMENT = """\
bootargs=mem=35M console=ttyAMA0,115200 root=/dev/mtdblock1 rootfstype=cramfs init=/linuxrc \
mtdparts=xm_sfc:256K(boot),3520K(romfs),2560K(user),1280K(web),256K(custom),320K(mtd)
bootcmd=sf probe 0;sf read 0x80007fc0 0x40000 0x300000;bootm 0x80007fc0
bootdelay=1
baudrate=115200
ethaddr=00:12:41:aa:bb:cc
ipaddr=192.168.1.10
serverip=192.168.1.107

Environment size: 512/65532 bytes
"""
UBOOT_HELP = """\
boot    - boot default, i.e., run 'bootcmd'
printenv- print environment variables
setenv  - set environment variables
"""
KERNEL_LOG = """\
## Booting kernel from Legacy Image at 80007fc0 ...
   Image Name:   Linux-3.10.103+
   Image Type:   ARM Linux Kernel Image (uncompressed)
   Verifying Checksum ... OK

Starting kernel ...

[    0.000000] Booting Linux on physical CPU 0x0
[    0.000000] Linux version 3.10.103+ (xm@ubuntu) (gcc version 4.9.4) #12 PREEMPT
[    0.000000] Kernel command line: {cmdline}
{partitions}[    1.200000] VFS: Mounted root (cramfs filesystem) readonly on device 31:1.
[    1.210000] Freeing unused kernel memory: 120K (c03e2000 - c0400000)
"""
BUSYBOX_BANNER = """
BusyBox v1.20.2 (2019-03-12 10:18:02 CST) built-in shell (ash)
Enter 'help' for a list of built-in commands.

"""
SHELL_PROMPT = "/ # "
SHELL_ANSWERS = {
    "id": "uid=0(root) gid=0(root)",
    "whoami": "root",
    "uname -a": "Linux (none) 3.10.103+ #12 PREEMPT Tue Mar 12 10:20:11 CST 2019 armv7l GNU/Linux",
    "cat /proc/mtd": 'dev:    size   erasesize  name\nmtd0: 00040000 00010000 "boot"\n'
    'mtd1: 00370000 00010000 "romfs"\nmtd2: 00280000 00010000 "user"',
    "busybox": "BusyBox v1.20.2 (2019-03-12 10:18:02 CST) multi-call binary.",
    "ls": "bin   dev   etc   lib   linuxrc  mnt   proc  root  sbin  sys   tmp   usr   var",
}
# What a wrong baud rate, a binary file or a hostile device sends: C1 bytes, invalid UTF-8,
# sequences that would retitle, clear or reprogram a terminal, and a coloured word.
NOISE = (
    b"\x9b31m\x85\x8d\x90\x9c\x9f \xff\xfe\xc3\x28 "
    b"\x1b]0;pwned\x07\x1b[2J\x1b[?1049h\x1bP+q\x1b\\\x07"
    b"\x1b[31mred\x1b[0m done\n"
)
FLOOD_LINE = b"[%10.6f] mmc0: block %08d read ok, crc 0x%08x\r\n"


@dataclass
class Recording:
    """A recorded U-Boot session: the banner, the prompt, and each command's answer."""

    banner: str = UBOOT_BANNER
    prompt: str = "XM530 # "
    answers: dict[str, str] = field(default_factory=dict)

    @property
    def bootargs(self) -> str:
        match = re.search(r"^bootargs=(.*)$", self.answers.get("printenv", ""), re.M)
        return match.group(1) if match else ""


BUILT_IN = Recording(answers={"printenv": ENVIRONMENT, "help": UBOOT_HELP, "?": UBOOT_HELP})


def load_recording(path: Path) -> Recording:
    """Sections of a Markdown transcript (``## name`` and a fenced block each)."""
    sections: dict[str, str] = {}
    for match in re.finditer(
        r"^##\s*(\w+)\s*\n(.*?)^```[^\n]*\n(.*?)^```", path.read_text(), re.M | re.S
    ):
        sections[match.group(1).lower()] = match.group(3)
    recording = Recording(banner="\n" + sections.pop("boot", UBOOT_BANNER), answers={})
    for name, text in sections.items():
        lines = text.splitlines()
        first = next((n for n, line in enumerate(lines) if line.strip()), 0)
        typed = re.match(r"^(.*?[>#] )" + re.escape(name) + r"\s*$", lines[first] if lines else "")
        if typed:
            recording.prompt = typed.group(1)
            lines = lines[first + 1 :]
        recording.answers[name] = "\n".join(lines).strip("\n") + "\n"
    return recording


def write(text: str) -> None:
    """Serial lines end in CR LF."""
    os.write(1, text.replace("\n", "\r\n").encode())


def read_line(prompt: str, *, echo: bool = True) -> str | None:
    """One line typed on the console, echoed as a terminal would; None at end of input."""
    write(prompt)
    line = bytearray()
    while True:
        data = os.read(0, 1)
        if not data:
            return None
        if data in (b"\r", b"\n"):
            write("\n")
            return line.decode(errors="replace").strip()
        if data in (b"\x7f", b"\x08"):
            if line:
                line.pop()
                if echo:
                    os.write(1, b"\b \b")
            continue
        if data == b"\x03":
            write("^C\n")
            line.clear()
            write(prompt)
            continue
        line += data
        if echo:
            os.write(1, data)


def key_within(seconds: float) -> bool:
    ready, _, _ = select.select([0], [], [], seconds)
    if ready:
        os.read(0, 64)
    return bool(ready)


def uboot_shell(recording: Recording) -> None:
    while (command := read_line(recording.prompt)) is not None:
        if command in ("boot", "bootm", "reset"):
            return
        if command in recording.answers:
            write(recording.answers[command])
        elif command:
            write(f"Unknown command '{command.split()[0]}' - try 'help'\n")


def flood(size: int) -> None:
    sent = n = 0
    chunk = bytearray()
    while sent < size:
        line = FLOOD_LINE % (n / 1000, n, (n * 2654435761) & 0xFFFFFFFF)
        chunk += line
        n += 1
        if len(chunk) >= 16384 or sent + len(chunk) >= size:
            out = bytes(chunk[: size - sent])
            view = memoryview(out)
            while view:
                view = view[os.write(1, view) :]
            sent += len(out)
            chunk.clear()


def busybox_shell() -> None:
    while (command := read_line(SHELL_PROMPT)) is not None:
        if command in SHELL_ANSWERS:
            write(SHELL_ANSWERS[command] + "\n")
        elif command == "noise":
            os.write(1, NOISE)
        elif command.startswith("flood"):
            flood(int(command.split()[1]) if len(command.split()) > 1 else 1 << 20)
        elif command == "exit":
            return
        elif command:
            write(f"-sh: {command.split()[0]}: not found\n")


def getty(account: tuple[str, str]) -> bool:
    """A login prompt for one account; True once it is given."""
    while (user := read_line("(none) login: ")) is not None:
        if not user:
            continue
        password = read_line("Password: ", echo=False)
        if password is None:
            return False
        if (user, password) == account:
            return True
        write("Login incorrect\n")
    return False


def partitions(cmdline: str) -> str:
    """The kernel's cmdlinepart lines for the ``mtdparts=`` of ``cmdline`` (sizes in K)."""
    match = re.search(r"mtdparts=(\w+):(\S+)", cmdline)
    if not match:
        return ""
    parts = re.findall(r"(\d+)K\(([^)]+)\)", match.group(2))
    lines = [f"[    0.420000] {len(parts)} cmdlinepart partitions found on MTD device {match[1]}"]
    start = 0
    for size, name in parts:
        end = start + int(size) * 1024
        lines.append(f'[    0.430000] 0x{start:012x}-0x{end:012x} : "{name}"')
        start = end
    return "\n".join(lines) + "\n"


def power_on(recording: Recording, account: tuple[str, str] | None) -> None:
    write(recording.banner)
    if recording is BUILT_IN:
        write(f"{AUTOBOOT_PROMPT}1")
        stopped = key_within(1.0)
        write("\b\b\b 0 \n")
    else:
        stopped = key_within(1.0)
    if stopped:
        uboot_shell(recording)
    cmdline = recording.bootargs or BUILT_IN.bootargs
    write(KERNEL_LOG.replace("{cmdline}", cmdline).replace("{partitions}", partitions(cmdline)))
    if account is None:
        write(BUSYBOX_BANNER)
        busybox_shell()
        return
    write("\nPlease press Enter to activate this console.\n")
    while getty(account):  # after `exit`, the getty asks again
        write(BUSYBOX_BANNER)
        busybox_shell()


def plug(path: Path, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Power the device on the far end of a new pty whose link is ``path`` (socat); ending
    the returned process unplugs it (the pty and the link go away)."""
    socat = shutil.which("socat")
    if socat is None:
        raise FileNotFoundError("socat is not installed (Debian package socat)")
    device = " ".join([sys.executable, "-m", "engine.lab.serial_device", *args])
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [socat, f"PTY,link={path},rawer,echo=0", f"EXEC:{device}"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 5
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"socat did not create {path}: {log.read_text()[-300:]}")
        time.sleep(0.01)
    return proc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.lab.serial_device")
    parser.add_argument("--uboot", type=Path, help="a recorded U-Boot session (Markdown)")
    parser.add_argument("--user", help="a login prompt before the shell, for this user")
    parser.add_argument("--password", default="", help="the user's password")
    args = parser.parse_args(argv)
    recording = load_recording(args.uboot) if args.uboot else BUILT_IN
    power_on(recording, (args.user, args.password) if args.user else None)


if __name__ == "__main__":
    try:
        main()
    except OSError:  # the pty went away: the device was unplugged
        sys.exit(0)
