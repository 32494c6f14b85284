"""The lab's own engine (`iotsec lab up --engine`): its config, and `lab up` saying at once what
it lacks before it touches anything."""

from __future__ import annotations

import grp
import pwd
from pathlib import Path

import pytest

from engine.config import LabConfig, load_config
from engine.lab import engine as lab_engine
from engine.lab import lifecycle
from engine.lab.topology import LabError, Plan
from tests.conftest import require_root, run_as

LAB = LabConfig(prefix="iotcf", lan="10.253.57.0/24", outside="10.253.58.0/24")


def test_the_lab_engine_config_watches_the_lab(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SUDO_USER", "root")  # as `sudo make lab` run by root: no extra admin
    plan = Plan.from_config(LAB)
    path = tmp_path / "lab.toml"
    path.write_text(lab_engine.config_text(plan))
    config = load_config(path)
    assert config.capture.interfaces == ("lan0", "ext0")
    assert config.scan.scope == ("10.253.57.0/24",)
    assert config.respond.backend == "nftables"
    assert config.devices.learning == 0
    assert config.serial.open == ("/run/iotsec-lab/iotcf/ttyLAB0",)
    assert {j.name: j.filters for j in config.logwatch.jail} == {
        "lab-dropbear": ("dropbear",), "lab-mosquitto": ("mosquitto",)}  # fmt: skip
    assert config.control.socket_path() == lab_engine.socket_path(LAB)
    assert config.store.db_path().parent == lab_engine.directory(plan)


def test_the_user_who_ran_sudo_administers_the_lab_engine(tmp_path: Path, monkeypatch) -> None:
    nobody = pwd.getpwnam("nobody")
    monkeypatch.setenv("SUDO_USER", "nobody")
    path = tmp_path / "lab.toml"
    path.write_text(lab_engine.config_text(Plan.from_config(LAB)))
    config = load_config(path)
    assert config.control.roles.admin == ("nobody",)
    assert config.control.group == grp.getgrgid(nobody.pw_gid).gr_name


def test_lab_up_says_everything_it_lacks_before_touching_anything(monkeypatch) -> None:
    require_root("the check runs as another user")
    nobody = pwd.getpwnam("nobody")
    monkeypatch.setattr(lifecycle, "EXTRA", {"iotsec_no_such_module": "coap-server"})

    def check() -> str:
        try:
            lifecycle.up(LAB, engine=True)
        except LabError as exc:
            return str(exc)
        return "started"

    message = run_as(nobody.pw_uid, nobody.pw_gid, [], check)
    assert message.startswith("iotsec lab up needs root")
    assert "the lab extra (coap-server): pip install 'iotsec[lab]'" in message
    assert not Path("/run/iotsec-lab/iotcf").exists()


def test_an_unusable_lab_section_is_said_plainly() -> None:
    with pytest.raises(LabError, match=r"\[lab\] prefix"):
        lab_engine.socket_path(LabConfig(prefix="no/such"))
