"""What passes between gradcheck's processes, and how a worker process is started.

The command line (gradcheck_cli/supervise.py), the worker that runs the check
(gradcheck_cli/worker.py) and the worker's ``--jobs`` helpers (gradcheck_cli/pool.py)
speak through pipes and a shared page:

- a message is a pickle after its length, its arrays beside it
  (gradcheck_cli/messages.py);
- the call into a layer a process is running is written into a page of shared memory
  (``CallRecorder``) as it starts and ends, so that a process that crashes mid-call is
  still named with it (``read_calls``); ``running_now`` is this process's call, or one of
  its helpers' (``ELSEWHERE``) while it waits for them;
- an exception that is not gradcheck's own travels as a ``Failure`` (its text);
- ``start_worker`` starts ``python -c BOOT`` in a role (``check``, ``serve``) with only the
  three descriptors it needs.

It imports nothing of gradcheck's processes, so that each of them can import it.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import pickle
import select
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import pipes

if TYPE_CHECKING:
    import subprocess


@dataclass(frozen=True)
class Failure:
    """An exception that is not gradcheck's own (a bug, or a plugin's exception where
    gradcheck does not guard): its type, message and traceback, as text, since the
    exception itself may not survive pickling."""

    type_name: str
    message: str
    traceback: str


def failure(exc: BaseException) -> Any:
    """What to send about ``exc``: itself when the supervisor can rebuild it (gradcheck's
    own errors, KeyboardInterrupt, MemoryError); a subclass a plugin defined as the
    gradcheck error it derives from; anything else as a Failure with its text."""
    from .errors import GradcheckError
    from .options import OptionError

    told = getattr(exc, "failure", None)  # a helper's Failure, raised here (jobs.py)
    if isinstance(told, Failure):
        return told
    if isinstance(exc, GradcheckError) and not type(exc).__module__.startswith(__package__):
        own = next(c for c in type(exc).__mro__ if c.__module__.startswith(__package__))
        try:
            exc = own(str(exc))
        except Exception:
            exc = GradcheckError(str(exc))
    if isinstance(exc, GradcheckError | OptionError | KeyboardInterrupt | MemoryError):
        try:
            pickle.loads(pickle.dumps(exc))
            return exc
        except Exception:
            pass
    return Failure(type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)))


#: Callables naming a call into a layer running in another process of this check (a
#: ``--jobs`` helper: gradcheck_cli/jobs.py), as ``(current, last)``.
ELSEWHERE: list[Callable[[], tuple[Any, Any]]] = []


def running_now() -> tuple[Any, Any]:
    """``(current, last)``: the call into a layer running in this process, or, while
    this process runs none (it waits for its helpers), one running in a helper."""
    from .engine.passes import Calls

    if Calls.current is None:
        for other in list(ELSEWHERE):
            current, last = other()
            if current is not None:
                return current, last
    return Calls.current, Calls.last


def describe_call(current: Any, last: Any) -> str:
    """``while layer 'conv1' was running forward`` and the like, for a message."""
    if current is not None:
        who, call = current
        if not who:
            return "while the config and its plugins were being loaded"
        subject = "the loss" if who == "loss" else f"layer {who!r}"
        return f"while {subject} was running {call}"
    if last is not None:
        who, call = last
        if not who:
            return "after the config was loaded, before any layer was called"
        subject = "the loss" if who == "loss" else f"layer {who!r}"
        return f"after {subject} returned from {call} (in gradcheck's own code)"
    return "before any layer was called"


def exited(pid: int) -> bool:
    """Whether the child ``pid`` has exited, without reaping it: while it is a zombie its
    pid and process group cannot be reused, so that killing them stays safe."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def wait_exit(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for the child ``pid`` to exit, without reaping it; whether
    it has. Wakes as it exits (a pidfd, where Linux has them), not at the next look: a
    process that ends as its report arrives cost up to 10 ms of polling per run."""
    if exited(pid):
        return True
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd here: look again after a short sleep
        time.sleep(max(0.0, min(seconds, 0.002)))
        return exited(pid)
    try:
        select.select([fd], [], [], max(0.0, seconds))
    except InterruptedError:
        pass
    finally:
        os.close(fd)
    return exited(pid)


def describe_exit(returncode: int | None) -> str:
    """How a worker ended, in words: ``was killed by SIGSEGV (a crash in native code)``."""
    if returncode is None:
        return "stopped"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = {
            "SIGSEGV": " (a crash in native code, such as a C extension a layer calls)",
            "SIGBUS": " (a crash in native code)",
            "SIGABRT": " (an abort in native code)",
            "SIGKILL": " (the system's out-of-memory killer ends processes this way)",
        }.get(name, "")
        return f"was killed by {name}{why}"
    return (
        f"exited with status {returncode} without a verdict (a plugin that calls "
        "os._exit(), or a library that exits the process, ends it this way)"
    )


#: Bytes of the shared page where the worker records the call running now: a flag (1
#: while user code runs), the length of the call's name, the name as JSON.
CALLS_BYTES = 4096


class CallRecorder:
    """Writes ``engine.passes.Calls`` into memory the supervisor shares, as each call
    starts and ends: a worker that crashes or is killed mid-call has no time to say
    which call it was in, but the page still says it. Costs a slice copy per call."""

    def __init__(self, memory: Any):
        self.memory = memory
        self.encoded: dict[tuple[str, str], bytes] = {}
        self.written: bytes | None = None

    def __call__(self, call: tuple[str, str] | None) -> None:
        if call is None:
            self.memory[0] = 0
            return
        data = self.encoded.get(call)
        if data is None:
            raw = json.dumps(list(call)).encode()[: CALLS_BYTES - 3]
            data = self.encoded[call] = struct.pack("!H", len(raw)) + raw
        if data is not self.written:
            self.memory[0] = 0
            self.memory[1 : 1 + len(data)] = data
            self.written = data
        self.memory[0] = 1


def read_calls(memory: Any) -> tuple[Any, Any]:
    """(current, last) as a CallRecorder left them (the supervisor's side)."""
    try:
        (size,) = struct.unpack_from("!H", memory, 1)
        if not 0 < size <= CALLS_BYTES - 3:
            return None, None
        call = tuple(json.loads(bytes(memory[3 : 3 + size])))
    except Exception:  # a page half written when the worker died
        return None, None
    return (call if memory[0] == 1 else None), call


class Forked:
    """A process this one forked (the worker gradcheck_cli/launch.py forks at the
    command's start, a spare helper of gradcheck_cli/spares.py), with the part of
    ``subprocess.Popen`` the supervisor and the helper pool use: ``pid``, ``poll``,
    ``wait``, ``returncode``."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                import subprocess

                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.002)
        return self.returncode


@dataclass
class Started:
    """A process started with ``BOOT``: the process, the write end of its job pipe
    (also its lifeline: it ends itself when this end closes), the read end of its event
    pipe, and the page where it records the call into a layer running now."""

    proc: subprocess.Popen | Forked
    job_w: int
    events_r: int
    calls: mmap.mmap

    def close(self) -> None:
        """Close this process's ends of the pipes and the page (the lifeline with them)."""
        for fd in (self.job_w, self.events_r):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(Exception):
            self.calls.close()


def start_worker(role: str, *, session: bool) -> Started:
    """Start ``python -c BOOT`` in ``role`` (``check``: the supervised worker;
    ``serve``: a ``--jobs`` helper). Its stdout is this process's stderr (a plugin's
    output is never part of this process's stdout) and its stdin /dev/null; with
    ``session`` it leads a session and process group of its own, otherwise it joins
    this process's group. Only the three descriptors it needs are passed to it."""
    import subprocess

    job_r, job_w = os.pipe()
    events_r, events_w = os.pipe()
    pipes.widen(events_w)
    calls_fd, calls = shared_page()
    argv = [sys.executable, "-c", BOOT, json.dumps(sys.path), role]
    try:
        proc = subprocess.Popen(
            [*argv, str(job_r), str(events_w), str(calls_fd)],
            stdin=subprocess.DEVNULL,
            stdout=2,
            pass_fds=(job_r, events_w, calls_fd),
            start_new_session=session,
        )
    except BaseException:
        for fd in (job_w, events_r):
            os.close(fd)
        calls.close()
        raise
    finally:
        for fd in (job_r, events_w, calls_fd):
            os.close(fd)
    return Started(proc, job_w, events_r, calls)


def shared_page() -> tuple[int, mmap.mmap]:
    """(fd, memory) of a page this process and the worker share, where the worker
    records the call running now (worker.CallRecorder). In memory only: nothing appears
    in the file system."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("gradcheck-calls", 0)
    else:
        import tempfile

        with tempfile.TemporaryFile() as f:  # unlinked at once
            fd = os.dup(f.fileno())
    os.ftruncate(fd, CALLS_BYTES)
    return fd, mmap.mmap(fd, CALLS_BYTES)


#: A worker's command line: ``python -c BOOT SYS_PATH ROLE JOB_FD EVENT_FD CALLS_FD``. The
#: working folder is taken off ``sys.path`` first (``-c`` puts it there; the command
#: itself does not), then the supervisor's own ``sys.path`` is used, so that the worker
#: imports the same gradcheck and finds the same plugin modules.
BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
    "from gradcheck_cli.worker import start; start(*sys.argv[2:])"
)
