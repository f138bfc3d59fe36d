"""The element-wise check cut into chunks, judged here and by helpers (``--jobs``).

Every element's verdict is its own (engine/verdict.py): a perturbed copy's value does
not depend on which other copies share its call (tests/test_vectorised.py), and the two
things a verdict reads from its whole tensor, the measured noise rho and the gradient
scale, are measured here once and handed over with the work (``Chunk``). So the plan
(the chosen elements of each tensor, tensor by tensor) can be cut into chunks and judged
by any process that holds the same objective, and the verdicts put back in plan order
are the ones one process gives, bit for bit, however many processes took part.

This process judges chunks too. ``Helpers`` take others: gradcheck_cli/jobs.py runs them
in supervised helper processes (``--jobs N``) or on any ``concurrent.futures.Executor``
(``gradcheck_cli.check(path, executor=...)``). A helper rebuilds the objective from the
config itself (``rebuild``) and receives chunks only: a tensor's name, flat indices,
their analytic values, rho and the gradient scale. Results come back as arrays.

When helpers pay. A helper must first start: an interpreter, the imports, the config
loaded and the analytic pass run again (``Helpers.startup`` seconds, plus what this
process took to prepare the numeric side). The work left is estimated from the CPU time per element
measured on the chunks judged so far (a tensor not yet reached at the cheapest cost
seen), and helpers get chunks only once it exceeds PAYS times that start-up: a small
check never starts one, and its report is the same either way.

Chunk sizes. A tensor's first chunk has FIRST_BLOCK elements; later ones are sized from
the tensor's measured CPU time per element to take about BLOCK_SECONDS (alone) or
CHUNK_SECONDS (a helper's; this process's own are OWN_SHARE of that, so that it comes
back often to keep every helper two chunks ahead), growing at most GROWTH-fold, and
near the end to at most the work left divided among 2 x the processes, so that no
process waits long for another's last chunk. Near the end, too, a helper gets a chunk
only while the work its helpers then hold (the chunks on their way, less what they
have done of them since) is at most their share of all the work left
(``_helper_room``): otherwise this process, feeding them between chunks of its own,
gave a helper its last chunk while it already held more than this process had left,
and then waited for it (``--jobs 2`` on the MLP 784-300-100: a 0.07 s chunk begun
0.014 s before this process ran out of work). A Ctrl-C finds at most one chunk per
process unrecorded. With helpers, each chunk's perturbed copies get an equal share
of ``--max-memory``, so that
the processes together stay within it (the copies per call change the time, never a
value: engine/numeric.py).

At the end, when nothing is left to cut, this process judges the chunks still waiting in
a helper's queue itself (``_steal``) rather than wait for them: a verdict is the same
whoever judges it.

Errors come out as they would in one process: a chunk that raises (a plugin's mistake,
NaN in a perturbed pass, a helper that died) stops the cutting of new chunks, the
chunks before it in plan order are waited for, and the first failing chunk's error is
raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import HelperUnavailable, NumericalError
from ..how_checked import HowChecked
from ..problem import Method, Mode, Problem
from ..report import TensorCheck
from . import blas
from .compare import ElementVerdict, Tolerances
from .elements import BLOCK_SECONDS, FIRST_BLOCK, GROWTH, _joined, tensor_check, user_shape
from .objective import NetworkObjective
from .passes import Gradients, Trace, analytic_pass, problem_params
from .verdict import gradient_scale, judge_elements, known, tensor_noise

if TYPE_CHECKING:
    import concurrent.futures

    from .progress import Tracker

#: Seconds a chunk for a helper is sized to take (CPU time on this process's measure).
CHUNK_SECONDS = 0.1
#: ... and this process's own chunks, while it feeds helpers, this fraction of that: it
#: hands out more chunks only between two of its own, and a helper must not run dry.
OWN_SHARE = 0.5
#: ... but never below this, however little work is left (each chunk costs a round trip).
MIN_CHUNK_SECONDS = 0.02
#: Helpers get chunks once the work left exceeds this many times their start-up.
PAYS = 2.0
#: Chunks in flight per helper: one running, one waiting, so that none idles while
#: this process judges a chunk of its own.
IN_FLIGHT = 2
#: Seconds between looks at the helpers' results while this process waits.
POLL = 0.1
#: Checks of at least this many elements have their helpers load the config beside this
#: process's own preparation (``prepare_early``). A guess that costs nothing but a spare
#: core's time when wrong: the schedule still decides from measured costs whether the
#: helpers get any chunk. Below it (a config of a few hundred elements) no helper loads
#: anything, so that a small check runs its plugins' imports once.
PREPARE_ELEMENTS = 10_000


@dataclass(frozen=True)
class Setup:
    """What a helper must know beyond the config to rebuild this process's objective:
    what the purity probes found (engine/purity.py) about each node, by name, as
    ``(defended, mixes_rows, fast_paths)``, whether the loss is defended, the
    objective's value f0, by which a helper tells that it loaded the same problem, and
    whether the loss mixes rows it said were per example."""

    nodes: dict[str, tuple[bool, bool, bool]]
    loss_defended: bool
    f0: float
    loss_mixes_rows: bool = False

    @classmethod
    def of(cls, problem: Problem, objective) -> Setup:
        nodes = {
            n.name: (bool(n.defended), bool(n.mixes_rows), bool(n.fast_paths))
            for n in problem.network
        }
        loss = problem.loss
        return cls(nodes, bool(loss.defended), float(objective.f0), bool(loss.mixes_rows))

    def apply(self, problem: Problem) -> None:
        for node in problem.network:
            found = self.nodes.get(node.name, (False, False, True))
            node.defended, node.mixes_rows, node.fast_paths = found
        problem.loss.defended = self.loss_defended
        problem.loss.mixes_rows = self.loss_mixes_rows


@dataclass(frozen=True)
class Chunk:
    """A share of the element-wise check: the flat elements ``index`` (K,) of ``tensor``,
    their analytic values (K,), the tensor's noise rho and its gradient scale
    (engine/verdict.py ``gradient_scale``), the verdict's settings and the memory budget. ``id``
    counts chunks in plan order."""

    id: int
    tensor: str
    index: np.ndarray
    analytic: np.ndarray
    rho: float
    scale: float
    tol: Tolerances
    max_memory: int


@dataclass
class ChunkResult:
    """A chunk's verdict (arrays, (K,) each), the forward passes it took, and the CPU
    seconds it took where it ran."""

    verdict: ElementVerdict
    forward_passes: int
    seconds: float


class Helpers(Protocol):
    """Processes that judge chunks besides this one (gradcheck_cli/jobs.py).

    workers: chunks judged at once elsewhere; startup: seconds before a helper judges
    its first chunk, beyond what this process took to prepare; eager: give them chunks
    from the start, whatever the check's size (tests, benchmarks)."""

    workers: int
    startup: float
    eager: bool

    def prepare(self) -> None:
        """A hint, given before this process's own analytic pass when the check is
        large enough (``prepare_early``): start the helpers and have them load the
        config and run the analytic pass now, beside this process, so that they are
        ready for ``start``. Never changes a verdict; may be a no-op."""

    def start(self, setup: Setup) -> None:
        """Called once, before the first chunk: what the helpers must apply."""

    def submit(self, chunk: Chunk) -> concurrent.futures.Future:
        """Judge ``chunk`` elsewhere; the future's result is a ChunkResult."""

    def isolate(
        self, rng: np.random.Generator, settings: Any, tol: Tolerances
    ) -> concurrent.futures.Future:
        """Run the per-layer isolation direction first elsewhere, drawing from ``rng``,
        under ``settings`` (the check's, options included) and ``tol``; the future's
        result is ``(layers, state)``: the LayerVerdicts and the generator's state
        after them (engine/isolation.py ``Ahead``)."""


@dataclass(frozen=True)
class Rebuilt:
    """A helper's copy of what ``run_check`` holds: the problem, the analytic pass's trace
    and gradients, and the float64 objective built from them."""

    problem: Problem
    trace: Trace
    grads: Gradients
    objective: NetworkObjective


def prepare_early(problem: Problem, elements: int, helpers: Helpers | None) -> None:
    """Give ``helpers`` the ``prepare`` hint when the check will cut chunks (central
    differences, full or sample mode) of at least PREPARE_ELEMENTS ``elements``: a
    helper's config load and analytic pass then run while this process runs its own,
    instead of after its first chunk (``--jobs 2`` on the MLP 784-300-100: the helper
    began judging 0.08 s after this process did)."""
    s = problem.settings
    if helpers is None or helpers.workers <= 0 or elements < PREPARE_ELEMENTS:
        return
    if s.method is Method.CENTRAL and s.mode in (Mode.FULL, Mode.SAMPLE):
        helpers.prepare()


@blas.single_threaded  # as run_check: the same BLAS calls, the same numbers
def analytic_of(problem: Problem) -> tuple[Trace, Gradients]:
    """A helper's analytic pass of a freshly loaded problem (HelperUnavailable when it
    fails here)."""
    try:
        return analytic_pass(problem, problem_params(problem))
    except NumericalError as e:
        raise HelperUnavailable(f"the analytic pass failed here: {e}") from None


@blas.single_threaded  # as run_check: the same BLAS calls, the same numbers
def rebuild_all(
    problem: Problem, setup: Setup, passed: tuple[Trace, Gradients] | None = None
) -> Rebuilt:
    """What ``run_check`` builds, rebuilt in a helper from a freshly loaded problem: the
    analytic pass (``passed``: already run, by ``analytic_of``), then what the purity
    probes found, then the float64 objective, in run_check's order (a node defended
    after the probes ran undefended in the analytic pass, there as here).
    HelperUnavailable when the problem is not the one the chunks come from (its f0
    differs)."""
    trace, grads = analytic_of(problem) if passed is None else passed
    setup.apply(problem)
    objective = NetworkObjective.build(problem, trace, grads, problem_params(problem, np.float64))
    if objective.f0 != setup.f0:
        raise HelperUnavailable(f"the loss here is {objective.f0!r}, not {setup.f0!r}")
    return Rebuilt(problem, trace, grads, objective)


def rebuild(problem: Problem, setup: Setup) -> NetworkObjective:
    """The objective of ``rebuild_all``."""
    return rebuild_all(problem, setup).objective


@blas.single_threaded
def judge_chunk(objective, chunk: Chunk) -> ChunkResult:
    """A chunk's verdict on ``objective`` (a helper's side): with the noise and the
    gradient scale measured where the chunk was cut."""
    known(objective, {(chunk.tensor, chunk.tol.eps): chunk.rho}, {chunk.tensor: chunk.scale})
    before, started = objective.forward_passes, time.thread_time()
    verdict = judge_elements(
        objective, chunk.tensor, chunk.index, chunk.analytic, chunk.tol, chunk.max_memory
    )
    spent = time.thread_time() - started
    return ChunkResult(verdict, objective.forward_passes - before, spent)


@dataclass
class _Share:
    """One tensor's way through the plan: ``cursor`` elements cut into chunks, ``done``
    of them judged, their verdicts by the chunk's first position."""

    tensor: str
    index: np.ndarray
    cursor: int = 0
    done: int = 0
    last: int = 0  # the size of the last chunk cut
    cost: float | None = None  # CPU seconds per element, as last measured
    rho: float | None = None
    scale: float | None = None  # the tensor's gradient scale (engine/verdict.py)
    parts: dict[int, tuple[np.ndarray, ElementVerdict]] = field(default_factory=dict)

    @property
    def left(self) -> int:
        return len(self.index) - self.cursor

    @property
    def complete(self) -> bool:
        return self.done == len(self.index)


def check_plan(
    problem: Problem,
    objective,
    checked: list[str],
    plan: dict[str, np.ndarray],
    tol: Tolerances,
    tracker: Tracker,
    finished: Callable[..., None],
    helpers: Helpers | None = None,
    prepared_in: float = 0.0,
    idle: Callable[[], None] | None = None,
    helping: Callable[[Helpers], None] | None = None,
) -> None:
    """Judge the plan's elements (module docstring), handing each tensor's TensorCheck
    to ``finished`` in plan order as soon as it and the tensors before it are complete,
    and its progress to ``tracker`` (engine/progress.py: the tensor it shows is the
    first not yet handed over; elements judged ahead of it count once it is reached).
    On Ctrl-C the KeyboardInterrupt carries ``partial_checks``: the tensors begun and
    not yet handed over, each with the elements finished (mode ``interrupted`` when some
    are missing). ``idle`` is called once, when everything is cut and judged here and
    this process would only wait for the helpers' last chunks: work of its own that
    does not depend on their verdicts (engine/isolation.py ``Ahead``). ``helping`` is
    called once, with the helpers, as they get their first work: work of that kind to
    hand them before the chunks."""
    _Schedule(
        problem, objective, checked, plan, tol, tracker, finished, helpers, prepared_in, idle
    ).run(helping)


class _Schedule:
    def __init__(
        self, problem, objective, checked, plan, tol, tracker, finished, helpers, prepared, idle
    ):
        self.idle = idle
        self.problem = problem
        self.objective = objective
        self.tol = tol
        self.max_memory = problem.settings.max_memory
        self.tracker = tracker
        self.finished = finished
        self.helpers = helpers if helpers is not None and helpers.workers > 0 else None
        self.prepared = prepared
        self.shares = [_Share(t, np.asarray(plan[t])) for t in checked]
        self.current = 0  # the first share with elements left to cut
        self.announced = 0  # shares handed to ``finished``
        self.next_id = 0
        self.flying: dict[concurrent.futures.Future, Chunk] = {}
        self.errors: dict[int, BaseException] = {}
        #: each chunk's tensor and first position there, by chunk id
        self.where: dict[int, tuple[_Share, int]] = {}
        self.helping = False
        self.helping_hook: Callable[[Helpers], None] | None = None
        #: each chunk out with the helpers: the seconds it is expected to take, by id
        self.expected: dict[int, float] = {}
        #: when the helpers last began on the chunks they hold (a result came back, or
        #: chunks went out to helpers that held none): time.monotonic()
        self.draining = 0.0

    # --- the loop ---------------------------------------------------------------------

    def run(self, helping: Callable[[Helpers], None] | None = None) -> None:
        self.helping_hook = helping
        try:
            self._show()
            if self.helpers is not None and self.helpers.eager:
                self._start_helping()
            while True:
                self._collect(wait=False)
                self._raise_first_error()
                if self.helping:  # before announcing: a large tensor's report takes a while
                    self._feed()
                self._announce()
                chunk = self._cut()
                if chunk is not None:
                    self._judge_here(chunk)
                    self._consider_helpers()
                elif self.flying:
                    if self._steal():
                        continue
                    if self.idle is not None and not self.errors:  # once, while waiting
                        idle, self.idle = self.idle, None
                        idle()
                        continue
                    self._collect(wait=True)
                elif self.errors:
                    self._raise_first_error()
                else:
                    break
            self._announce()
        except KeyboardInterrupt as stop:
            stop.partial_checks = self._partial()  # type: ignore[attr-defined]
            raise
        finally:
            for future in self.flying:
                future.cancel()

    def _judge_here(self, chunk: Chunk) -> None:
        started = time.thread_time()
        try:
            verdict = judge_elements(
                self.objective,
                chunk.tensor,
                chunk.index,
                chunk.analytic,
                chunk.tol,
                chunk.max_memory,
                lambda k: self._tick(chunk.tensor, k),
            )
        except Exception as e:  # raised in plan order (_raise_first_error)
            self.errors[chunk.id] = e
            return
        self._record(chunk, verdict, time.thread_time() - started)

    def _steal(self) -> bool:
        """Nothing left to cut: judge here the last chunk handed out, while more are out
        than there are helpers (so that it is most likely still waiting in a helper's
        queue), instead of waiting for it. Whoever judges a chunk gives it the same
        verdict; the helper's answer, should it come, is dropped."""
        if self.errors or len(self.flying) <= self.helpers_out:
            return False
        future = max(self.flying, key=lambda f: self.flying[f].id)
        chunk = self.flying.pop(future)
        self.expected.pop(chunk.id, None)
        future.cancel()
        self._judge_here(chunk)  # ticks as it goes
        return True

    @property
    def helpers_out(self) -> int:
        return self.helpers.workers if self.helpers is not None else 0

    def _collect(self, *, wait: bool) -> None:
        """Record the helpers' finished chunks (waiting up to POLL for one)."""
        if not self.flying:
            return
        import concurrent.futures  # only checks that have helpers get here

        done, _ = concurrent.futures.wait(
            list(self.flying),
            timeout=POLL if wait else 0,
            return_when=concurrent.futures.FIRST_COMPLETED,
        )
        if done:
            self.draining = time.monotonic()
        for future in sorted(done, key=lambda f: self.flying[f].id):
            chunk = self.flying.pop(future)
            self.expected.pop(chunk.id, None)
            try:
                result: ChunkResult = future.result()
            except HelperUnavailable:  # judged here instead, and no more chunks go out
                self.helpers, self.helping = None, False
                self._judge_here(chunk)
                continue
            except Exception as e:
                self.errors[chunk.id] = e
                continue
            self.objective.forward_passes += result.forward_passes
            self._record(chunk, result.verdict, result.seconds)
            self._tick(chunk.tensor, len(chunk.index))

    def _record(self, chunk: Chunk, verdict: ElementVerdict, seconds: float) -> None:
        share, start = self.where.pop(chunk.id)
        share.parts[start] = (chunk.index, verdict)
        share.done += len(chunk.index)
        if len(chunk.index):
            share.cost = max(seconds, 1e-9) / len(chunk.index)

    def _raise_first_error(self) -> None:
        """Raise the first failing chunk's error once every chunk before it is judged."""
        if not self.errors:
            return
        first = min(self.errors)
        if all(c.id > first for c in self.flying.values()):
            raise self.errors[first]

    def _announce(self) -> None:
        """Hand over, in plan order, every complete tensor whose predecessors are."""
        while self.announced < len(self.shares) and self.shares[self.announced].complete:
            self.finished(self._tensor_check(self.shares[self.announced]))
            self.announced += 1
            self._show()

    def _show(self) -> None:
        """Point the tracker at the first tensor not handed over, with what is done of it."""
        if self.announced < len(self.shares):
            share = self.shares[self.announced]
            self.tracker.begin(share.tensor)
            if share.done:
                self.tracker.tick(share.done)

    def _tick(self, tensor: str, k: int) -> None:
        """k more elements of ``tensor`` judged: shown now if it is the tracker's."""
        if self.announced < len(self.shares) and self.shares[self.announced].tensor == tensor:
            self.tracker.tick(k)

    # --- cutting chunks ---------------------------------------------------------------

    def _cut(self, *, elsewhere: bool = False, most: float | None = None) -> Chunk | None:
        """The next chunk in plan order (``elsewhere``: for a helper; ``most``: of at
        most this many seconds, at the tensor's measured cost), or None when everything
        is cut (or an error stopped the cutting)."""
        if self.errors:
            return None
        while self.current < len(self.shares) and self.shares[self.current].left == 0:
            self.current += 1
        if self.current == len(self.shares):
            return None
        share = self.shares[self.current]
        chunk_id = self.next_id
        self.next_id += 1
        try:
            if share.rho is None:  # measured once, here, for every chunk of the tensor
                eps, budget = self.tol.eps, self.max_memory
                share.rho = tensor_noise(self.objective, share.tensor, eps, budget)
            if share.scale is None:
                share.scale = gradient_scale(self.objective, share.tensor)
        except Exception as e:  # the first chunk of this tensor would have raised it
            self.errors[chunk_id] = e
            return None
        size = self._size(share, elsewhere)
        if most is not None and share.cost is not None:
            size = max(1, min(size, int(most / share.cost)))
        index = share.index[share.cursor : share.cursor + size]
        self.where[chunk_id] = (share, share.cursor)
        share.cursor += len(index)
        share.last = len(index)
        analytic = np.asarray(self.objective.analytic[share.tensor]).reshape(-1)[index]
        rho, scale = share.rho, share.scale
        budget = self.max_memory  # --max-memory holds for all the processes together
        if self.helping:
            budget = max(1, budget // (1 + self.helpers.workers))  # type: ignore[union-attr]
        return Chunk(chunk_id, share.tensor, index, analytic, rho, scale, self.tol, budget)

    def _size(self, share: _Share, elsewhere: bool) -> int:
        if share.cost is None:
            return min(FIRST_BLOCK, share.left) if share.last == 0 else min(share.last, share.left)
        seconds = BLOCK_SECONDS
        if self.helping:
            processes = 1 + self.helpers.workers  # type: ignore[union-attr]
            seconds = min(CHUNK_SECONDS, self._left_seconds() / (2 * processes))
            seconds = max(seconds if elsewhere else seconds * OWN_SHARE, MIN_CHUNK_SECONDS)
        size = min(int(seconds / share.cost), GROWTH * max(share.last, 1))
        return max(1, min(size, share.left))

    def _cost(self, share: _Share) -> float:
        """CPU seconds per element of ``share``, as measured; for a tensor not yet
        measured, the cheapest cost seen (0 before any): costs differ by tensor (an
        input's copy runs the whole network, a last layer's weight only the loss), and
        an estimate on the low side starts no helper that does not pay; a large check
        still passes the threshold within a few chunks."""
        if share.cost is not None:
            return share.cost
        return min((s.cost for s in self.shares if s.cost is not None), default=0.0)

    def _left_seconds(self) -> float:
        """The CPU seconds the elements not yet cut would take here (``_cost``)."""
        return sum(s.left * self._cost(s) for s in self.shares)

    # --- helpers ----------------------------------------------------------------------

    def _consider_helpers(self) -> None:
        """Start helping once the work left pays for a helper's start-up."""
        if self.helpers is None or self.helping:
            return
        if self._left_seconds() > PAYS * (self.helpers.startup + self.prepared):
            self._start_helping()

    def _start_helping(self) -> None:
        self.helpers.start(Setup.of(self.problem, self.objective))  # type: ignore[union-attr]
        self.helping = True
        hook, self.helping_hook = self.helping_hook, None
        if hook is not None:
            hook(self.helpers)  # type: ignore[arg-type]

    def _feed(self) -> None:
        """Keep IN_FLIGHT chunks per helper on their way, within their share of the
        work left (``_helper_room``)."""
        room = IN_FLIGHT * self.helpers.workers  # type: ignore[union-attr]
        while len(self.flying) < room:
            most = self._helper_room()
            if most is not None and most < MIN_CHUNK_SECONDS:
                return
            chunk = self._cut(elsewhere=True, most=most)
            if chunk is None:
                return
            try:
                future = self.helpers.submit(chunk)  # type: ignore[union-attr]
            except Exception:  # no helper could be started: this process goes on alone
                self.helpers, self.helping = None, False
                self._judge_here(chunk)
                return
            if not self.flying:
                self.draining = time.monotonic()
            self.flying[future] = chunk
            share = self.where[chunk.id][0]
            self.expected[chunk.id] = len(chunk.index) * self._cost(share)

    def _helper_room(self) -> float | None:
        """The seconds of work a helper may still be given: the helpers' share of all the
        work left (what is not cut yet and what they hold), less what they hold. What
        they hold is the expected seconds of their chunks less what ``workers`` helpers
        have done since they began on them (``draining``). None (no limit) before any
        cost is measured (helpers started eagerly)."""
        if all(s.cost is None for s in self.shares):
            return None
        workers = self.helpers.workers  # type: ignore[union-attr]
        since = time.monotonic() - self.draining
        held = max(0.0, sum(self.expected.values()) - workers * since)
        total = self._left_seconds() + held
        return workers * total / (1 + workers) - held

    # --- results ----------------------------------------------------------------------

    def _tensor_check(self, share: _Share, *, partial: bool = False) -> TensorCheck:
        starts = sorted(share.parts)
        parts = [share.parts[s] for s in starts]
        index = np.concatenate([p[0] for p in parts]) if parts else share.index[:0]
        verdict = _joined([p[1] for p in parts])
        mode = self.problem.settings.mode.value
        shape = user_shape(self.problem, share.tensor)
        check = tensor_check(
            share.tensor, self.objective.analytic[share.tensor], index, verdict, shape, mode
        )
        if partial and not share.complete:
            check.mode = HowChecked.INTERRUPTED
        return check

    def _partial(self) -> list[TensorCheck]:
        """The tensors begun and not handed over: what they finished."""
        return [
            self._tensor_check(s, partial=True) for s in self.shares[self.announced :] if s.done
        ]
