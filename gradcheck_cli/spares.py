"""Spare helpers: ``--jobs`` helpers forked in advance, which cost a fork, not an
interpreter.

A helper started with ``wire.BOOT`` pays for an interpreter and the imports of numpy
and gradcheck before it judges its first chunk: about 0.25 s of CPU, and on a 2-core
machine most of what keeps ``--jobs 2`` from twice the speed of ``--jobs 1``. So the
worker that gradcheck_cli/launch.py forks at the command's start forks, in turn, once
its imports are done (``worker.prewarm``) and before it reads its job, up to
``MAX_SPARES`` helpers that wait in ``worker.serve`` on a task pipe of their own.

Why this fork is safe: it is launch.py's, one step later. The worker still runs one
thread (``fork`` checks the kernel's count and forks nothing otherwise), no plugin and
no config has been loaded, and no file is open but the standard streams, the worker's
own three pipes (closed in each spare) and the spares' pipes (each spare closes the
ones of the spares before it, so that every task pipe has exactly one writer).

A spare is in the worker's session and process group: whatever stops or kills the
worker's group (the supervisor's timeout, Ctrl-C, a discarded worker) stops it too. A
HelperPool that joins the worker's group (``--jobs`` under ``gradcheck run``,
gradcheck_cli/pool.py) takes spares before it starts helpers of its own; one that runs
in its own group (the Python API) never does. A spare nobody took is killed and reaped
as the worker ends (``release``); should the worker die first, the task pipe it held,
the spare's lifeline, closes and the spare ends itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

from . import wire
from .threads import thread_count

#: At most this many spares, however many cores there are: each is a process in
#: waiting, and a larger ``--jobs`` starts the rest as interpreters.
MAX_SPARES = 3

#: Spares forked by this process and not taken yet.
_spares: list[wire.Started] = []


def wanted() -> int:
    """How many spares the default ``--jobs`` (the cores available) can use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(0, min(cores - 1, MAX_SPARES))


def fork(
    count: int, serve: Callable[[int, int, int], None], *, close: tuple[int, ...] = ()
) -> None:
    """Fork ``count`` spares from this process (module docstring), each closing the
    descriptors ``close`` (this process's own pipes) and the other spares' pipes, then
    running ``serve(task_fd, event_fd, calls_fd)`` (``worker.serve``). Forks nothing in
    a process that runs more than one thread."""
    if count <= 0 or thread_count() != 1:
        return
    for _ in range(count):
        task_r, task_w = os.pipe()
        events_r, events_w = os.pipe()
        calls_fd, calls = wire.shared_page()
        pid = os.fork()
        if pid == 0:  # the spare: never returns
            try:
                _become_spare((*close, task_w, events_r))
                serve(task_r, events_w, calls_fd)
            finally:
                os._exit(1)
        for fd in (task_r, events_w, calls_fd):
            os.close(fd)
        _spares.append(wire.Started(wire.Forked(pid), task_w, events_r, calls))


def _become_spare(close: tuple[int, ...]) -> None:
    for fd in close:
        with contextlib.suppress(OSError):
            os.close(fd)
    for other in _spares:
        for fd in (other.job_w, other.events_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(Exception):
            other.calls.close()
    _spares.clear()


def take() -> wire.Started | None:
    """A spare for a HelperPool that joins this process's group, or None."""
    while _spares:
        spare = _spares.pop(0)
        if spare.proc.poll() is None:
            return spare
        spare.close()  # it died while waiting: never hand it work
    return None


def available() -> int:
    return len(_spares)


def release() -> None:
    """End the spares nobody took and reap them. A spare waiting for its first task has
    run no code but gradcheck's: it is killed rather than waited for."""
    while _spares:
        spare = _spares.pop()
        spare.close()
        with contextlib.suppress(OSError):
            os.kill(spare.proc.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(spare.proc.pid, 0)
