"""Running a check so that user code cannot end the run without a verdict.

A plugin may hang in its forward, call ``os._exit(0)``, crash the interpreter or be
killed by the system for memory; the user must still get an exit code that is not 0,
one line naming the layer and the call that was running, and a report that says so.
So ``gradcheck run`` runs the check in a worker process (``gradcheck_cli/worker.py``)
and watches it from the command's own process:

- the worker is forked at the command's start, right after numpy is imported and
  before anything else runs (gradcheck_cli/launch.py says why that fork is safe and a
  later one would not be), or else started as ``python -c wire.BOOT``, a fresh
  interpreter with the command's ``sys.path`` (gradcheck_cli/wire.py). It loads the
  config and its plugins itself; only a small ``Job`` (the config's path and the
  command line's options) goes to it, and events come back over a pipe: the files
  the config read, progress, the call running now, each finished tensor, then the
  report or the error, all as pickled data;
- its stdout is this process's stderr and its stdin is /dev/null, so that no plugin
  can write into a report on stdout or wait for input; it leads its own process group,
  so that stopping it stops whatever it started, and it ends itself if this process
  goes away;
- ``--timeout``: past it, the worker is asked to stop (SIGINT: the engine then hands
  back the tensors finished so far), and killed GRACE seconds later if it does not;
- Ctrl-C and SIGTERM reach this process only (the worker has its own session): they
  are passed on the same way, and the run ends 130 or 143 with the partial report;
- a worker that dies without a verdict (an exit status, SIGSEGV, SIGKILL) is named with
  the call that was running.

``inline`` runs the same job in this process: for callers that embed the command line
(click's CliRunner, an IDE) and whose layers may be registered in this process. There
a timeout and SIGTERM interrupt Python code (the check stops at the next bytecode; a
call that never returns to Python cannot be stopped), and a crash ends the caller.
``GRADCHECK_SUPERVISE=0`` makes the command run inline (for a debugger or a profiler),
``=1`` makes an embedded command supervise.

``--jobs`` helpers (gradcheck_cli/jobs.py) are started the same way (``start_worker``),
in the worker's own process group: stopping or killing the worker's group stops them
too, and a helper that dies is named with the call it was running, as the worker is.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from . import messages
from .stream import Receiver
from .wire import (
    CALLS_BYTES,
    Forked,
    Started,
    exited,
    read_calls,
    running_now,
    start_worker,
    wait_exit,
)
from .worker import Job, Loaded

#: Seconds a worker that was asked to stop (Ctrl-C, SIGTERM, a timeout) is given to hand
#: back its partial report before it is killed.
GRACE = 1.0
#: How often the supervisor looks at its signals and deadlines while it waits (seconds).
POLL = 0.05
#: Seconds beyond which an in-process timeout is not kept (about three years).
LONGEST_ALARM = 1e8
#: The environment variable that chooses where ``gradcheck run`` runs the check: ``0`` in
#: its own process, ``1`` in a supervised worker (the default for the command).
SUPERVISE_ENV = "GRADCHECK_SUPERVISE"


class Stop(str, Enum):
    """Why a run was stopped before it ended by itself."""

    INTERRUPT = "interrupt"  # Ctrl-C (SIGINT)
    TERMINATE = "terminate"  # SIGTERM
    TIMEOUT = "timeout"  # past --timeout


@dataclass
class Outcome:
    """How the run ended, beside what the worker said (``Watch``).

    stop: why it was stopped (None: it ended by itself); returncode: the worker's exit
    status (negative: the signal that killed it; None in-process); killed: it had to be
    killed; running: the call that was running when it was stopped, as ``(current,
    last)`` (engine.passes.Calls); elapsed: seconds since the run started.
    """

    stop: Stop | None = None
    returncode: int | None = None
    killed: bool = False
    running: tuple[Any, Any] = (None, None)
    elapsed: float = 0.0
    timeout: float | None = None


@dataclass
class Watch:
    """What the worker said so far (events: gradcheck_cli/worker.py).

    ``progress`` gets each progress snapshot (``engine.progress.CheckProgress``), and
    ``last_progress`` keeps the latest; ``on_loaded`` is told when the config is loaded
    and may refuse to go on by raising (an output path that would replace a file the
    config reads): the run is then stopped and the exception raised by ``supervise``.
    """

    progress: Callable[[Any], None] | None = None
    last_progress: Any = None
    on_loaded: Callable[[Loaded], None] | None = None
    loaded: Loaded | None = None
    checks: list[Any] = field(default_factory=list)
    running: tuple[Any, Any] = (None, None)
    #: ("report", Report) or ("error", exception or worker.Failure): the first one wins
    ending: tuple[str, Any] | None = None
    refused: BaseException | None = None

    def send(self, kind: str, payload: Any) -> None:
        if kind == "loaded":
            self.loaded = payload
            if self.on_loaded is not None:
                try:
                    self.on_loaded(payload)
                except Exception as e:
                    self.refused = e
                    raise
        elif kind == "progress":
            self.last_progress = payload
            if self.progress is not None:
                self.progress(payload)
        elif kind == "running":
            self.running = payload
        elif kind == "checked":
            self.checks.append(payload)
        elif kind in ("report", "error") and self.ending is None:
            self.ending = (kind, payload)


def supervised_by_default(embedded: bool) -> bool:
    """Whether ``gradcheck run`` supervises: the console command does, an embedded call
    does not; ``GRADCHECK_SUPERVISE`` decides either way. Never where process groups
    do not exist."""
    chosen = os.environ.get(SUPERVISE_ENV, "").strip()
    wanted = chosen == "1" if chosen in ("0", "1") else not embedded
    return wanted and hasattr(os, "killpg") and hasattr(os, "setsid")


# --- in this process -------------------------------------------------------------------------


class Stopped(KeyboardInterrupt):
    """Raised in this process's main thread by a timeout or SIGTERM: a KeyboardInterrupt,
    so that the engine hands back its partial report as it does on Ctrl-C."""


class alarm:  # noqa: N801 - used as a context manager, like contextlib's
    """Raise Stopped in the main thread after ``seconds`` (``arm`` sets them later) and,
    with ``terminate``, on SIGTERM, recording in ``outcome`` why and what was running.
    Python code stops at its next bytecode; a call that never returns to the interpreter
    cannot be stopped in-process. Outside the main thread only a run without a timeout
    is possible. SIGALRM and the process's timer are touched only while a timeout is
    armed, and a timer set before (pytest-timeout's) is set again afterwards."""

    def __init__(self, seconds: float | None, outcome: Outcome, *, terminate: bool = True):
        self.seconds = seconds
        self.outcome = outcome
        self.terminate = terminate  # SIGTERM too (the command line; not the Python API)
        self.saved: dict[int, Any] = {}
        self.previous: tuple[float, float] | None = None  # the timer found, when armed
        self.entered = time.monotonic()
        self.main = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> alarm:
        if not self.main:
            if self.seconds is not None:
                from .errors import UsageError

                raise UsageError("a timeout can only be kept in the main thread")
            return self
        self.entered = time.monotonic()
        if self.terminate:
            self.saved[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._fire(Stop.TERMINATE))
        if self.seconds is not None:
            self.arm(self.seconds)
        return self

    def arm(self, seconds: float) -> None:
        """Fire ``seconds`` from now (a timeout learnt from the config); a timeout of
        years is no timeout (the system's timer would overflow)."""
        if not self.main or seconds >= LONGEST_ALARM:
            return
        if self.previous is None:
            self.previous = signal.getitimer(signal.ITIMER_REAL)
            self.saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._fire(Stop.TIMEOUT))
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))

    def _fire(self, reason: Stop) -> Callable[[int, Any], None]:
        def handler(_signum: int, _frame: Any) -> None:
            if self.outcome.stop is None:
                self.outcome.stop = reason
                self.outcome.running = running_now()
                raise Stopped(reason.value)

        return handler

    def __exit__(self, *exc: object) -> None:
        if not self.main:
            return
        if self.previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        if self.previous is not None and self.previous[0] > 0:
            left = self.previous[0] - (time.monotonic() - self.entered)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), self.previous[1])


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While user code runs in this process, what it writes to stdout goes to stderr:
    ``print`` and ``os.write(1, ...)`` alike (file descriptor 1 is pointed at 2)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    try:
        saved: int | None = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no stdout at all (>&-): nothing to protect
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def inline(
    job: Job,
    watch: Watch,
    *,
    timeout: float | None = None,
    load: Callable[..., Any] | None = None,
    check: Callable[..., Any] | None = None,
) -> Outcome:
    """Run ``job`` in this process (module docstring); exceptions become ``error``
    events, so that the caller reads every ending from ``watch`` and the Outcome."""
    from . import worker

    outcome = Outcome(timeout=timeout)
    started = time.monotonic()
    kwargs = {k: v for k, v in (("load", load), ("check", check)) if v is not None}

    timer: alarm | None = None
    if timeout is None:  # a timeout from the config's check: block counts from the start
        user_on_loaded = watch.on_loaded

        def on_loaded(info: Loaded) -> None:
            if user_on_loaded is not None:
                user_on_loaded(info)
            if info.timeout is not None and timer is not None:
                outcome.timeout = info.timeout
                timer.arm(info.timeout - (time.monotonic() - started))

        watch.on_loaded = on_loaded
    try:
        with alarm(timeout, outcome) as timer:
            worker.execute(job, watch, **kwargs)
    except KeyboardInterrupt as exc:
        if outcome.stop is None:
            outcome.stop = Stop.INTERRUPT
        watch.send("error", exc)
    except BaseException as exc:  # noqa: BLE001 - read by the caller, who raises it
        if watch.refused is not exc:
            # a SystemExit that got past every guard must not end the command with its
            # code (0 would read as a pass): it is reported as what it is, a bug
            watch.send("error", worker.failure(exc) if isinstance(exc, SystemExit) else exc)
    finally:
        outcome.elapsed = time.monotonic() - started
    if watch.refused is not None:
        raise watch.refused
    return outcome


# --- in a worker process ----------------------------------------------------------------------


def supervise(
    job: Job,
    watch: Watch,
    *,
    timeout: float | None = None,
    meanwhile: Callable[[], None] | None = None,
) -> Outcome:
    """Run ``job`` in a worker process and watch it (module docstring). Returns once the
    worker has ended; what it said is in ``watch``. Raises what ``watch.on_loaded``
    raised, after stopping the worker. ``meanwhile`` runs once the worker has started,
    before its events are read: what this process must import or build to show the
    outcome costs no time then (the pipe holds the events); if it raises, the worker is
    stopped."""
    outcome = Outcome(timeout=timeout)
    started = time.monotonic()
    worker = prestarted() or start_worker("check", session=True)
    proc, job_w, events_r, calls = worker.proc, worker.job_w, worker.events_r, worker.calls
    signals: list[int] = []
    restore = _catch_signals(signals)
    try:
        messages.write(job_w, messages.dumps(job))  # small: the pipe takes it at once
        if meanwhile is not None:
            meanwhile()
        _watch(proc, events_r, watch, outcome, signals, started)
    finally:
        restore()
        os.close(events_r)
        os.close(job_w)  # the lifeline: a worker still there ends itself
        _kill_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        outcome.returncode = proc.returncode
        outcome.elapsed = time.monotonic() - started
        if watch.ending is None and outcome.stop is None:  # it died: the page says where
            current, last = read_calls(calls)
            if last is not None:
                watch.running = (current, last)
        calls.close()
    if watch.refused is not None:
        raise watch.refused
    return outcome


def prestarted() -> Started | None:
    """The worker gradcheck_cli/launch.py forked at the command's start, if there is one."""
    from . import launch

    found = launch.take()
    if found is None:
        return None
    os.ftruncate(found.calls_fd, CALLS_BYTES)  # before the job: the worker maps it after
    calls = mmap.mmap(found.calls_fd, CALLS_BYTES)
    os.close(found.calls_fd)
    return Started(Forked(found.pid), found.job_w, found.events_r, calls)


def _watch(
    proc: subprocess.Popen,
    fd: int,
    watch: Watch,
    outcome: Outcome,
    signals: list[int],
    started: float,
) -> None:
    inbox = messages.Inbox(Receiver().loads)
    eof_at: float | None = None
    kill_at: float | None = None

    def stop(reason: Stop) -> None:
        nonlocal kill_at
        if outcome.stop is None:
            outcome.stop = reason
            outcome.running = watch.running
            _signal_group(proc.pid, signal.SIGINT)
            kill_at = time.monotonic() + GRACE
        else:  # asked twice: no more waiting
            kill_at = time.monotonic()

    while True:
        now = time.monotonic()
        while signals:
            stop(Stop.TERMINATE if signals.pop(0) == signal.SIGTERM else Stop.INTERRUPT)
        if outcome.timeout is None and watch.loaded is not None:
            outcome.timeout = watch.loaded.timeout  # a config's check: {timeout: ...}
        timeout = outcome.timeout
        if outcome.stop is None and timeout is not None and now - started >= timeout:
            stop(Stop.TIMEOUT)
        if watch.refused is not None and not outcome.killed:
            outcome.killed = True
            _kill_group(proc.pid)
        if kill_at is not None and now >= kill_at and not outcome.killed:
            outcome.killed = True
            _kill_group(proc.pid)
        if eof_at is not None:
            if exited(proc.pid):
                return
            if now - eof_at > GRACE and not outcome.killed:  # silent, yet still there
                outcome.killed = True
                _kill_group(proc.pid)
            wait_exit(proc.pid, POLL / 5)
            continue
        if exited(proc.pid):  # a process it started may hold the pipe open: read what is there
            while _read_events(fd, inbox, watch, wait=0.0) is True:
                pass
            return
        if _read_events(fd, inbox, watch, wait=POLL) is None:
            eof_at = now


def _read_events(fd: int, inbox: messages.Inbox, watch: Watch, *, wait: float) -> bool | None:
    """Read what the pipe holds within ``wait`` seconds and hand each complete message to
    ``watch``: True when something was read, False when nothing came, None at its end."""
    try:
        ready, _, _ = select.select([fd], [], [], wait)
    except InterruptedError:
        return False
    if not ready:
        return False
    got = inbox.read(fd)
    if got is None:
        return None
    for kind, payload in got:
        with contextlib.suppress(Exception):  # on_loaded's refusal is kept in watch
            watch.send(kind, payload)
    return True


def _catch_signals(signals: list[int]) -> Callable[[], None]:
    """Note SIGINT and SIGTERM instead of dying of them, while the worker runs; returns
    what restores the handlers before. (Only the main thread can; elsewhere no signal
    arrives as an exception anyway.)"""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def note(signum: int, _frame: Any) -> None:
        signals.append(signum)

    saved = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for signum, handler in saved.items():
            signal.signal(signum, handler)

    return restore


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _kill_group(pid: int) -> None:
    """Kill the worker and whatever it started (its process group)."""
    _signal_group(pid, signal.SIGKILL)
