"""Following real files on disk: appends, rename rotation, copytruncate under load, deletion and
re-creation, files that appear later, restarts from a saved position (also across a rotation
made while nothing was running). Every test counts: the lines read equal the lines written,
in order, none twice."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from engine.logwatch.follower import Follower, Position
from engine.logwatch.lines import MARK, MAX_LINE


def write(path: Path, lines: list[str], mode: str = "a") -> None:
    with open(path, mode, encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)


def numbered(start: int, count: int) -> list[str]:
    return [f"Nov 24 13:45:01 gw sshd[1]: line {n}" for n in range(start, start + count)]


def test_a_new_file_is_read_from_its_end_then_every_appended_line(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 3))
    follower = Follower(log)
    assert follower.read() == []
    write(log, numbered(3, 5))
    assert follower.read() == numbered(3, 5)
    assert follower.read() == []
    assert follower.state == "following"


def test_from_start_reads_what_is_there(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 3))
    assert Follower(log, from_start=True).read() == numbered(0, 3)


def test_a_line_being_written_is_read_once_it_is_whole(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    follower = Follower(log)
    with open(log, "a") as handle:
        handle.write("Nov 24 13:45:01 gw sshd[1]: half")
        handle.flush()
        assert follower.read() == []
        handle.write(" and the rest\nnext")
        handle.flush()
        assert follower.read() == ["Nov 24 13:45:01 gw sshd[1]: half and the rest"]
        handle.write("\n")
    assert follower.read() == ["next"]


def test_a_file_opened_mid_line_waits_for_that_line(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_bytes(b"old\nhalf")
    follower = Follower(log)
    assert follower.read() == []
    with open(log, "ab") as handle:
        handle.write(b" done\n")
    assert follower.read() == ["half done"]


def test_bad_bytes_are_replaced_and_long_lines_cut(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    follower = Follower(log)
    long = "x" * (3 * MAX_LINE)
    with open(log, "ab") as handle:
        handle.write(b"user \xff\xfe root\n" + long.encode() + b"\nafter\n")
    lines = follower.read()
    assert lines[0] == "user \ufffd\ufffd root"
    assert lines[1] == "x" * MAX_LINE + MARK
    assert lines[2] == "after"
    assert len(lines) == 3


def test_a_line_longer_than_a_read_is_cut_once(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    follower = Follower(log)
    with open(log, "ab") as handle:
        handle.write(b"y" * (3 << 20))
        handle.flush()
        assert follower.read() == ["y" * MAX_LINE + MARK]
        handle.write(b"y" * 100 + b"\nafter\n")
    assert follower.read() == ["after"]


def test_rename_rotation_finishes_the_old_file_then_reads_the_new(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 2))
    follower = Follower(log)
    write(log, numbered(2, 3))
    log.rename(tmp_path / "auth.log.1")
    assert follower.read() == numbered(2, 3)  # renamed away, no new file yet: still read
    with open(tmp_path / "auth.log.1", "a") as handle:
        handle.write(numbered(5, 1)[0] + "\n")  # the daemon has not reopened yet
    write(log, numbered(6, 4), mode="w")
    assert follower.read() == numbered(5, 5)
    assert follower.rotations == 1
    write(log, numbered(10, 1))
    assert follower.read() == numbered(10, 1)


def test_deleted_and_created_again(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 2))
    follower = Follower(log)
    write(log, numbered(2, 2))
    log.unlink()
    assert follower.read() == numbered(2, 2)
    assert follower.read() == []
    write(log, numbered(4, 3), mode="w")
    assert follower.read() == numbered(4, 3)


def test_a_file_that_does_not_exist_yet_is_read_whole_when_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    follower = Follower(log)
    assert follower.read() == [] and follower.state == "missing"
    write(log, numbered(0, 4))
    assert follower.read() == numbered(0, 4)
    assert follower.state == "following"


def test_an_unreadable_file_says_why(tmp_path: Path) -> None:
    follower = Follower(tmp_path)  # a directory: open() fails
    assert follower.read() == []
    assert follower.state == "error" and str(tmp_path) in follower.error


def test_copytruncate_catches_up_from_the_copy(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 2))
    follower = Follower(log)
    write(log, numbered(2, 3))
    shutil.copyfile(log, tmp_path / "auth.log.1")
    os.truncate(log, 0)
    write(log, numbered(5, 1))
    assert follower.read() == numbered(2, 4)
    assert follower.truncations == 1


def test_copytruncate_refilled_past_the_offset_is_still_seen(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 2))
    follower = Follower(log)
    write(log, numbered(2, 1))
    shutil.copyfile(log, tmp_path / "auth.log-20261124")
    os.truncate(log, 0)
    write(log, numbered(3, 50))  # longer than before: only the first line tells
    assert follower.read() == numbered(2, 51)


def test_copytruncate_under_load_loses_and_repeats_nothing(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    follower = Follower(log)
    lock = threading.Lock()  # logrotate's copy and truncate, between two writes
    written = 0
    done = threading.Event()

    def writer() -> None:
        nonlocal written
        with open(log, "a") as handle:
            while not done.is_set():
                with lock:
                    handle.write("".join(f"{line}\n" for line in numbered(written, 50)))
                    handle.flush()
                    written += 50

    def rotator() -> None:
        for n in range(5):
            time.sleep(0.05)
            with lock:
                copy = tmp_path / "auth.log.1"
                if copy.exists():
                    copy.rename(tmp_path / f"auth.log.{n + 2}")  # older copies move on
                shutil.copyfile(log, copy)
                os.truncate(log, 0)

    threads = [threading.Thread(target=writer), threading.Thread(target=rotator)]
    for thread in threads:
        thread.start()
    read: list[str] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        read += follower.read()
        time.sleep(0.002)
    done.set()
    for thread in threads:
        thread.join()
    read += follower.read()
    while follower.behind:  # a loaded machine may leave more than one read's worth
        read += follower.read()
    assert written > 1000 and follower.truncations == 5
    assert read == numbered(0, written)


def test_restart_resumes_at_the_saved_position(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 2))
    first = Follower(log)
    write(log, numbered(2, 3))
    assert first.read() == numbered(2, 3)
    saved = first.position
    first.close()
    write(log, numbered(5, 4))
    second = Follower(log, saved)
    assert second.read() == numbered(5, 4)


def test_restart_after_a_rotation_made_while_stopped(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 2))
    first = Follower(log)
    write(log, numbered(2, 1))
    first.read()
    saved = first.position
    first.close()
    write(log, numbered(3, 2))
    log.rename(tmp_path / "auth.log.1")
    write(log, numbered(5, 3), mode="w")
    assert Follower(log, saved).read() == numbered(3, 5)


def test_restart_after_a_copytruncate_made_while_stopped(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 2))
    first = Follower(log, from_start=True)
    first.read()
    saved = first.position
    first.close()
    write(log, numbered(2, 2))
    shutil.copyfile(log, tmp_path / "auth.log.1")
    os.truncate(log, 0)
    write(log, numbered(4, 1))
    assert Follower(log, saved).read() == numbered(2, 3)


def test_two_rotations_while_stopped_read_the_generation_between(tmp_path: Path) -> None:
    """A rename then a copytruncate while the engine was stopped (or before it opened the
    file): the old file's rest, the whole generation between, then the file now there."""
    log = tmp_path / "auth.log"
    write(log, numbered(0, 2))
    first = Follower(log, from_start=True)
    first.read()
    saved = first.position
    first.close()
    write(log, numbered(2, 2))
    log.rename(tmp_path / "auth.log.1")
    write(log, numbered(4, 3), mode="w")
    os.rename(tmp_path / "auth.log.1", tmp_path / "auth.log.2")
    shutil.copyfile(log, tmp_path / "auth.log.1")
    os.truncate(log, 0)
    write(log, numbered(7, 2))
    (tmp_path / "auth.log.bak").write_text("not a generation\n")  # another naming: left alone
    assert Follower(log, saved).read() == numbered(2, 7)


def test_two_copytruncates_between_reads(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 2))
    follower = Follower(log, from_start=True)
    assert follower.read() == numbered(0, 2)
    for start in (2, 5):
        write(log, numbered(start, 3))
        if (tmp_path / "auth.log.1").exists():
            os.rename(tmp_path / "auth.log.1", tmp_path / "auth.log.2")
        shutil.copyfile(log, tmp_path / "auth.log.1")
        os.truncate(log, 0)
    write(log, numbered(8, 1))
    assert follower.read() == numbered(2, 7)


def test_a_saved_position_of_a_file_that_was_replaced_reads_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    write(log, numbered(0, 3))
    stale = Position(inode=1, head="0" * 64, offset=10_000)  # no copy of it anywhere
    assert Follower(log, stale).read() == numbered(0, 3)
