"""Following one log file as fail2ban does, so that no line is read twice and none is skipped.

A file is known by its inode and a hash of its first line, and read up to the end of its last
whole line (the offset). Each read checks the path again:

- another inode at the path (rename rotation, or deleted and created again): the rest of the
  old file is read through the handle still open on it, then the new file from its start;
- the same file, shorter than the offset or with another first line (``copytruncate``): the
  lines past the offset are read from the rotated copy (``name.1``, ``name-20261124``, found by
  the first line's hash), then the file from its start;
- no file at the path yet: nothing until it appears, then all of it.

A saved position (the engine keeps them in the store) resumes the file where it stopped; when
the file was rotated meanwhile, the old copy is found by inode or first line and finished
first. A file with no saved position is read from its end, unless ``from_start``.

Given a :class:`~engine.logwatch.access.LogAccess`, every open (the first, each one after a
rotation, the rotated copies) keeps to its rules, and a file they refuse is not read
(``state`` "refused"); without one (``iotsec logs follow``, run as the user) the kernel's
permissions are the only rule.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from engine.logwatch.access import LogAccess, Refused
from engine.logwatch.lines import MAX_LINE, decode

log = logging.getLogger("iotsec.logwatch")

HEAD_BYTES = 4096  # the first line's hash covers at most this much
CHUNK = 1 << 20
TAIL_BYTES = 1 << 20  # last_lines looks this far back at most
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".z")


@dataclass(frozen=True)
class Position:
    """Where a file was read up to: its inode, its first line's hash ("" while it has no whole
    first line) and the offset just past the last line read."""

    inode: int
    head: str
    offset: int


def head_of(handle: BinaryIO) -> str:
    """The hash of the first line of an open file ("" while the first line is not whole)."""
    start = os.pread(handle.fileno(), HEAD_BYTES, 0)
    end = start.find(b"\n")
    if end < 0 and len(start) < HEAD_BYTES:
        return ""
    return hashlib.sha256(start if end < 0 else start[: end + 1]).hexdigest()


class Follower:
    """One followed path; :meth:`read` returns the lines written since the last call."""

    def __init__(self, path: str | Path, saved: Position | None = None, from_start: bool = False,
                 access: LogAccess | None = None, beneath: str | None = None) -> None:  # fmt: skip
        """``beneath``: the directory a glob found ``path`` below (see LogAccess.open)."""
        self.path = Path(path)
        self.from_start = from_start
        self.access = access
        self.beneath = beneath
        self._saved = saved
        self._first = True  # no open tried yet: a file there now is "new" (read from its end)
        self._file: BinaryIO | None = None
        self._inode = 0
        self._head = ""
        self._seen = (-1, 0)  # the size and modification time the last check saw
        self.offset = 0
        self._skipping = False  # inside a line longer than MAX_LINE, already given cut
        self.state = "waiting"
        self.error = ""
        self.lines = 0
        self.rotations = 0
        self.truncations = 0
        self.behind = False  # the last read stopped at max_lines: more is waiting
        # Opened now, so that "the end" is where the file ended when following began.
        self._pending: list[str] = []
        self._open(self._pending)

    @property
    def position(self) -> Position | None:
        if self._file is None:
            return None
        return Position(self._inode, self._head, self.offset)

    @property
    def size(self) -> int | None:
        """The file's size when it was last looked at (None while it is not open)."""
        return self._seen[0] if self._file is not None else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self, max_lines: int = 10_000) -> list[str]:
        """The whole lines written since the last read (at most about ``max_lines``; ``behind``
        says when more are waiting)."""
        out, self._pending = self._pending, []
        if self._file is None:
            self._open(out)
            if self._file is None:
                return out
        try:
            # A found file is looked at itself: a link put in its place is another file.
            here = os.stat(self.path, follow_symlinks=self.beneath is None)
        except FileNotFoundError:
            here = None  # deleted or renamed away: the writer may still append to it
        except OSError as exc:
            here = None
            self._fail(exc)
        if here is not None and here.st_ino != self._inode:
            self._read(out, None, drain=True)
            self.close()
            self.rotations += 1
            log.info("logwatch: %s was rotated or replaced; reading the new file", self.path)
            self._open(out)
            if self._file is None:
                return out
        else:
            self._check_truncation(out)
        self._read(out, max_lines)
        self.lines += len(out)
        return out

    # -- opening ------------------------------------------------------------------------------

    def _open(self, out: list[str]) -> None:
        first, self._first = self._first, False
        try:
            handle = open_log(self.path, self.access, self.beneath)
        except FileNotFoundError:
            self.state = "missing"
            return
        except Refused as exc:
            self._refuse(str(exc))
            return
        except OSError as exc:
            self._fail(exc)
            return
        stat = os.fstat(handle.fileno())
        self._file, self._inode, self._head = handle, stat.st_ino, head_of(handle)
        self._seen = (stat.st_size, stat.st_mtime_ns)
        self._skipping = False
        self.state, self.error = "following", ""
        saved, self._saved = self._saved, None
        if saved is not None:
            same = saved.inode == self._inode and (not saved.head or saved.head == self._head)
            if same and stat.st_size >= saved.offset:
                self.offset = saved.offset
                return
            self._catch_up(saved, out)  # rotated or truncated while we were not running
            self.offset = 0
        elif first and not self.from_start:
            self.offset = _end_of_last_line(handle, stat.st_size)
        else:
            self.offset = 0

    def _fail(self, exc: OSError) -> None:
        message = f"{self.path}: {exc.strerror or exc}"
        if message != self.error:
            log.warning("logwatch: cannot read %s", message)
        self.state, self.error = "error", message

    def _refuse(self, message: str) -> None:
        if message != self.error:
            log.warning("logwatch: not reading %s", message)
        self.state, self.error = "refused", message

    # -- truncation -----------------------------------------------------------------------------

    def _check_truncation(self, out: list[str]) -> None:
        assert self._file is not None
        stat = os.fstat(self._file.fileno())
        size = stat.st_size
        # The time too: a file truncated and refilled to the same size between two reads.
        if (size, stat.st_mtime_ns) == self._seen:
            return
        self._seen = (size, stat.st_mtime_ns)
        head = head_of(self._file)
        if size >= self.offset and (not self._head or head == self._head):
            self._head = head
            return
        self.truncations += 1
        log.info("logwatch: %s was truncated; catching up from its rotated copy", self.path)
        self._catch_up(Position(self._inode, self._head, self.offset), out)
        self._head, self.offset, self._skipping = head, 0, False

    def _catch_up(self, was: Position, out: list[str]) -> None:
        """Read the lines past ``was.offset`` from the rotated copy of the file ``was`` was."""
        # The copies are found by listing the directory, so they keep a found file's rules.
        beneath = str(self.path.parent) if self.access is not None else None
        copies = self._rotated_copies()
        for n, copy in enumerate(copies):
            try:
                with open_log(copy, self.access, beneath) as handle:
                    stat = os.fstat(handle.fileno())
                    if stat.st_size < was.offset:
                        continue
                    if stat.st_ino != was.inode and not (was.head and head_of(handle) == was.head):
                        continue
                    before = len(out)
                    self._drain_copy(handle, was.offset, out)
                    log.info("logwatch: %d lines of %s read from %s", len(out) - before,
                             self.path, copy)  # fmt: skip
            except (OSError, Refused):
                continue
            self._read_later_generations(reversed(copies[:n]), copy, out)
            return
        if was.offset:
            log.warning(
                "logwatch: %s was rotated and its old copy was not found: lines after offset %d"
                " of the old file are not read", self.path, was.offset,
            )  # fmt: skip

    def _read_later_generations(self, later: Iterable[Path], found: Path, out: list[str]) -> None:
        """Read whole the copies rotated after ``found`` and before the file now at the path:
        the generations written while nothing followed (two rotations while the engine was
        stopped, or two ``copytruncate`` runs between two reads). They are the copies of the
        same naming (``name.2`` then ``name.1``; ``name-20261124`` then ``name-20261125``)
        among ``later`` (the copies modified after ``found``, oldest first); the file now at
        the path is not one of them."""
        beneath = str(self.path.parent) if self.access is not None else None
        current = self._file
        for copy in later:
            if _suffix_shape(copy.name) != _suffix_shape(found.name):
                continue
            try:
                with open_log(copy, self.access, beneath) as handle:
                    if current is not None and _same_file(handle, current):
                        continue
                    before = len(out)
                    self._drain_copy(handle, 0, out)
                    log.info("logwatch: %d lines of %s read from the later copy %s",
                             len(out) - before, self.path, copy)  # fmt: skip
            except (OSError, Refused):
                continue

    def _rotated_copies(self) -> list[Path]:
        """The rotated copies of the file, newest first (by modification time)."""
        name = self.path.name
        try:
            siblings = list(self.path.parent.iterdir())
        except OSError:
            return []
        copies = []
        for sibling in siblings:
            rest = sibling.name[len(name) :]
            if sibling.name.startswith(name) and rest[:1] in (".", "-", "_") and not \
                    sibling.name.lower().endswith(COMPRESSED):  # fmt: skip
                try:
                    copies.append((sibling.stat().st_mtime_ns, sibling))
                except OSError:
                    continue
        return [path for _, path in sorted(copies, reverse=True)]

    def _drain_copy(self, handle: BinaryIO, offset: int, out: list[str]) -> None:
        saved = (self._file, self.offset, self._skipping)
        self._file, self.offset, self._skipping = handle, offset, False
        try:
            self._read(out, None, drain=True)
        finally:
            self._file, self.offset, self._skipping = saved

    # -- reading --------------------------------------------------------------------------------

    def _read(self, out: list[str], max_lines: int | None, drain: bool = False) -> None:
        """Lines from the offset to the end; with ``drain`` the file is finished, so a last
        line without its newline is read too."""
        assert self._file is not None
        fd = self._file.fileno()
        self.behind = False
        while True:
            data = os.pread(fd, CHUNK, self.offset)
            if not data:
                return
            start = 0
            if self._skipping:
                end = data.find(b"\n")
                if end < 0:
                    self.offset += len(data)
                    continue
                self._skipping = False
                start = end + 1
            last = data.rfind(b"\n")
            if last >= start:
                out.extend(decode(raw) for raw in data[start:last].split(b"\n"))
                start = last + 1
            rest = len(data) - start
            if rest > MAX_LINE:
                out.append(decode(data[start:]))
                self._skipping = True  # the rest of this line, up to its newline
                start = len(data)
            elif drain and rest and len(data) < CHUNK:
                out.append(decode(data[start:]))
                start = len(data)
            self.offset += start
            if len(data) < CHUNK:
                return
            if max_lines is not None and len(out) >= max_lines:
                self.behind = True
                return


def _suffix_shape(name: str) -> str:
    """A copy's name with its digits blanked: copies of one rotation scheme share it."""
    return "".join("#" if c.isdigit() else c for c in name)


def _same_file(a: BinaryIO, b: BinaryIO) -> bool:
    one, two = os.fstat(a.fileno()), os.fstat(b.fileno())
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)


def _end_of_last_line(handle: BinaryIO, size: int) -> int:
    """The offset just past the last newline (a line being written is read once whole)."""
    start = max(0, size - 65536)
    block = os.pread(handle.fileno(), size - start, start)
    newline = block.rfind(b"\n")
    return start + newline + 1 if newline >= 0 else (0 if start == 0 else size)


def open_log(path: str | Path, access: LogAccess | None, beneath: str | None = None) -> BinaryIO:
    """``path`` opened for reading under ``access``'s rules (Refused when they do not allow
    it), or as the kernel allows when there are none."""
    if access is None:
        return open(path, "rb")
    return access.open(str(path), beneath)


def last_lines(path: str, count: int, access: LogAccess | None = None,
               beneath: str | None = None) -> list[str]:  # fmt: skip
    """The last ``count`` lines of a file (of its last MiB at most); none when it cannot be
    read or ``access`` refuses it."""
    try:
        with open_log(path, access, beneath) as handle:
            size = os.fstat(handle.fileno()).st_size
            start = max(0, size - TAIL_BYTES)
            data = os.pread(handle.fileno(), size - start, start)
    except (OSError, Refused):
        return []
    raw = data.split(b"\n")
    if start:
        raw = raw[1:]  # the first piece may be the end of a line
    if raw and raw[-1] == b"":
        raw.pop()
    return [decode(r) for r in raw[-count:]]
