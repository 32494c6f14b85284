"""The Debian packages the lab's devices and scenarios run, installed when missing (as root)."""

from __future__ import annotations

import os
import shutil
import subprocess

from engine.lab.topology import LabError

# program -> Debian package that provides it
PROGRAMS = {
    "ip": "iproute2",
    "ss": "iproute2",
    "openssl": "openssl",
    "mosquitto": "mosquitto",
    "mosquitto_pub": "mosquitto-clients",
    "mosquitto_sub": "mosquitto-clients",
    "snmpd": "snmpd",
    "dropbear": "dropbear-bin",
    "dropbearkey": "dropbear-bin",
    "dbclient": "dropbear-bin",
    "socat": "socat",
    "nmap": "nmap",
}
# Debian's plain busybox lacks telnetd and httpd; the static build has them.
BUSYBOX_APPLETS = {"telnetd", "httpd", "login", "sh", "syslogd"}


def missing() -> list[str]:
    """The packages to install before the lab can run, in a stable order."""
    wanted = {package for program, package in PROGRAMS.items() if shutil.which(program) is None}
    if not busybox_has(BUSYBOX_APPLETS):
        wanted.add("busybox-static")
    return sorted(wanted)


def busybox_has(applets: set[str]) -> bool:
    """Whether the busybox on PATH has every one of ``applets``."""
    busybox = shutil.which("busybox")
    if busybox is None:
        return False
    listed = subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout.split()
    return applets <= set(listed)


def can_install() -> bool:
    """Whether missing packages can be installed here (root with apt-get)."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure_installed() -> list[str]:
    """Install what is missing with apt-get (root only); the packages installed."""
    needed = missing()
    if not needed:
        return []
    if not can_install():
        raise LabError(f"the lab needs these Debian packages: {' '.join(needed)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *needed]
    done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode != 0:  # perhaps an old package list: refresh it once
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise LabError(
            f"apt-get could not install {' '.join(needed)}: {done.stderr.strip()[-300:]}"
        )
    return needed
