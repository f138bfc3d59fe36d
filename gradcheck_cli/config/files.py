"""The files a config reads, and the limits they are held to.

A config, an array file and a plugin must be regular files: a FIFO, a device or a
socket would make the read block for ever or never end (``/dev/zero``), so it is
refused without being read. Each limit below is refused up front (exit 2), naming the
file and the limit, before anything of that size is allocated:

- a config of more than MAX_CONFIG_BYTES (YAML reads at about 2 MB a second; arrays that
  large belong in ``.npy`` files);
- an array of more than MAX_RANK axes (numpy stops at 64, and the engine adds its own
  axes), written as a nested list, a ``{shape: [...]}`` or in a file;
- an array file holding more than MAX_ARRAY_ELEMENTS numbers: a ``.npy`` header is read
  first, and must also match the file's size; an ``.npz`` member's size is read from the
  zip directory, before anything is inflated;
- a path with a NUL character (no file can have one).

The limits are documented in docs/config.md ("Limits").
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

#: The largest config file read, in bytes (8 MiB).
MAX_CONFIG_BYTES = 8 * 2**20
#: The most axes an array may have (an image batch has 4; numpy's own limit is 64).
MAX_RANK = 16
#: The most numbers one array may hold, from a file or ``{shape: [...]}`` (10^7, 80 MB in
#: float64; a numeric check of every element of it would take days).
MAX_ARRAY_ELEMENTS = 10**7
#: Bytes an ``.npz`` member may inflate to: the largest array, in the widest dtype
#: (complex256 is refused later, but must not be inflated first), plus its header.
MAX_MEMBER_BYTES = MAX_ARRAY_ELEMENTS * 16 + 2**16

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegular(OSError):
    """The path names something other than a regular file; ``kind`` says what."""

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path} is {kind}, not a regular file")
        self.kind = kind


def kind_of(mode: int) -> str:
    """``a FIFO (named pipe)``, ``a folder``, ... for a file mode that is not regular."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def open_regular(path: str | os.PathLike) -> tuple[BinaryIO, int]:
    """(binary file, size) of a regular file, opened without blocking on a FIFO and
    without reading a device. Raises NotRegular for anything else, and the usual OSError
    (FileNotFoundError, PermissionError, ...) when it cannot be opened."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegular(os.fspath(path), kind_of(info.st_mode))
        if flags & getattr(os, "O_NONBLOCK", 0):
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb"), info.st_size
    except BaseException:
        os.close(fd)
        raise


def not_regular(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a file (``a folder``, ``a FIFO (named pipe)``,
    ``not found``, ``unreadable (Too many levels of symbolic links)``), or None for a
    regular file. Follows symbolic links; never opens."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "not found"
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    return None if stat.S_ISREG(mode) else kind_of(mode)


def nul_in(text: str) -> bool:
    """Whether a path holds a NUL character, which no file name can."""
    return "\0" in text
