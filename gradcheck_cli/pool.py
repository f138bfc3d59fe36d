"""``HelperPool``: a ``concurrent.futures.Executor`` of helper processes, the ``--jobs``
helpers (gradcheck_cli/jobs.py says what they run).

Each helper is a spare the worker forked in advance (gradcheck_cli/spares.py; only for
a pool in the worker's group) or is started like the supervised worker
(gradcheck_cli/wire.py ``start_worker``, role ``serve`` in gradcheck_cli/worker.py),
and records the call into a layer it is running in a page this process reads: a helper
that crashes or is killed fails its tasks with a WorkerDied naming that call, and one
that hangs is named by the worker's running call (``wire.ELSEWHERE``) when
``--timeout`` stops the run. Under ``gradcheck run`` the helpers are in the worker's
process group, so that the supervisor's stop and kill reach them; elsewhere each leads a
group of its own. Shutting the pool down closes their task pipes (their lifeline), kills
what is left and reaps every one: no helper outlives its pool.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from . import messages, spares, wire
from .errors import WorkerDied

#: Seconds a helper whose task pipe was closed is given to exit before it is killed.
GRACE = 0.5


class RemoteFailure(Exception):
    """An exception a helper raised that is not gradcheck's own (a bug): ``failure``
    holds its type, message and traceback as text (wire.Failure)."""

    def __init__(self, failure: wire.Failure):
        super().__init__(f"{failure.type_name}: {failure.message}")
        self.failure = failure


@dataclass
class _Helper:
    """One helper process of a HelperPool and the futures of the tasks sent to it."""

    started: wire.Started
    pending: dict[int, concurrent.futures.Future]
    inbox: messages.Inbox | None = None  # its results, as they arrive
    dead: bool = False

    @property
    def pid(self) -> int:
        return self.started.proc.pid


class HelperPool(concurrent.futures.Executor):
    """An Executor of up to ``max_workers`` helper processes (module docstring), started
    as tasks arrive: a task goes to the helper with the fewest waiting, and a new
    helper starts while every one has some. ``submit(fn, *args)`` needs ``fn`` and its
    arguments to pickle (by reference: a module-level function).

    join_group: the helpers join this process's group (the supervised worker, whose
    group the supervisor stops and kills); otherwise each leads a group of its own,
    killed with whatever it started when the pool shuts down."""

    def __init__(self, max_workers: int, *, join_group: bool = False):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self._helpers: list[_Helper] = []
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._closed = False
        self._reader: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._session = not join_group

    # --- the Executor interface ---------------------------------------------------------

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:  # type: ignore[override]
        if kwargs:
            import functools

            fn = functools.partial(fn, **kwargs)
        future: concurrent.futures.Future = concurrent.futures.Future()
        task_id = next(self._ids)
        body = messages.dumps((task_id, fn, args))
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            helper = self._choose()
            helper.pending[task_id] = future
        with contextlib.suppress(OSError):  # it died already: the reader says how
            messages.write(helper.started.job_w, body)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Close every helper's task pipe (it exits at once), kill those still there
        after GRACE seconds (with what they started, where they lead their own group),
        reap them all; futures still waiting are cancelled."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            helpers = list(self._helpers)
        with contextlib.suppress(ValueError):
            wire.ELSEWHERE.remove(self.running)
        for helper in helpers:
            with contextlib.suppress(OSError):
                os.close(helper.started.job_w)
        deadline = time.monotonic() + GRACE
        for helper in helpers:  # each wakes this process as it exits
            wire.wait_exit(helper.pid, deadline - time.monotonic())
        for helper in helpers:  # none is reaped yet: its pid and group are still its own
            pid = helper.pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if self._session:
                    os.killpg(pid, signal.SIGKILL)
                elif not wire.exited(helper.pid):
                    os.kill(pid, signal.SIGKILL)
        for helper in helpers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                helper.started.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._reader is not None:
            self._reader.join(timeout=5)
        for helper in helpers:
            for future in helper.pending.values():
                future.cancel()
            with contextlib.suppress(OSError):
                os.close(helper.started.events_r)
            with contextlib.suppress(Exception):
                helper.started.calls.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- naming a call --------------------------------------------------------------------

    def running(self) -> tuple[Any, Any]:
        """``(current, last)`` of the first helper running a call into a layer now."""
        last = None
        for helper in list(self._helpers):
            with contextlib.suppress(Exception):
                current, last_here = wire.read_calls(helper.started.calls)
                if current is not None:
                    return current, last_here
                last = last_here or last
        return None, last

    # --- helpers --------------------------------------------------------------------------

    def _choose(self) -> _Helper:
        """The helper for the next task (the lock is held)."""
        alive = [h for h in self._helpers if not h.dead]
        idle = min(alive, key=lambda h: len(h.pending), default=None)
        if idle is None or (idle.pending and len(self._helpers) < self.max_workers):
            return self._start()
        return idle

    def _start(self) -> _Helper:
        spare = None if self._session else spares.take()  # a spare is in this group
        started = spare or wire.start_worker("serve", session=self._session)
        helper = _Helper(started, {})

        def unreadable(exc: Exception) -> None:
            # a result lost: its task would wait for ever, so every task sent to this
            # helper fails, and the helper, whose stream can no longer be trusted, goes
            self._kill(helper)
            self._died(helper, f"sent a message that could not be read ({exc})")

        helper.inbox = messages.Inbox(_load, unreadable)
        self._helpers.append(helper)
        if self._reader is None:
            wire.ELSEWHERE.append(self.running)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        else:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        return helper

    def _kill(self, helper: _Helper) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(helper.pid, signal.SIGKILL)

    def _read(self) -> None:
        """The reader thread: results into futures, and a helper's death into a
        WorkerDied for each of its tasks."""
        while not self._closed:
            with self._lock:
                watched = {h.started.events_r: h for h in self._helpers if not h.dead}
            try:
                ready, _, _ = select.select([self._wake_r, *watched], [], [], 0.1)
            except (OSError, ValueError):
                return
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 64)
            for fd, helper in watched.items():
                if fd in ready:
                    self._take(helper)
                elif wire.exited(helper.pid):  # it ended; a child may hold the pipe
                    while not helper.dead and select.select([fd], [], [], 0)[0]:
                        self._take(helper)
                    self._died(helper)

    def _take(self, helper: _Helper) -> None:
        """Read what the helper sent; its end of file is its death."""
        try:
            got = helper.inbox.read(helper.started.events_r)  # type: ignore[union-attr]
        except OSError:
            got = None
        if got is None:
            self._died(helper)
            return
        for kind, payload in got:
            if kind not in ("result", "raised"):
                continue
            task_id, value = payload
            future = helper.pending.pop(task_id, None)
            if future is None or not future.set_running_or_notify_cancel():
                continue
            if kind == "result":
                future.set_result(value)
            else:
                future.set_exception(_exception(value))

    def _died(self, helper: _Helper, how: str | None = None) -> None:
        """Fail every task sent to ``helper``, which ended (``how``: what it did instead,
        when not its exit status)."""
        if helper.dead:
            return
        helper.dead = True
        if self._closed:
            return
        current, last = wire.read_calls(helper.started.calls)
        if how is None:
            how = wire.describe_exit(_status(helper.started.proc))
        error = WorkerDied(
            "the check could not be carried out: a helper process (--jobs) "
            f"{how} {wire.describe_call(current, last)}"
        )
        for future in list(helper.pending.values()):
            if future.set_running_or_notify_cancel():
                future.set_exception(error)
        helper.pending.clear()


def _load(body: Any) -> Any:
    """A helper's message (a function of its own, which tests replace)."""
    return messages.loads(body)


def _exception(told: Any) -> BaseException:
    """The exception a helper raised: gradcheck's own whole, anything else as text."""
    if isinstance(told, Exception):
        return told
    if isinstance(told, wire.Failure):
        return RemoteFailure(told)
    return RuntimeError(str(told))


def _status(proc: subprocess.Popen, wait: float = 1.0) -> int | None:
    """The exit status of a process that ended (negative: the signal that killed it),
    waiting up to ``wait`` seconds for it to end, without reaping it: until it is reaped
    its pid and process group stay its own, so that killing them stays safe."""
    deadline = time.monotonic() + wait
    while True:
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return proc.returncode
        if info is not None:
            exited = info.si_code == os.CLD_EXITED
            return info.si_status if exited else -info.si_status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.005)
