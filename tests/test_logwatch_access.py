"""The rules for the log files the engine opens, on real files: what a glob finds, what the
config names, and the tricks that each rule is there for (tests/security drives them through
a real engine with real users)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from engine.logwatch.access import LogAccess, Refused, glob_base
from tests.conftest import require_root

ROOT_ONLY = LogAccess.for_owners(())


def read(path: Path, beneath: Path | None = None, access: LogAccess = ROOT_ONLY) -> bytes:
    with access.open(str(path), str(beneath) if beneath else None) as handle:
        return handle.read()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """logs/ with a real log, and a secret beside it."""
    require_root("files of another owner are made with chown")
    (tmp_path / "logs" / "app").mkdir(parents=True)
    (tmp_path / "logs" / "good.log").write_text("good\n")
    (tmp_path / "secret").write_text("secret\n")
    return tmp_path


def test_glob_base_is_the_directory_before_the_first_wildcard() -> None:
    assert glob_base("/var/log/*.log") == "/var/log"
    assert glob_base("/var/log/[ab]*/access.log") == "/var/log"
    assert glob_base("/*.log") == "/"


def test_a_found_file_reached_through_a_linked_directory_is_refused(tree: Path) -> None:
    (tree / "outside").mkdir()
    (tree / "outside" / "x.log").write_text("x\n")
    (tree / "logs" / "linked").symlink_to(tree / "outside")
    (tree / "logs" / "app" / "a.log").write_text("a\n")
    logs = tree / "logs"
    assert read(logs / "app" / "a.log", logs) == b"a\n"  # a real directory is walked into
    with pytest.raises(Refused, match=r"linked is a symbolic link; .* not read through links"):
        read(logs / "linked" / "x.log", logs)
    with pytest.raises(Refused, match="not below"):
        read(tree / "secret", logs)


def test_a_second_hard_link_is_refused(tree: Path) -> None:
    # What fs.protected_hardlinks stops users making on Debian, where it is not set.
    os.link(tree / "secret", tree / "logs" / "hard.log")
    for beneath in (tree / "logs", None):
        with pytest.raises(Refused, match="has 2 hard links"):
            read(tree / "logs" / "hard.log", beneath)


def test_owners_are_root_this_user_and_the_configured_ones(tree: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    log = tree / "logs" / "daemon.log"
    log.write_text("daemon\n")
    os.chown(log, nobody.pw_uid, -1)
    with pytest.raises(Refused, match=r"owned by nobody, not by root \(add the user"):
        read(log, tree / "logs")
    with pytest.raises(Refused, match="owned by nobody"):
        read(log)  # named in the config: the same rule
    allowed = LogAccess.for_owners(["nobody", "no-such-user-here"])
    assert allowed.names == ("root", "nobody")
    assert read(log, tree / "logs", allowed) == b"daemon\n"


def test_a_named_path_may_be_a_link_only_when_root_or_an_owner_made_it(tree: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    admins = tree / "logs" / "syslog"
    admins.symlink_to(tree / "logs" / "good.log")
    assert read(admins) == b"good\n"
    with pytest.raises(Refused, match="a symbolic link; a file a glob finds must not be a link"):
        read(admins, tree / "logs")
    planted = tree / "logs" / "planted"
    planted.symlink_to(tree / "secret")
    os.lchown(planted, nobody.pw_uid, -1)
    with pytest.raises(Refused, match="a symbolic link owned by nobody; a link named in files"):
        read(planted)


def test_a_fifo_is_refused_without_blocking(tree: Path) -> None:
    fifo = tree / "logs" / "fifo.log"
    os.mkfifo(fifo)
    for beneath in (tree / "logs", None):
        with pytest.raises(Refused, match="a FIFO; only regular files are read"):
            read(fifo, beneath)
