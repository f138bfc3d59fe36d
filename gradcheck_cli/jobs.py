"""``--jobs N``: the element-wise check shared with helper processes, or run on any
``concurrent.futures.Executor`` (a Dask cluster's: ``Client.get_executor()``).

engine/schedule.py cuts the plan into chunks and decides when helpers pay; this module
is where the chunks run:

- ``Source`` says where a helper finds the problem: the config's absolute path (or the
  mapping ``gradcheck_cli.check`` was given, with its folder) and the seed. Every helper
  loads the config and its plugins itself and rebuilds the objective once per check
  (``judge_remote``, cached per process): only chunks travel, and arrays come back.
- ``HelperPool`` (gradcheck_cli/pool.py) is an Executor of helper processes started
  like the supervised worker, named with their call when they crash or hang, and never
  outliving the check;
- ``helpers_for`` chooses: an executor the caller gave, a HelperPool of N - 1 helpers
  for ``jobs=N``, or none for ``jobs=1``. Helpers start only when the work pays for
  their start-up (HELPER_STARTUP seconds, none for the spares the worker forked in
  advance, gradcheck_cli/spares.py; plus the time this process took to prepare);
  ``GRADCHECK_JOBS_EAGER=1`` gives them work from the start, for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import spares
from .errors import HelperUnavailable

if TYPE_CHECKING:
    import concurrent.futures

#: Seconds a helper takes to start before it judges its first chunk (an interpreter,
#: numpy and gradcheck imported; its config load and analytic pass are added as this
#: process measured them): measured on a 2-core machine, ``benchmarks/jobs.py``.
HELPER_STARTUP = 0.25
#: ``GRADCHECK_JOBS_EAGER=1``: helpers get chunks from the start, whatever the check's
#: size (the reports are the same; tests and benchmarks use it).
EAGER_ENV = "GRADCHECK_JOBS_EAGER"


@dataclass(frozen=True)
class Source:
    """Where a helper finds the problem: ``config``, an absolute path or a mapping with
    the structure of a config (``base_dir``: the folder its relative paths start from),
    and ``seed``, the seed that replaces the config's (None: the config's). ``token``
    names one check: a helper rebuilds its objective once per token."""

    config: str | Mapping[str, Any]
    base_dir: str | None
    seed: int | None
    token: str

    @classmethod
    def of(
        cls,
        config: str | os.PathLike | Mapping[str, Any],
        *,
        base_dir: str | None = None,
        seed: int | None = None,
    ) -> Source:
        if isinstance(config, Mapping):
            where = base_dir or os.getcwd()
            return cls(dict(config), os.path.abspath(where), seed, uuid.uuid4().hex)
        return cls(os.path.abspath(os.fspath(config)), None, seed, uuid.uuid4().hex)


#: What a helper process rebuilt for the check of this token: {token: schedule.Rebuilt}.
_PREPARED: dict[str, Any] = {}
#: What a helper loaded ahead of the check's setup (``prepare_remote``): {token:
#: (problem, (trace, gradients))}.
_LOADED: dict[str, Any] = {}


def judge_remote(source: Source, setup: Any, chunk: Any) -> Any:
    """Judge ``chunk`` (engine/schedule.py) in this process, a helper: the config is
    loaded and the objective rebuilt once per check. HelperUnavailable when this process
    cannot rebuild the same problem (the caller then judges the chunk itself)."""
    from .engine.schedule import judge_chunk

    return judge_chunk(_prepared(source, setup).objective, chunk)


def isolate_remote(source: Source, setup: Any, rng: Any, settings: Any, tol: Any) -> Any:
    """The per-layer isolation, direction first, run in this process, a helper, on the
    problem it rebuilt (``judge_remote``) under the check's ``settings``:
    ``(layers, state)``, the LayerVerdicts and ``rng``'s state after them
    (engine/isolation.py ``Ahead``)."""
    import dataclasses

    from .engine import blas
    from .engine.isolation import Isolation, isolate_layers

    built = _prepared(source, setup)
    problem = dataclasses.replace(built.problem, settings=settings)
    isolate = blas.single_threaded(isolate_layers)  # as run_check: the same numbers
    how = Isolation.DIRECTIONS
    layers = isolate(problem, built.objective, built.trace, built.grads, tol, rng, how)
    return layers, rng.bit_generator.state


def prepare_remote(source: Source) -> None:
    """Load the config and run the analytic pass in this process, a helper, before the
    check's setup is known (``ExecutorHelpers.prepare``); ``_prepared`` finishes the
    rebuild. A failure here is raised again by the first chunk, which then goes back."""
    if source.token not in _PREPARED and source.token not in _LOADED:
        from .engine.schedule import analytic_of

        problem = _load(source)
        _LOADED.clear()  # one check at a time
        _LOADED[source.token] = (problem, analytic_of(problem))


def _prepared(source: Source, setup: Any) -> Any:
    """The check's ``schedule.Rebuilt`` in this process, made once per token."""
    built = _PREPARED.get(source.token)
    if built is None:
        from .engine.schedule import rebuild_all

        _PREPARED.clear()  # one check at a time: the last one's arrays go
        loaded = _LOADED.pop(source.token, None)
        problem, passed = (_load(source), None) if loaded is None else loaded
        built = _PREPARED[source.token] = rebuild_all(problem, setup, passed)
    return built


def _load(source: Source) -> Any:
    """The problem ``source`` names, freshly loaded (HelperUnavailable when it does not
    load here); a hang or crash meanwhile is named as the config's load."""
    from pathlib import Path

    from .config import load_problem, problem_from_dict
    from .engine.passes import Calls
    from .errors import GradcheckError

    Calls.enter("", "load")
    try:
        if isinstance(source.config, Mapping):
            folder = Path(source.base_dir or os.getcwd())
            return problem_from_dict(dict(source.config), base_dir=folder, seed=source.seed)
        return load_problem(source.config, seed=source.seed)
    except GradcheckError as e:
        raise HelperUnavailable(f"the config did not load here: {e}") from None
    finally:
        Calls.leave()


class ExecutorHelpers:
    """Helpers on an Executor (engine/schedule.py ``Helpers``): each chunk is
    ``judge_remote(source, setup, chunk)`` submitted to it. workers: how many chunks it
    judges at once; startup: seconds before one judges its first chunk. ``make``
    builds the executor when the first chunk goes out (``start``), so that a check
    that never needs helpers never builds one; ``close`` shuts down what it built."""

    def __init__(
        self,
        executor: concurrent.futures.Executor | None,
        source: Source,
        workers: int,
        *,
        startup: float = 0.0,
        eager: bool = False,
        make: Callable[[], concurrent.futures.Executor] | None = None,
    ):
        self.executor = executor
        self.source = source
        self.workers = workers
        self.startup = startup
        self.eager = eager
        self.setup: Any = None
        self._make = make
        self._made: concurrent.futures.Executor | None = None

    def prepare(self) -> None:
        """Start the helpers this object makes (not a caller's executor, whose workers
        may be anywhere) and have each load the problem now (``prepare_remote``)."""
        if self._make is None or self.executor is not None:
            return
        self.executor = self._made = self._make()
        for _ in range(self.workers):  # the pool gives each task to a helper of its own
            self.executor.submit(prepare_remote, self.source)

    def start(self, setup: Any) -> None:
        self.setup = setup
        if self.executor is None and self._make is not None:
            self.executor = self._made = self._make()

    def submit(self, chunk: Any) -> concurrent.futures.Future:
        if self.executor is None:
            raise RuntimeError("no executor: start() first")
        return self.executor.submit(judge_remote, self.source, self.setup, chunk)

    def isolate(self, rng: Any, settings: Any, tol: Any) -> concurrent.futures.Future:
        if self.executor is None:
            raise RuntimeError("no executor: start() first")
        return self.executor.submit(isolate_remote, self.source, self.setup, rng, settings, tol)

    def close(self) -> None:
        if self._made is not None:
            self._made.shutdown(wait=True, cancel_futures=True)
            self._made = None


def eager() -> bool:
    return os.environ.get(EAGER_ENV, "").strip() == "1"


@contextlib.contextmanager
def helpers_for(
    source: Source,
    jobs: int,
    executor: concurrent.futures.Executor | None = None,
    *,
    join_group: bool = False,
) -> Iterator[ExecutorHelpers | None]:
    """The helpers of one check (module docstring): ``executor``'s (2 x ``jobs`` chunks
    in flight), a HelperPool of ``jobs - 1`` processes (in this process's group with
    ``join_group``), or None for ``jobs`` 1. A pool made here is shut down on the way
    out, whatever the ending."""
    if executor is not None:
        yield ExecutorHelpers(executor, source, max(1, jobs), eager=eager())
        return
    if jobs <= 1:
        yield None
        return

    def make() -> concurrent.futures.Executor:
        from .pool import HelperPool  # concurrent.futures loads only now

        return HelperPool(jobs - 1, join_group=join_group)

    # spares (gradcheck_cli/spares.py) are started already: they load the config and
    # run the analytic pass only, which the schedule adds as this process measured it
    spare = join_group and spares.available() >= jobs - 1
    startup = 0.0 if spare else HELPER_STARTUP
    helpers = ExecutorHelpers(None, source, jobs - 1, startup=startup, eager=eager(), make=make)
    try:
        yield helpers
    finally:
        helpers.close()
