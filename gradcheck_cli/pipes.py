"""The size of the pipes a check's events travel through (imports nothing but
``fcntl``: gradcheck_cli/launch.py calls it before its worker is forked)."""

from __future__ import annotations

#: The events pipe's buffer: a report of millions of elements passes in 1 MiB pieces,
#: not 64 KiB ones (22 MB from a forked process: 0.045 s instead of 0.09-0.13 s,
#: measured on a 2-core machine).
PIPE_BYTES = 1 << 20


def widen(fd: int) -> None:
    """Give the pipe ``fd`` a PIPE_BYTES buffer where the system allows it (Linux's
    F_SETPIPE_SZ, up to /proc/sys/fs/pipe-max-size); elsewhere it keeps its own."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, OSError, AttributeError):
        pass
