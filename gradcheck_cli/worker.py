"""The worker: where user code runs (a config's plugins, its layers' forward and
backward), so that the command line around it can stop it, outlive it, and still say
what happened (gradcheck_cli/supervise.py is the other side).

``execute(job, events)`` is the whole job: load the config and its plugins, apply the
command line's options, run the check, and tell ``events`` everything on the way:

==========  =================================================================
event       payload
==========  =================================================================
loaded      ``Loaded``: the files the config read, the settings, the timeout
progress    ``engine.progress.CheckProgress``: a snapshot of where the check is
            (the tensor being checked, how far through it, the seconds each
            finished tensor took); only the latest one counts
running     ``(current, last)``: the call into a layer running now and the last
            one (``engine.passes.Calls``), e.g. ``("conv1", "forward")``
checked     one finished ``TensorCheck``, as soon as it is complete
report      the final ``Report`` (``interrupted`` after a SIGINT)
error       the exception that ended the run: a GradcheckError, an OptionError
            (``--only``), a KeyboardInterrupt, or a ``Failure`` for anything else
==========  =================================================================

With ``--jobs N`` the check may share its element-wise work with up to N - 1 helper
processes (gradcheck_cli/jobs.py): the same kind of process, started the same way
(``BOOT``), in the role ``serve``: it loads the config itself, judges the chunks it is
sent and sends back their verdicts, and records each call into a layer in a page of its
own, so that a helper that hangs or crashes is named with its call as the worker is.

The same function runs in the command's own process (``inline``, for callers that
embed the CLI) and in a worker process started by the supervisor, which runs ``main``:
there the events are pickled onto a pipe, the worker's stdout is the supervisor's
stderr (a plugin's ``print`` or ``os.write(1, ...)`` never reaches a report on stdout),
its stdin is /dev/null, and it leads its own process group, so that the supervisor can
stop it and whatever it started at once. The worker ends itself when the supervisor
goes away (the lifeline pipe closes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import messages, spares
from .stream import Sender
from .wire import (  # the wire protocol, also read from here by older callers
    BOOT,
    CALLS_BYTES,
    ELSEWHERE,
    CallRecorder,
    Failure,
    failure,
    read_calls,
    running_now,
)

__all__ = [
    "BOOT",
    "CALLS_BYTES",
    "ELSEWHERE",
    "CallRecorder",
    "Failure",
    "Job",
    "Loaded",
    "execute",
    "failure",
    "main",
    "read_calls",
    "running_now",
    "serve",
]

#: How often the worker's reporter thread sends progress and the running call (seconds).
REPORT_EVERY = 0.1


@dataclass(frozen=True)
class Job:
    """What a worker is asked to do: check ``config`` (an absolute path) with the command
    line's check options ``values`` (already read, ``gradcheck_cli.options.read_options``)
    over the config's ``check:`` block."""

    config: str
    values: Mapping[str, Any]
    #: whether the report gets its ``explain`` section (a report format that reads it
    #: is written: ``FormatSpec.reads_explain``)
    explain: bool = True


@dataclass(frozen=True)
class Loaded:
    """Sent once the config is loaded: what the supervisor needs before the check runs.

    sources: every file the run reads (the config, its arrays and plugins), which no
    output may replace; timeout: the one in force (command line over ``check:``);
    settings: the report's ``settings``.
    """

    config: str
    name: str
    sources: tuple[str, ...]
    timeout: float | None
    settings: dict[str, Any]


def load(path: str, seed: int | None = None):
    """The validated problem; raises ConfigError or PluginError (exit 2)."""
    from .config import load_problem

    return load_problem(path, seed=seed)


def check(problem, progress):
    """The engine's report, with its ``explain`` section unless ``progress.explain`` is
    false; after Ctrl-C, the partial report marked ``interrupted``. A plugin's protocol
    error (exit 2) or non-deterministic forward (exit 3) is located: the config file,
    line and key path of the layer it names. ``progress.helpers``, when there, may take
    chunks of the element-wise check (``--jobs``)."""
    from .engine import CheckInterrupted, run_check
    from .errors import NondeterministicError, PluginError

    helpers = getattr(progress, "helpers", None)
    shared = {} if helpers is None else {"helpers": helpers}
    try:
        report = run_check(problem, progress=progress, **shared)
    except CheckInterrupted as e:
        e.report.interrupted = True
        return e.report
    except (PluginError, NondeterministicError) as e:
        raise e.locate(problem.path, *problem.where(e.layer)) from e
    if getattr(progress, "explain", True):
        report.explain = explain_section(problem, report)
    return report


def explain_section(problem, report):
    """The report's ``explain`` section for a network small enough (engine/
    explain_view.py), None otherwise. It is extra: a failure to make it leaves it out
    with a warning, never changes the verdict."""
    from .engine.explain_view import explain_view

    try:
        return explain_view(problem)
    except Exception as e:  # a plugin that fails only when asked again: said, not raised
        report.warnings.append(f"the explain section is left out of the report: {e}")
        return None


class _Progress:
    """The engine's progress callback: each progress snapshot, and each finished tensor;
    it also carries the helpers (``--jobs``) the check may use and whether the report
    gets its explain section. A caller that knows only counts may call it with
    ``(done, total)``."""

    def __init__(self, events: Any, helpers: Any = None, explain: bool = True):
        self.events = events
        self.helpers = helpers
        self.explain = explain

    def __call__(self, snapshot: Any, total: int | None = None) -> None:
        if total is not None:
            from .engine.progress import CheckProgress

            snapshot = CheckProgress.counts(snapshot, total)
        self.events.send("progress", snapshot)

    def checked(self, tensor_check: Any) -> None:
        self.events.send("checked", tensor_check)


def execute(
    job: Job,
    events: Any,
    *,
    load: Callable[..., Any] = load,
    check: Callable[..., Any] = check,
) -> None:
    """Load, check and report (module docstring). Exceptions are the caller's to send."""
    from . import jobs
    from .engine.check import settings_dict, tolerances
    from .engine.passes import Calls
    from .options import match_globs, merge

    # where helpers find the config, taken before a plugin can change folder
    source = jobs.Source.of(os.path.abspath(job.config), seed=job.values.get("seed"))
    Calls.enter("", "load")
    try:
        problem = load(job.config, seed=job.values.get("seed"))
    finally:
        Calls.leave()
    settings = merge(problem.settings, job.values)
    if "only" in job.values:
        match_globs(settings.only, problem.tensor_names())
    problem = dataclasses.replace(problem, settings=settings)
    try:
        shown = settings_dict(problem, tolerances(problem)[0])
    except Exception:  # a stand-in problem (tests) may lack what the settings need
        shown = {}
    events.send(
        "loaded",
        Loaded(
            config=problem.path,
            name=problem.name,
            sources=(job.config, *problem.sources),
            timeout=getattr(settings, "timeout", None),
            settings=shown,
        ),
    )
    # helpers join this process's group when it leads one (a supervised worker), so that
    # the supervisor's stop and kill reach them too
    lead = os.getpgid(0) == os.getpid()
    with jobs.helpers_for(source, getattr(settings, "jobs", 1), join_group=lead) as helpers:
        events.send("report", check(problem, _Progress(events, helpers, job.explain)))


# --- the worker process ------------------------------------------------------------------


class _Pipe:
    """Events pickled onto the pipe to the supervisor, from the main thread and the
    reporter thread alike. Progress and the running call are only noted here; the
    reporter thread sends the latest of them every REPORT_EVERY seconds, so that a
    check of millions of calls costs no more than a few messages a second, and a hang
    is still named within REPORT_EVERY."""

    def __init__(self, fd: int, *, shared: bool = True):
        self.fd = fd
        self.lock = threading.Lock()
        #: shared: each large array once (gradcheck_cli/stream.py), for the supervisor's
        #: Receiver; otherwise plain pickles, which any reader can load
        self.sender = Sender() if shared else None
        self.progress: Any = None  # the latest snapshot (engine.progress.CheckProgress)
        self.sent_progress: Any = None
        self.sent_running: Any = None
        #: a SIGINT that arrived while the main thread wrote a message, raised after it
        self.writing = False
        self.pending_interrupt = False

    def send(self, kind: str, payload: Any) -> None:
        if kind == "progress":
            self.progress = payload
            return
        self._write(kind, payload)

    def _write(self, kind: str, payload: Any) -> None:
        main = threading.current_thread() is threading.main_thread()
        with self.lock:  # pickled in the order written: a message may refer to earlier ones
            self.writing = main  # a Ctrl-C now waits for the whole message
            try:
                message = (kind, payload)
                if self.sender is None:
                    body = messages.dumps(message)
                else:
                    body = self.sender.dumps(message)
                messages.write(self.fd, body)
            finally:
                self.writing = False
        if main and self.pending_interrupt:
            self.pending_interrupt = False
            raise KeyboardInterrupt

    def flush_state(self) -> None:
        """Send progress and the running call when they changed (the reporter thread)."""
        running = running_now()
        if running != self.sent_running:
            self.sent_running = running
            self._write("running", running)
        progress = self.progress
        if progress is not None and progress is not self.sent_progress:
            self.sent_progress = progress
            self._write("progress", progress)


def _reporter(pipe: _Pipe) -> None:
    while True:
        time.sleep(REPORT_EVERY)
        try:
            pipe.flush_state()
        except OSError:  # the supervisor is gone: the lifeline ends this process
            return


def _lifeline(fd: int) -> None:
    """Block until the supervisor's end of the lifeline closes (it exited or was killed),
    then end this worker and everything it started."""
    with contextlib.suppress(OSError):
        while os.read(fd, 4096):
            pass
    with contextlib.suppress(OSError):
        os.killpg(os.getpgid(0), signal.SIGKILL)
    os._exit(1)


def prewarm() -> None:
    """Import what a check needs (numpy, the engine, the config loader with the built-in
    layers) before the job arrives: a worker forked at the command's start
    (gradcheck_cli/launch.py) does it while the command reads its options."""
    import numpy.random  # noqa: F401 - every config draws from a seeded generator

    from . import config, heap, jobs, options  # noqa: F401
    from .engine import check  # noqa: F401

    heap.keep_freed_memory()  # before the spares are forked: they inherit it


def main(job_fd: int, event_fd: int, calls_fd: int = -1) -> None:
    """The worker process: read the job from ``job_fd`` (which then serves as the
    lifeline), run it, send the events to ``event_fd``, record each call into a layer in
    the shared page ``calls_fd`` (-1: none), exit 0."""
    import mmap
    import warnings

    from .engine.passes import Calls

    try:
        job: Job = messages.read(job_fd)
    except (EOFError, OSError):  # the supervisor went away, or never needed this worker
        spares.release()
        os._exit(0)
    pipe = _Pipe(event_fd)
    if calls_fd >= 0:
        Calls.listener = CallRecorder(mmap.mmap(calls_fd, CALLS_BYTES))

    def on_sigint(_signum: int, _frame: Any) -> None:
        if pipe.writing:  # never leave half a message on the pipe
            pipe.pending_interrupt = True
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigint)
    threading.Thread(target=_lifeline, args=(job_fd,), daemon=True).start()
    threading.Thread(target=_reporter, args=(pipe,), daemon=True).start()
    # what a plugin prints goes to the supervisor's stderr, as it flushes: never buffered
    # behind a crash
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    ending = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # as the command line does
            execute(job, pipe)
    except BaseException as exc:  # noqa: BLE001 - every ending is the supervisor's to tell
        ending = failure(exc)
    for signum in (signal.SIGINT, signal.SIGTERM):  # the last words are not cut short
        signal.signal(signum, signal.SIG_IGN)
    pipe.pending_interrupt = False
    with contextlib.suppress(OSError):
        pipe.flush_state()
        if ending is not None:
            pipe._write("error", ending)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    spares.release()  # the spare helpers nobody took: killed and reaped
    os._exit(0)  # no interpreter shutdown: a plugin's atexit or threads cannot hang it


def serve(task_fd: int, event_fd: int, calls_fd: int = -1) -> None:
    """A helper process (``--jobs``, gradcheck_cli/jobs.py): run each task read from
    ``task_fd``, ``(id, function, args)``, in turn, and send ``("result", (id, value))``
    or ``("raised", (id, failure(exception)))`` to ``event_fd``; record each call into a
    layer in the shared page ``calls_fd``. The task pipe is also the lifeline: when it
    closes (the pool was shut down, or the process that started this one is gone), this
    process exits at once, in the middle of a task if need be. Ctrl-C is not for it: the
    process that started it stops it."""
    import mmap
    import queue
    import warnings

    from .engine.passes import Calls

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # plain pickles: the pool reads each result once, with no Receiver, and a Sender
    # would keep every result sent alive here (each chunk's verdict is sent only once)
    pipe = _Pipe(event_fd, shared=False)
    if calls_fd >= 0:
        Calls.listener = CallRecorder(mmap.mmap(calls_fd, CALLS_BYTES))
    tasks: queue.SimpleQueue = queue.SimpleQueue()

    def read_tasks() -> None:
        with contextlib.suppress(Exception):
            while True:
                tasks.put(messages.read(task_fd))
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(0)

    threading.Thread(target=read_tasks, daemon=True).start()
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    warnings.simplefilter("ignore", RuntimeWarning)  # as the command line does
    while True:
        task_id, function, args = tasks.get()
        try:
            message: tuple[str, Any] = ("result", (task_id, function(*args)))
        except BaseException as exc:  # noqa: BLE001 - every ending is the pool's to tell
            message = ("raised", (task_id, failure(exc)))
        try:
            pipe._write(*message)
        except OSError:  # the pool is gone: the lifeline ends this process
            pass
        except Exception as exc:  # a result that does not pickle
            pipe._write("raised", (task_id, failure(exc)))


def start(role: str, job_fd: str, event_fd: str, calls_fd: str = "-1") -> None:
    """A process started with BOOT: ``check`` runs one job (``main``), ``serve`` is a
    helper (``serve``)."""
    from . import heap

    heap.keep_freed_memory()
    run = {"check": main, "serve": serve}[role]
    run(int(job_fd), int(event_fd), int(calls_fd))
