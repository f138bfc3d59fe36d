"""How many threads this process runs: a process forks only while it runs one
(gradcheck_cli/launch.py, gradcheck_cli/spares.py). Imports nothing: the command reads
it before its first fork, when every import delays the worker."""

from __future__ import annotations


def thread_count() -> int:
    """The threads of this process, as the kernel counts them (native ones included)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0  # unknown: not forked
