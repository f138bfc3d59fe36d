"""The ``gradcheck`` command's entry point: for ``gradcheck run``, the worker that will run
the check is started first, before the command line is even parsed.

``gradcheck run`` checks in a supervised worker process (gradcheck_cli/supervise.py).
Started after the command's own imports, the worker's interpreter, numpy and gradcheck
came on top of them: about 0.1 s of a small check's 0.3 s, and each process imported
numpy. So ``main`` imports numpy (both processes need it) and then forks the worker at
once: the worker imports the engine and the config loader (``worker.prewarm``) while
this process imports click and reads the options, then it waits for the job on its
pipe and runs it as a worker started by ``supervise`` would.

Why a fork is safe here, and not later: a process that has started threads or holds
locks must not fork (the child gets the locks, never the threads that would release
them), and a process that has run user code may hold anything. At this point nothing
has run but the interpreter's start-up and numpy's import, with its BLAS told to start
no threads (``_import_numpy_alone``): the kernel's thread count for this process must
be 1, or there is no fork (``thread_count``); no plugin has run, and no file is open but
the standard streams. The child then does what ``start_worker`` does for
an exec'd worker: a session and process group of its own, stdin from /dev/null, stdout
onto stderr, only its three pipes (the parent's ends are closed), and it exits when
its job pipe closes. It never returns into the parent's code: every way out of it is
``os._exit``. Once its imports are done, and still before it reads its job, it forks
the spare ``--jobs`` helpers (gradcheck_cli/spares.py).

When the command does not run a check after all (a usage error, a refused report path),
the worker is killed and reaped before the command exits. ``--help``, ``--version``,
shell completion, ``GRADCHECK_SUPERVISE=0`` and every other command start no worker;
``GRADCHECK_PREFORK=0`` starts it the old way (a fresh interpreter), for comparison.
A supervised run ends with ``os._exit`` once its output is flushed (``exit_now``): no
user code ran in this process, and the interpreter's teardown only cost time.
"""

from __future__ import annotations

import os
import sys

#: What turns the supervision off (gradcheck_cli/supervise.py ``SUPERVISE_ENV``).
SUPERVISE_ENV = "GRADCHECK_SUPERVISE"
#: ``GRADCHECK_PREFORK=0``: start the worker as a fresh interpreter, after the command's
#: own imports, as before this module (benchmarks/startup.py compares the two).
PREFORK_ENV = "GRADCHECK_PREFORK"


class Prestarted:
    """The forked worker: its pid, the write end of its job pipe, the read end of its
    event pipe, and the descriptor of its calls page. (Not a NamedTuple: ``typing`` is
    one more import before the fork.)"""

    __slots__ = ("pid", "job_w", "events_r", "calls_fd")

    def __init__(self, pid: int, job_w: int, events_r: int, calls_fd: int):
        self.pid, self.job_w, self.events_r, self.calls_fd = pid, job_w, events_r, calls_fd


#: The worker forked at start-up, until ``take`` hands it to the supervisor.
_prestarted: Prestarted | None = None


def main() -> None:
    """The ``gradcheck`` console script and ``python -m gradcheck_cli``."""
    global _prestarted
    standard_streams()
    checking = starts_a_check(sys.argv[1:])
    if checking:
        _import_numpy_alone()
        _prestarted = _fork_worker()
    try:
        from .cli import main as cli_main

        cli_main()
    except SystemExit as done:
        if checking:
            discard()
            exit_now(done.code)  # returns when the usual way out is needed
        raise
    finally:
        discard()


def starts_a_check(argv: list[str]) -> bool:
    """Whether this command line runs a supervised check: ``run`` is its command, and no
    ``--help``, ``--version`` or completion asks for something else."""
    if any(os.environ.get(v, "").strip() == "0" for v in (SUPERVISE_ENV, PREFORK_ENV)):
        return False
    if "_GRADCHECK_COMPLETE" in os.environ:  # shell completion
        return False
    if not all(hasattr(os, f) for f in ("fork", "setsid", "killpg", "memfd_create")):
        return False
    command = next((a for a in argv if not a.startswith("-")), None)
    return command == "run" and not any(a in ("-h", "--help", "-V", "--version") for a in argv)


def standard_streams() -> None:
    """Put /dev/null in place of a standard stream the command was started without
    (``gradcheck run net.yaml >&-``). Python leaves ``sys.stdout`` None then, which the
    first flush turned into a traceback and exit 1 (a "gradient disagrees" code); and the
    descriptors 0-2 would be free, for the worker's pipes to take and its own standard
    streams to overwrite. What would have gone to a closed stream is dropped, as the
    user asked; reports written to files are unaffected."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:  # the lowest free descriptor: fd itself, as the lower are open
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            # open for the process's lifetime, as the interpreter's own streams are
            stream = open(fd, "r" if fd == 0 else "w", closefd=False)  # noqa: SIM115
            setattr(sys, name, stream)


def exit_now(code: object) -> None:
    """End a supervised ``gradcheck run`` at once with ``code`` (as ``sys.exit`` would
    end it), skipping the interpreter's teardown: freeing numpy, rich and click module by
    module took ~25 ms of a small check's 0.18 s (benchmarks/startup.py). Safe because
    no user code ran in this process (the worker loads the config and its plugins), so
    there is nothing of the user's to flush or finalise; the standard streams are
    flushed here, and every report file was written and closed before. Returns, for the
    usual exit, where that is not known to hold: a plugin loader imported here, an
    ``atexit`` handler registered, a thread still running, or a stream that cannot be
    flushed (a reader gone: Python then reports it as it always did)."""
    import threading

    if "gradcheck_cli.config.plugins" in sys.modules:
        return
    if getattr(__import__("atexit"), "_ncallbacks", lambda: 1)():
        return
    if any(t is not threading.main_thread() and t.is_alive() for t in threading.enumerate()):
        return
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # a message: printed, exit 1, as the interpreter does
        status = 1
        try:
            print(code, file=sys.stderr)
        except (OSError, ValueError):
            return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(status & 0xFF)


def take() -> Prestarted | None:
    """The forked worker, for the supervisor to use (once)."""
    global _prestarted
    found, _prestarted = _prestarted, None
    return found


def discard() -> None:
    """Kill and reap a forked worker nobody took (the command ended without a check)."""
    import contextlib
    import signal

    found = take()
    if found is None:
        return
    for fd in (found.job_w, found.events_r, found.calls_fd):
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError):  # its group: not reaped yet, still its own
        os.killpg(found.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(found.pid, 0)


def _import_numpy_alone() -> None:
    """Import numpy with its BLAS started without threads of its own (it reads
    OPENBLAS_NUM_THREADS once, as it loads), so that this process stays one thread and
    both processes share one import. The check runs on one BLAS thread anyway
    (engine/blas.py); a count the user set is kept, and the variable is gone again
    before any other process can see it."""
    if "numpy" in sys.modules:
        return
    mine = "OPENBLAS_NUM_THREADS" not in os.environ
    if mine:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    except ImportError:
        pass
    finally:
        if mine:
            del os.environ["OPENBLAS_NUM_THREADS"]


def _fork_worker() -> Prestarted | None:
    from .threads import thread_count

    if thread_count() != 1:
        return None  # never fork a process with threads (module docstring)
    job_r, job_w = os.pipe()
    events_r, events_w = os.pipe()
    from .pipes import widen

    widen(events_w)
    calls_fd = os.memfd_create("gradcheck-calls", 0)  # sized by the supervisor
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        try:
            _become_worker(job_r, job_w, events_r, events_w, calls_fd)
        finally:
            os._exit(1)
    os.close(job_r)
    os.close(events_w)
    return Prestarted(pid, job_w, events_r, calls_fd)


def _become_worker(job_r: int, job_w: int, events_r: int, events_w: int, calls_fd: int) -> None:
    os.close(job_w)
    os.close(events_r)
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)  # a plugin's output is never part of the command's stdout
    from . import spares
    from .worker import main, prewarm, serve

    prewarm()
    spares.fork(spares.wanted(), serve, close=(job_r, events_w, calls_fd))
    main(job_r, events_w, calls_fd)
