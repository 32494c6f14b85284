"""Which log files the engine may open. It reads them as root (the unit keeps
CAP_DAC_READ_SEARCH), so a link, FIFO or file that a user plants where a jail looks must not
make it read what that user may not, stall its reader, or feed it forged lines.

Every file is read only when, checked before opening and again on the open handle (fstat):

- it is a regular file (a FIFO would block the reader, a device is no log);
- it has one hard link (a second name may be a secret's: a hard link to /etc/shadow is a
  regular file owned by root; fs.protected_hardlinks stops that on Debian, not everywhere);
- it is owned by root, the engine's own user or a user of ``[logwatch] owners``: the one
  who writes the lines, so that nobody else's forged failures ban an address.

A file a glob finds (or a rotated copy found beside a followed file) must not be a link, nor
be reached through a link below the glob's fixed directory: each directory is opened with
O_NOFOLLOW and the file with O_NOFOLLOW relative to it, so a link swapped in between the
check and the open is refused too. A path named in ``files`` is the admin's own choice and
may be a link (``/var/log/syslog`` pointing into a managed tree), but only one owned by root
or an allowed owner: a user who can write in that directory cannot turn the path into a link
of their own.
"""

from __future__ import annotations

import errno
import glob
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

# O_NONBLOCK: opening a FIFO that slipped past the check returns at once instead of waiting
# for a writer (reading a regular file ignores the flag).
_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
}


class Refused(Exception):
    """A file the rules do not let the engine read; the message names the file and the rule."""


def glob_base(pattern: str) -> str:
    """The directory a glob searches below: its leading components without wildcards."""
    fixed = []
    for part in os.path.abspath(pattern).split(os.sep):
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or os.sep


@dataclass(frozen=True)
class LogAccess:
    """The owners whose files are read (uids, and their names for the messages)."""

    uids: frozenset[int]
    names: tuple[str, ...]

    @classmethod
    def for_owners(cls, owners: Iterable[str]) -> LogAccess:
        """Root, this process's user and the ``owners`` that exist on this system (the
        default names Ubuntu's syslog user, which Debian does not have)."""
        named = {0: "root", os.geteuid(): _user(os.geteuid())}
        for name in owners:
            try:
                named.setdefault(pwd.getpwnam(name).pw_uid, name)
            except KeyError:
                continue
        return cls(frozenset(named), tuple(dict.fromkeys(named.values())))

    def open(self, path: str, beneath: str | None = None) -> BinaryIO:
        """``path`` opened for reading if the rules allow it, else Refused; ``beneath`` is the
        directory it was found below (by a glob), None for a path named in the config.
        FileNotFoundError and other OSErrors pass through."""
        fd = self._open_found(path, beneath) if beneath is not None else self._open_named(path)
        try:
            self._check(path, os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "rb")

    def _open_named(self, path: str) -> int:
        here = os.lstat(path)
        if stat.S_ISLNK(here.st_mode):
            if here.st_uid not in self.uids:
                raise Refused(
                    f"{path}: a symbolic link owned by {_user(here.st_uid)}; a link named in"
                    f" files must be owned by {self._owners()}"
                )
            self._check(path, os.stat(path))
            return os.open(path, _READ)
        self._check(path, here)
        return _open_no_link(path, path)

    def _open_found(self, path: str, beneath: str) -> int:
        relative = os.path.relpath(path, beneath)
        parts = relative.split(os.sep)
        if relative.startswith(os.pardir) or os.path.isabs(relative):
            raise Refused(f"{path}: not below {beneath}, the directory its glob searches")
        directory = os.open(beneath, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            walked = beneath
            for part in parts[:-1]:
                walked = os.path.join(walked, part)
                try:
                    inner = os.open(part, _DIRECTORY, dir_fd=directory)
                except OSError as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP) and _is_link(part, directory):
                        raise Refused(
                            f"{path}: {walked} is a symbolic link; a file a glob finds is not"
                            f" read through links below {beneath}"
                        ) from None
                    raise
                os.close(directory)
                directory = inner
            name = parts[-1]
            here = os.stat(name, dir_fd=directory, follow_symlinks=False)
            if stat.S_ISLNK(here.st_mode):
                raise Refused(
                    f"{path}: a symbolic link; a file a glob finds must not be a link (name the"
                    " file it points to in files to read that)"
                )
            self._check(path, here)
            return _open_no_link(name, path, directory)
        finally:
            os.close(directory)

    def _check(self, path: str, status: os.stat_result) -> None:
        if not stat.S_ISREG(status.st_mode):
            kind = _KINDS.get(stat.S_IFMT(status.st_mode), "not a file")
            raise Refused(f"{path}: {kind}; only regular files are read")
        if status.st_nlink > 1:
            raise Refused(
                f"{path}: has {status.st_nlink} hard links; a log file is read only with one"
                " (another name could be a file the engine must not read)"
            )
        if status.st_uid not in self.uids:
            raise Refused(
                f"{path}: owned by {_user(status.st_uid)}, not by {self._owners()} (add the"
                " user to [logwatch] owners if it writes logs to be read)"
            )

    def _owners(self) -> str:
        return " or ".join(self.names)


def _open_no_link(name: str, path: str, directory: int | None = None) -> int:
    try:
        return os.open(name, _READ | os.O_NOFOLLOW, dir_fd=directory)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # made a link between the check and the open
            raise Refused(f"{path}: became a symbolic link while being opened") from None
        raise


def _is_link(name: str, directory: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
