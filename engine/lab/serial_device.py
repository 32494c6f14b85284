"""The lab's serial device: the far end of a socat pty pair, behaving like an IP camera's UART.

On power-up it prints a U-Boot banner and counts down to autoboot; a key during the countdown
drops to the U-Boot prompt (`help`, `printenv`, `boot`), otherwise the kernel boots and a
BusyBox root shell appears without any login, as on many cheap cameras. socat runs this module
with its standard input and output joined to the pty (`EXEC:`), so ``python -m
engine.lab.serial_device`` is the device.
"""

from __future__ import annotations

import os
import select
import sys

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
"""
KERNEL_LOG = """\
## Booting kernel from Legacy Image at 80007fc0 ...
   Image Name:   Linux-3.10.103+
   Image Type:   ARM Linux Kernel Image (uncompressed)
   Verifying Checksum ... OK

Starting kernel ...

[    0.000000] Booting Linux on physical CPU 0x0
[    0.000000] Linux version 3.10.103+ (xm@ubuntu) (gcc version 4.9.4) #12 PREEMPT
[    0.000000] Kernel command line: mem=35M console=ttyAMA0,115200 root=/dev/mtdblock1 init=/linuxrc
[    0.420000] 6 cmdlinepart partitions found on MTD device xm_sfc
[    0.430000] 0x000000000000-0x000000040000 : "boot"
[    0.440000] 0x000000040000-0x0000003b0000 : "romfs"
[    1.200000] VFS: Mounted root (cramfs filesystem) readonly on device 31:1.
[    1.210000] Freeing unused kernel memory: 120K (c03e2000 - c0400000)

BusyBox v1.20.2 (2019-03-12 10:18:02 CST) built-in shell (ash)
Enter 'help' for a list of built-in commands.

"""
SHELL_PROMPT = "/ # "
UBOOT_PROMPT = "XM530 # "
SHELL_ANSWERS = {
    "id": "uid=0(root) gid=0(root)",
    "whoami": "root",
    "uname -a": "Linux (none) 3.10.103+ #12 PREEMPT Tue Mar 12 10:20:11 CST 2019 armv7l GNU/Linux",
    "cat /proc/mtd": 'dev:    size   erasesize  name\nmtd0: 00040000 00010000 "boot"\n'
    'mtd1: 00370000 00010000 "romfs"\nmtd2: 00280000 00010000 "user"',
    "busybox": "BusyBox v1.20.2 (2019-03-12 10:18:02 CST) multi-call binary.",
    "ls": "bin   dev   etc   lib   linuxrc  mnt   proc  root  sbin  sys   tmp   usr   var",
}


def write(text: str) -> None:
    """Serial lines end in CR LF."""
    os.write(1, text.replace("\n", "\r\n").encode())


def read_line(prompt: str) -> str | None:
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
                os.write(1, b"\b \b")
            continue
        line += data
        os.write(1, data)


def key_within(seconds: float) -> bool:
    ready, _, _ = select.select([0], [], [], seconds)
    if ready:
        os.read(0, 64)
    return bool(ready)


def uboot_shell() -> None:
    while (command := read_line(UBOOT_PROMPT)) is not None:
        if command in ("boot", "bootm", "reset"):
            return
        if command == "printenv":
            write(ENVIRONMENT + "\nEnvironment size: 512/65532 bytes\n")
        elif command in ("help", "?"):
            write("boot    - boot default, i.e., run 'bootcmd'\nprintenv- print environment"
                  " variables\nsetenv  - set environment variables\n")  # fmt: skip
        elif command:
            write(f"Unknown command '{command.split()[0]}' - try 'help'\n")


def busybox_shell() -> None:
    while (command := read_line(SHELL_PROMPT)) is not None:
        if command in SHELL_ANSWERS:
            write(SHELL_ANSWERS[command] + "\n")
        elif command == "exit":
            return
        elif command:
            write(f"-sh: {command.split()[0]}: not found\n")


def power_on() -> None:
    write(UBOOT_BANNER)
    write(f"{AUTOBOOT_PROMPT}1")
    stopped = key_within(1.0)
    write("\b\b\b 0 \n")
    if stopped:
        uboot_shell()
    write(KERNEL_LOG)
    busybox_shell()


if __name__ == "__main__":
    try:
        power_on()
    except OSError:  # the pty went away: the device was unplugged
        sys.exit(0)
