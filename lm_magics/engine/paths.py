"""Which paths lm_magics reads: regular files only, checked before they are opened for reading.

Opening a named pipe for reading blocks until something writes to it, ``/dev/zero`` never ends and
``/dev/tty`` waits for the keyboard: reading anything but a regular file (or a symlink to one) hangs or
exhausts memory. Readers call :func:`not_regular` for a message before touching the path, and
:func:`open_regular` to open it without a window in which the path could be swapped for a pipe.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, Optional

__all__ = ["kind_of", "not_regular", "open_regular", "NotRegularFile"]


class NotRegularFile(OSError):
    """The path exists but is not a regular file; ``str()`` says what it is ('a named pipe (FIFO)')."""


def kind_of(mode: int) -> Optional[str]:
    """None for a regular file's st_mode, else what it is: 'a directory', 'a named pipe (FIFO)', ..."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def not_regular(path: "str | os.PathLike") -> Optional[str]:
    """None for a regular file (or a symlink to one), else what the path is ('a character device').

    A path that cannot be stat'ed (missing, no permission, a NUL byte) is None too: the caller's own
    checks say what is wrong with it."""
    try:
        return kind_of(os.stat(path).st_mode)
    except (OSError, ValueError):
        return None


def open_regular(path: "str | os.PathLike", buffering: int = 1 << 16) -> BinaryIO:
    """Open a regular file for binary reading; NotRegularFile for anything else.

    The path is opened non-blocking (so a FIFO cannot block the open) and checked with fstat on the
    open descriptor, so it cannot be replaced by a pipe between the check and the read."""
    nonblock = getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))
    try:
        kind = kind_of(os.fstat(fd).st_mode)
        if kind is not None:
            raise NotRegularFile(kind)
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise
