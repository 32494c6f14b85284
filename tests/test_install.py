"""iotsec installed the way the README installs the service (a venv of its own, ``pip install
.``, the command linked elsewhere), and a wheel installed with ``--prefix``, run outside the
repository: the shipped packet rules, log filters and default credentials are found; and an
install that lost its packet rules says so instead of running on none.

To stay fast and offline-ish, the new environments get iotsec's dependencies from the tests'
own environment through a .pth file (``--no-deps``): that path holds the dependencies only, the
repository itself is never importable there (asserted).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from engine.control.client import Client
from engine.control.protocol import ControlError

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "engine", "console", "rules")
SITE = "lib/python{}.{}/site-packages".format(*sys.version_info[:2])
# Real OpenSSH lines: three failures from one host, one from another.
AUTH_LOG = "".join(
    f"Nov 24 13:45:{line}\n"
    for line in (
        "01 gw sshd[1234]: Failed password for root from 203.0.113.5 port 52514 ssh2",
        "02 gw sshd[1234]: Failed password for invalid user admin from 203.0.113.5 port 52514 ssh2",
        "04 gw sshd[1235]: Invalid user pi from 203.0.113.5 port 52530",
        "09 gw sshd[1240]: Failed password for root from 198.51.100.20 port 40022 ssh2",
        "10 gw sshd[1241]: Accepted publickey for ops from 192.0.2.10 port 50111 ssh2",
    )
)
PAIRS = (
    "from engine.scan.creds import shipped_pairs; print(sum(map(len, shipped_pairs().values())))"
)
WHERE = "import engine, engine.shipped; print(engine.__file__); print(engine.shipped.folder())"


def run(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that points at the repository or a config."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "IOTSEC_CONFIG", "VIRTUAL_ENV")}  # fmt: skip
    return {**env, **extra}


def new_venv(path: Path, *options: str) -> Path:
    """A venv with the tests' dependencies (not iotsec) importable; its python."""
    run(sys.executable, "-m", "venv", *options, path, cwd=path.parent)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (path / SITE / "iotsec-test-deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return path / "bin" / "python"


def shipped_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}  # fmt: skip


def wait_for_engine(engine: subprocess.Popen[bytes], socket: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert engine.poll() is None, "the engine exited (see engine.log)"
        try:
            Client(socket, client="test").close()
            return
        except ControlError:
            time.sleep(0.1)
    raise AssertionError("the engine did not answer within 20 s")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sources to build from (a build writes build/ and *.egg-info beside them);
    engine/rules stays the link to rules/ it is in the repository."""
    copy = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, copy / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".*", "*~"))  # fmt: skip
        else:
            shutil.copy(ROOT / name, copy / name)
    return copy


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the installed commands run: not the repository, with a config of its own."""
    work = tmp_path_factory.mktemp("elsewhere")
    (work / "auth.log").write_text(AUTH_LOG)
    (work / "iotsec.toml").write_text(
        f'[store]\npath = "{work / "state" / "iotsec.db"}"\n'
        f'[control]\nsocket = "{work / "run" / "control.sock"}"\n'
        '[[logwatch.jail]]\nname = "ssh"\nfilters = ["sshd"]\n'
        f'files = ["{work / "auth.log"}"]\nfrom_start = true\nmaxretry = 3\n'
    )
    return work


@pytest.fixture(scope="module")
def service(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's service install: ``python3 -m venv /opt/iotsec``, ``/opt/iotsec/bin/pip
    install .`` in the repository, ``ln -s /opt/iotsec/bin/iotsec /usr/local/bin/iotsec``; the
    linked command."""
    place = tmp_path_factory.mktemp("opt")
    venv = place / "iotsec"
    new_venv(venv)
    run(venv / "bin" / "pip", "install", "--quiet", "--no-deps", ".", cwd=source,
        env=clean_env())  # fmt: skip
    (place / "bin").mkdir()
    command = place / "bin" / "iotsec"
    command.symlink_to(venv / "bin" / "iotsec")
    return command


def test_the_service_install_finds_the_shipped_content(
    service: Path, elsewhere: Path, source: Path
) -> None:
    venv = service.resolve().parent.parent
    env = clean_env()
    where = run(venv / "bin" / "python", "-c", WHERE, cwd=elsewhere, env=env).stdout.split()
    assert Path(where[0]).is_relative_to(venv) and not Path(where[0]).is_relative_to(ROOT)
    # Every shipped file is in the install, not only the packet rules.
    assert shipped_files(Path(where[1])) == shipped_files(source / "rules")

    config = ("--config", elsewhere / "iotsec.toml")
    checked = json.loads(run(service, "rules", "check", "--json", *config, cwd=elsewhere,
                             env=env).stdout)  # fmt: skip
    assert checked["accepted"] > 0 and checked["rejected"] == []
    tested = json.loads(run(service, "logs", "test", elsewhere / "auth.log", "sshd", "--json",
                            "--maxretry", "3", cwd=elsewhere, env=env).stdout)  # fmt: skip
    assert tested["hosts"] == {"203.0.113.5": 3, "198.51.100.20": 1}
    assert tested["banned"] == ["203.0.113.5"]
    assert int(run(venv / "bin" / "python", "-c", PAIRS, cwd=elsewhere, env=env).stdout) > 0

    log = (elsewhere / "engine.log").open("wb")
    engine = subprocess.Popen([service, "engine", *config], cwd=elsewhere, env=env,
                              stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    try:
        wait_for_engine(engine, elsewhere / "run" / "control.sock")
        deadline = time.monotonic() + 20
        while True:
            logs = json.loads(run(service, "logs", "--json", *config, cwd=elsewhere,
                                  env=env).stdout)  # fmt: skip
            (jail,) = logs["jails"]
            if jail["total_failed"] == 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (jail["state"], jail["filters"], jail["total_failed"]) == ("running", ["sshd"], 4)
        status = json.loads(run(service, "status", "--json", *config, cwd=elsewhere,
                                env=env).stdout)  # fmt: skip
        content = status["content"]
        assert content["problems"] == [] and Path(content["folder"]) == Path(where[1])
        assert content["packet_rules"] == checked["accepted"] == status["rules"]["running"]
        assert content["log_filters"] == 1 and content["shipped_filters"] >= 6
        assert content["credential_pairs"] > 0
        text = run(service, "status", *config, cwd=elsewhere, env=env).stdout
        assert f"{content['packet_rules']} packet rules; log filters: 1 in jails" in text
    finally:
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(timeout=30) == 0
        log.close()


@pytest.fixture(scope="module")
def prefix(service: Path, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel installed with ``pip install --prefix``; the prefix."""
    where = tmp_path_factory.mktemp("prefix")
    pip = service.resolve().parent / "pip"
    run(pip, "wheel", "--quiet", "--no-deps", ".", "-w", where / "wheels", cwd=source,
        env=clean_env())  # fmt: skip
    (wheel,) = (where / "wheels").glob("iotsec-*.whl")
    # --ignore-installed: this pip's own venv has iotsec already.
    run(pip, "install", "--quiet", "--no-deps", "--ignore-installed", "--prefix", where, wheel,
        cwd=where, env=clean_env())  # fmt: skip
    return where


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A python without iotsec (it finds iotsec where PYTHONPATH says)."""
    return new_venv(tmp_path_factory.mktemp("bare") / "venv", "--without-pip")


def test_a_prefix_install_finds_the_shipped_content(
    prefix: Path, bare: Path, elsewhere: Path
) -> None:
    env = clean_env(PYTHONPATH=str(prefix / SITE))
    where = run(bare, "-c", WHERE, cwd=elsewhere, env=env).stdout.split()
    assert Path(where[0]).is_relative_to(prefix) and Path(where[1]).is_relative_to(prefix)

    command = (bare, prefix / "bin" / "iotsec")
    checked = json.loads(run(*command, "rules", "check", "--json", "--config",
                             elsewhere / "iotsec.toml", cwd=elsewhere, env=env).stdout)  # fmt: skip
    assert checked["accepted"] > 0 and checked["rejected"] == []
    tested = json.loads(run(*command, "logs", "test", elsewhere / "auth.log", "sshd", "--json",
                            cwd=elsewhere, env=env).stdout)  # fmt: skip
    assert tested["matched"] == 4
    assert int(run(bare, "-c", PAIRS, cwd=elsewhere, env=env).stdout) > 0


def test_an_install_without_its_packet_rules_says_so(
    prefix: Path, bare: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    for package in ("engine", "console"):
        shutil.copytree(prefix / SITE / package, site / package)
    shutil.rmtree(site / "engine" / "rules" / "packet")
    missing = f"no shipped packet rules (packet/*.rules) in {site / 'engine' / 'rules'}"
    env = clean_env(PYTHONPATH=str(site))
    config = ("--config", tmp_path / "iotsec.toml")
    (tmp_path / "iotsec.toml").write_text(
        f'[store]\npath = "{tmp_path / "iotsec.db"}"\n'
        f'[control]\nsocket = "{tmp_path / "control.sock"}"\n'
    )
    cli = (bare, "-m", "console.cli")

    checked = subprocess.run([*map(str, cli), "rules", "check", *map(str, config)], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert checked.returncode == 1 and missing in checked.stderr
    own = tmp_path / "own.rules"
    own.write_text('alert tcp any any -> any 23 (msg:"telnet"; flow:to_server; sid:1000001;)\n')
    assert "1 rules accepted" in run(*cli, "rules", "check", own, *config, cwd=tmp_path,
                                     env=env).stdout  # fmt: skip

    log = (tmp_path / "engine.log").open("wb")
    engine = subprocess.Popen([bare, "-m", "engine", *config], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    try:
        wait_for_engine(engine, tmp_path / "control.sock")
        status = json.loads(run(*cli, "status", "--json", *config, cwd=tmp_path,
                                env=env).stdout)  # fmt: skip
        assert status["parts"]["detect"] == "error" and status["rules"]["accepted"] == 0
        assert missing in status["rules"]["reload_error"]
        assert [p for p in status["content"]["problems"] if missing in p]
        assert status["content"]["credential_pairs"] > 0  # what is there is still counted
        text = run(*cli, "status", *config, cwd=tmp_path, env=env).stdout
        assert f"not loaded: {missing}" in text
        assert [
            line for line in text.splitlines() if line.startswith("missing ") and missing in line
        ]
    finally:
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(timeout=30) == 0
        log.close()
    assert missing in (tmp_path / "engine.log").read_text()
