"""The systemd unit's hardening: only serial device classes, the capabilities the engine
needs, and a unit systemd itself reads without complaint."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import ROOT, require_tool

UNIT = ROOT / "iotsec.service"


def _settings() -> list[tuple[str, str]]:
    pairs = []
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    return pairs


def test_devices_are_closed_but_for_serial_lines() -> None:
    settings = _settings()
    assert ("DevicePolicy", "closed") in settings
    allowed = {value for key, value in settings if key == "DeviceAllow"}
    assert allowed == {f"char-{group} rw" for group in
                       ("ttyS", "ttyUSB", "ttyACM", "ttyAMA", "rfcomm", "pts")}  # fmt: skip
    capabilities = dict(settings)["CapabilityBoundingSet"].split()
    assert set(capabilities) == {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_CHOWN", "CAP_FOWNER",
                                 "CAP_DAC_READ_SEARCH"}  # fmt: skip
    assert ("NoNewPrivileges", "yes") in settings and ("ProtectSystem", "strict") in settings


def test_systemd_reads_the_unit_without_a_warning(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    # verify checks that ExecStart exists: point it at a program that does.
    unit = tmp_path / "iotsec.service"
    unit.write_text("\n".join(
        "ExecStart=/bin/true" if line.startswith("ExecStart=") else line
        for line in UNIT.read_text().splitlines()))  # fmt: skip
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(unit) not in done.stderr, done.stderr  # an unknown key or a bad value
