"""Opening the files that users and records name: regular files only, within a size limit.

Every path the harness reads because somebody named it (a weight file, a config, a
records file, a record's ``dictionary_file``) is opened here. A path that is not a
regular file (a directory, a named pipe, a device, a socket) or that lies in one of the
kernel's virtual file systems (``/proc``, ``/sys``, ``/dev``, whose "files" report no
size and may never end) is refused before a byte is read, and so is a file larger than
the caller allows. The file is opened without blocking and checked on the descriptor
that is then read, so nothing can be swapped in between the check and the read.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

#: Kernel file systems whose entries are not data files, whatever ``stat`` says of them.
VIRTUAL_ROOTS = ("/proc", "/sys", "/dev")

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class RefusedFile(ValueError):
    """A named file that is not read; ``problem`` completes the sentence "``path`` …"."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = Path(path)
        self.problem = problem


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words ("a named pipe"); "a regular file" for one."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def virtual_root(path: str | os.PathLike[str]) -> str | None:
    """The kernel file system ``path`` resolves into (``/proc``, say), or None."""
    real = os.path.realpath(path)
    for root in VIRTUAL_ROOTS:
        if real == root or real.startswith(root + os.sep):
            return root
    return None


def check_regular(path: str | os.PathLike[str], info: os.stat_result, limit: int | None) -> None:
    """RefusedFile unless ``info`` (of ``path``) is a regular file of at most ``limit`` bytes."""
    if not stat.S_ISREG(info.st_mode):
        raise RefusedFile(path, f"is {kind_of(info.st_mode)}, not a regular file")
    if limit is not None and info.st_size > limit:
        raise RefusedFile(path, f"has {info.st_size} bytes, more than the {limit} allowed")


def open_regular(path: str | os.PathLike[str], limit: int | None = None) -> io.BufferedReader:
    """``path`` opened for reading in binary, if it is a regular file of at most ``limit``
    bytes (no limit if None); RefusedFile, saying why, if not."""
    root = virtual_root(path)
    if root is not None:
        raise RefusedFile(path, f"is in {root}, which holds no regular files")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # a named pipe opens at once, without a writer, and is refused below
    except FileNotFoundError:
        raise RefusedFile(path, "does not exist") from None
    except OSError as exc:
        raise RefusedFile(path, f"cannot be opened ({exc.strerror or exc})") from None
    try:
        check_regular(path, os.fstat(fd), limit)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], limit: int | None = None) -> bytes:
    """The bytes of ``path``, under :func:`open_regular`'s rules; at most the size it had when opened."""
    with open_regular(path, limit) as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            return handle.read(size)
        except OSError as exc:
            raise RefusedFile(path, f"cannot be read ({exc.strerror or exc})") from None


__all__ = ["VIRTUAL_ROOTS", "RefusedFile", "check_regular", "kind_of", "open_regular", "read_regular",
           "virtual_root"]
