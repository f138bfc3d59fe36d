"""Finite differences: steps relative to each element, vectorised evaluations chunked
under a memory budget, and the forward's measured rounding noise.

Steps. An element v of a tensor moves by h = eps * max(|v|, s), s the tensor's root
mean square (1 for a tensor of zeros): values of 1e-6 and of 1e4 are moved alike,
relative to their size, and an element at 0 moves relative to its neighbours. The steps
taken are the representable ones, fl(v + h) - v, so quotients divide by the step the
forward really saw.

Noise. The objective's own rounding noise rho (the error of one evaluation of f) is
measured, not assumed: at a few probe elements, f(v + t) + f(v - t) - 2 f(v) at a tiny
step t holds nothing but rounding (its real part, f'' t^2, is far below it), whatever
the loss's size and however much its terms cancel. Probes whose value grows with t (a
kink or a curvature term, not noise) are left out.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import domain

Progress = Callable[[int], None]  # called with the number of elements just finished

#: The float64 machine epsilon, 2^-52 (np.finfo costs 3 ms at import).
EPS64 = sys.float_info.epsilon

#: Elements of a tensor whose noise is probed (at most).
NOISE_PROBES = 8
#: The probe's tiny step, relative to the element's step h.
PROBE_STEP = 1e-3
#: Probes not yet quiet at the probe step are read again at steps PROBE_STEP times
#: smaller, up to this many times.
DEEPER_PROBES = 2
#: Least noise assumed for one evaluation, in float64 epsilons of the terms' magnitude.
FLOOR_ULPS = 4.0
#: Least noise assumed for one evaluation whatever the terms' magnitude: below its
#: smallest normal number (2.2e-308) float64 keeps an absolute grid of 2^-1074, so terms
#: of 1e-316 (the deltas behind a dropout and weights of 1e-7) round to it, however few
#: epsilons of them that is; this allows 64 such roundings.
SUBNORMAL_FLOOR = 64 * 2.0**-1074
#: Most noise believed to be rounding, in float64 epsilons of the terms' magnitude.
NOISE_CAP = 1e6


def step_scale(values: np.ndarray) -> float:
    """The tensor's root mean square, the step's floor for its small elements (1.0 for a
    tensor of zeros or one with non-finite values)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        return 1.0
    rms = float(np.sqrt(np.mean(v * v))) if np.all(np.isfinite(v)) else 0.0
    return rms if rms > 0 and np.isfinite(rms) else 1.0


def element_steps(values: np.ndarray, scale: float, eps: float) -> np.ndarray:
    """h = eps * max(|v|, scale) for each value (K,)."""
    return eps * np.maximum(np.abs(np.asarray(values, dtype=np.float64)), scale)


#: A tensor's calls start with this many bytes of copies (by their measured bytes,
#: ``measured_losses``): chunks that stay in cache run faster than one huge batch (on
#: LeNet-5 the input's copies run twice as fast in chunks of 16 as in one of 1,568) ...
CACHE_BYTES = 4 << 20
#: ... but never fewer than this many copies, so Python's per-call overhead stays small.
MIN_CHUNK = 16
#: The tuner grows a call's copies while they pay, up to this many measured bytes.
#: Copies carried as the values they change take far less than the whole batches the
#: static estimate (``bytes_per_copy``) counts: a pixel of the 3x32x32 CNN's input 85
#: KB, not 1.8 MB; a weight of the batch-8 MLP's first layer 3.5 KB, not 341 KB. On
#: the static estimate their calls stayed at 16-32 and 49-196 copies; measured (and
#: each size timed twice, TIMINGS) the CNN's input settles on 200 copies a call. With
#: 64 MiB here the batch-8 MLP's peak was 107 MiB, 1.96x the previous release's (whole
#: process, ``--jobs 1``, before gradcheck_cli/heap.py); at 16 MiB the last sweep's
#: peaks are 59-156 MiB, 0.95-1.30x the previous release's (benchmarks/sweep.py, peak
#: of the full check). 32 MiB (one timing per size then) gave 0.94-1.02x the time and
#: peaks 15-16 MiB higher on LeNet-5.
TUNE_BYTES = 16 << 20
#: Copies in a tensor's first call, the one whose memory is measured: enough that the
#: call's fixed costs (a padded base input, the loss table) weigh little per copy.
MEASURE_COPIES = 32
#: ... for tensors of more elements than this: smaller ones take a few calls at any
#: chunk size, and tracing costs a small check's start-up (2 ms of a 5 ms check).
MEASURE_ABOVE = 256


def chunk_size(bytes_per_copy: int, max_memory: int) -> int:
    """How many perturbed copies to evaluate per call: within the memory budget (at
    least 2), and near the cache-friendly size."""
    per_copy = max(1, bytes_per_copy)
    return min(memory_cap(bytes_per_copy, max_memory), max(MIN_CHUNK, int(CACHE_BYTES // per_copy)))


def memory_cap(bytes_per_copy: int, max_memory: int) -> int:
    """The most copies per call the memory budget allows (at least 2)."""
    return max(2, int(max_memory // max(1, bytes_per_copy)))


#: Calls the tuner times at each size it tries, keeping the fastest: a first call at a
#: new size pays for what later ones reuse, and one timing of a few milliseconds moves
#: by 10-20% on a shared machine. Timed once, the batch-1 CNN's input settled on 50
#: copies a call after one call of 100; timed twice, on 200 (its input's check 0.385 ->
#: 0.322 s CPU, LeNet-5 batch 8's 0.556 -> 0.502 s, medians of 5; the full check, whole
#: processes, 0.92-1.00x on the sweep).
TIMINGS = 2


class ChunkTuner:
    """Copies per call: the estimate from ``chunk_size``, then the fastest size found.

    The estimate comes from the bytes a copy really takes (``measured_losses``), which
    say little of its speed: the few values a local copy changes (engine/local.py) cost
    Python overhead per call, whole batches stream through the cache. So once a call
    has 8 times the estimate, the size doubles as long as the cost per copy falls
    (each size timed TIMINGS times, the fastest kept; never past ``limit``, the memory
    budget), then halves from the estimate if doubling never paid; every other call
    uses the cheapest size seen. No value depends on the chunking (the layers are
    row-consistent), only the time.

    One tuner serves every ``evaluate`` of a tensor (``tuner_for``): a tensor is judged
    in chunks of elements and stages, each a call of its own, and what one call learned
    holds for the next. ``more`` tells it the copies of the next call and its budget.
    """

    def __init__(self, estimate: int, copies: int, limit: int | None = None):
        self.estimate = self.best = estimate
        self.limit = estimate
        self._rates: dict[int, float] = {}
        self._timed: dict[int, int] = {}  # calls timed at each size tried
        self._left = 0
        self._next: int | None = None
        self.more(copies, limit)

    def more(self, copies: int, limit: int | None = None) -> None:
        """``copies`` to evaluate now, within ``limit`` copies per call (never below the
        estimate): a search not begun starts when they are enough to pay."""
        self._left = copies
        if limit is not None:
            self.limit = max(self.estimate, limit)
        if self._next is not None:
            return
        if not self._rates:
            if copies >= 8 * self.best:
                self._next = self.best
        else:  # a search that stopped for want of copies goes on
            self._next = self._following(self.best)

    def next_size(self) -> int:
        return min(self._next if self._next is not None else self.best, self.limit)

    def record(self, size: int, seconds: float) -> None:
        self._left -= size
        rate = seconds / max(size, 1)
        if size == self._next:
            self._rates[size] = min(rate, self._rates.get(size, rate))
            self._timed[size] = self._timed.get(size, 0) + 1
            if self._timed[size] < TIMINGS:  # the next call of this size is timed too
                return
            self.best = min(self._rates, key=self._rates.__getitem__)
            self._next = self._following(size)

    def _following(self, size: int) -> int | None:
        """The next size to try, or None when the search is over."""
        up = 2 * size
        growing = size >= max(self._rates, default=size) and self.best == size
        # a size is tried once this call has that many copies left: what it measures
        # serves the later calls too
        if growing and up <= self.limit and self._left >= up and up not in self._rates:
            return up
        smallest = min(self._rates)
        down = smallest // 2
        fits = down >= MIN_CHUNK and down not in self._rates and self._left >= down
        if self.best == smallest and fits:
            return down
        return None


def tuner_for(objective, tensor: str, estimate: int, copies: int, limit: int) -> ChunkTuner:
    """The ChunkTuner of ``tensor`` on ``objective`` (one per tensor, kept on the
    objective like its noise), told of the ``copies`` to come and the budget's ``limit``."""
    tuners = getattr(objective, "_chunk_tuners", None)
    if tuners is None:
        tuners = objective._chunk_tuners = {}
    tuner = tuners.get(tensor)
    if tuner is None:
        tuner = tuners[tensor] = ChunkTuner(estimate, copies, limit)
    else:
        tuner.more(copies, limit)
    return tuner


def measured_losses(
    objective, tensor: str, index: np.ndarray, delta: np.ndarray, p: int
) -> tuple[np.ndarray, int | None]:
    """``objective.losses`` on the first ``p`` copies of (index, delta), and the peak
    bytes the call allocated per copy, by tracemalloc (numpy reports its arrays to it;
    another thread's allocations meanwhile can only raise the figure). None when
    tracemalloc was already tracing: the caller's own measurement is left alone."""
    if tracemalloc.is_tracing():
        return domain.losses(objective, tensor, index[:p], delta[:p]), None
    tracemalloc.start()
    try:
        losses = domain.losses(objective, tensor, index[:p], delta[:p])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return losses, peak // max(p, 1) + 1


@dataclass
class Evaluations:
    """The objective at m offsets around each of K elements.

    f: (K, m) objective values; offsets: (K, m) the steps really taken,
    fl(v + o) - v; f0: the objective at the unperturbed point.
    """

    index: np.ndarray
    f: np.ndarray
    offsets: np.ndarray
    f0: float


def evaluate(
    objective,
    tensor: str,
    index: np.ndarray,
    offsets: np.ndarray,
    max_memory: int,
    progress: Progress | None = None,
    chunk: int | None = None,
) -> Evaluations:
    """f at v + offsets[i, j] for every flat index i of ``tensor`` in ``index`` (K,) and
    each of its m offsets ((K, m) array).

    Copies interleave per element (rows i*m .. i*m + m - 1 belong to element i).
    ``chunk`` forces the number of copies per call (1 gives the unvectorised path); by
    default it is tuned (``ChunkTuner``) under the memory budget, counted in the bytes a
    copy really takes (``measured_losses`` on the tensor's first call, kept on the
    objective; a tensor of at most MEASURE_ABOVE elements keeps ``bytes_per_copy``).
    ``progress`` is told of each element once all its offsets are done.
    """
    values = objective.tensors()[tensor].reshape(-1)[index].astype(np.float64)
    offsets = np.asarray(offsets, dtype=np.float64).reshape(len(index), -1)
    k, m = offsets.shape
    taken = (values[:, None] + offsets) - values[:, None]
    all_index = np.repeat(index, m)
    all_delta = taken.reshape(-1)
    out = np.empty(k * m)
    start = 0
    known = getattr(objective, "_copy_bytes", None)
    if known is None:
        known = objective._copy_bytes = {}
    if tensor not in known:  # the tensor's first call: its copies' real bytes
        estimate = known[tensor] = objective.bytes_per_copy(tensor)
        if objective.tensors()[tensor].size > MEASURE_ABOVE:
            start = min(k * m, MEASURE_COPIES, memory_cap(estimate, max_memory))
            out[:start], measured = measured_losses(objective, tensor, all_index, all_delta, start)
            known[tensor] = measured or estimate
            if progress is not None:
                progress(start // m)
    per_copy = known[tensor]
    cap = memory_cap(per_copy, max_memory)
    if chunk:
        tuner = ChunkTuner(chunk, 0, cap)
    else:
        reach = min(cap, int(TUNE_BYTES // max(1, per_copy)))  # the search's, at most
        tuner = tuner_for(objective, tensor, chunk_size(per_copy, max_memory), k * m, reach)
    while start < k * m:
        stop = min(start + tuner.next_size(), k * m)
        started = time.thread_time()  # CPU time: other processes do not sway the choice
        out[start:stop] = domain.losses(
            objective, tensor, all_index[start:stop], all_delta[start:stop]
        )
        tuner.record(stop - start, time.thread_time() - started)
        if progress is not None:
            progress(stop // m - start // m)
        start = stop
    return Evaluations(index, out.reshape(k, m), taken, float(objective.f0))


@dataclass
class Differences:
    """Objective values around each checked element. All arrays (K,), K checked elements.

    f_plus = f(v + h+ e_i), f_minus = f(v - h- e_i), f0 = f(v).
    """

    index: np.ndarray
    f_plus: np.ndarray
    f_minus: np.ndarray
    h_plus: np.ndarray
    h_minus: np.ndarray
    f0: float

    @property
    def central(self) -> np.ndarray:
        return (self.f_plus - self.f_minus) / (self.h_plus + self.h_minus)

    @property
    def right(self) -> np.ndarray:
        """One-sided (f(v+h) - f(v)) / h."""
        return (self.f_plus - self.f0) / self.h_plus

    @property
    def left(self) -> np.ndarray:
        """One-sided (f(v) - f(v-h)) / h."""
        return (self.f0 - self.f_minus) / self.h_minus

    @classmethod
    def of(cls, e: Evaluations, plus: int = 0, minus: int = 1) -> Differences:
        """The pair of columns ``plus`` (+h) and ``minus`` (-h) of some evaluations."""
        return cls(
            e.index, e.f[:, plus], e.f[:, minus], e.offsets[:, plus], -e.offsets[:, minus], e.f0
        )


def differences(
    objective,
    tensor: str,
    index: np.ndarray,
    h: float | np.ndarray,
    max_memory: int,
    progress: Progress | None = None,
    chunk: int | None = None,
) -> Differences:
    """f(v ± h e_i) for every flat index i of ``tensor`` in ``index`` (K,); h: one
    absolute step or one per element (K,)."""
    h = np.broadcast_to(np.asarray(h, dtype=np.float64), (len(index),))
    e = evaluate(objective, tensor, index, np.stack([h, -h], axis=1), max_memory, progress, chunk)
    return Differences.of(e)


def magnitude(objective) -> float:
    """The magnitude of the terms the objective sums (its ``magnitude()`` when it has
    one, else |f0|): the rounding of one evaluation is at least a few epsilons of it,
    however much the terms cancel."""
    measure = getattr(objective, "magnitude", None)
    value = float(measure()) if measure is not None else abs(float(objective.f0))
    return value if np.isfinite(value) else abs(float(objective.f0))


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)`` for a 1-D integer array, without the import of numpy.ma that
    np.unique makes on its first call (7 ms of a small check's start-up)."""
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if a.size else a


def largest_first(values: np.ndarray, k: int) -> np.ndarray:
    """The positions of the ``k`` largest of ``values`` (1-D), largest first, ties in
    position order and NaN last: ``np.argsort(-values, kind="stable")[:k]``, without
    sorting the whole array (a 235k-element weight: 2 ms against 48 ms)."""
    neg = -values
    if k <= 0 or k >= neg.size:
        return np.argsort(neg, kind="stable")[: max(k, 0)]
    kth = np.partition(neg, k - 1)[k - 1]  # the k-th in sorted order (NaN sorts last)
    if np.isnan(kth):  # fewer than k numbers: the sort would reach the NaN
        return np.argsort(neg, kind="stable")[:k]
    before = np.flatnonzero(neg < kth)  # all of them go, in position order
    ties = np.flatnonzero(neg == kth)[: k - before.size]  # the first of the equal ones
    chosen = np.concatenate([before, ties])
    return chosen[np.argsort(neg[chosen], kind="stable")]


def steady(d: np.ndarray, floor: float) -> np.ndarray:
    """(K,) bool: the probes whose differences d (K, 2), taken at t and 2t, do not grow
    with t (noise; a kink or a curvature term grows), or are both within the floor."""
    return (d[:, 1] <= 1.5 * d[:, 0]) | (np.max(d, axis=1) <= floor)


def noise(objective, tensor: str, h: np.ndarray, max_memory: int) -> float:
    """rho: the rounding noise of one evaluation of the objective when ``tensor`` moves
    (module docstring), at least FLOOR_ULPS epsilons of the terms' magnitude and at most
    NOISE_CAP epsilons of it.

    h: the step of every element of the tensor (its flat size). The probes are the
    elements with the largest |g * h| (the analytic gradient's reach: where a move
    changes the most), half of them, and evenly spread ones, each moved by ±t, ±2t and
    ±4t. The noise is read from the second differences (the even part) and from the odd
    third differences; a probe whose difference at 2t is more than 1.5 times the one at t
    shows a term growing with the step (a kink, a curvature), not noise, and is left out
    of that reading. Variation beyond NOISE_CAP
    is not rounding (a forward that is not a function of its input): capping it keeps
    such a forward from widening every bound.
    """
    size = h.size
    scale = magnitude(objective)
    floor = max(FLOOR_ULPS * EPS64 * scale, SUBNORMAL_FLOOR)
    if size == 0:
        return floor
    reach = np.abs(np.asarray(objective.analytic[tensor], dtype=np.float64).reshape(-1) * h)
    top = largest_first(reach, NOISE_PROBES // 2)
    spread = np.linspace(0, size - 1, NOISE_PROBES - len(top)).round().astype(np.intp)
    probes = _sorted_unique(np.concatenate([top, spread]))
    f0 = objective.f0
    cap = NOISE_CAP * EPS64 * max(scale, abs(f0))
    for t in (PROBE_STEP * h[probes], h[probes]):
        e = _probe(objective, tensor, probes, t, max_memory)
        f0 = e.f0
        if not np.all(np.isfinite(e.f)):
            return floor
        if np.any(e.f != f0):  # the probes moved f: what they read is the noise
            break
        # f did not move at all at the tiny step: its rounding is a grid coarser than
        # any change the probes made (the log-sum-exp of saturated logits rounds a loss
        # of 3e-11 to steps of 2e-16). Read it where the steps cross the grid: at h.
    floor = max(floor, FLOOR_ULPS * EPS64 * float(np.max(np.abs(e.f), initial=abs(f0))))
    measured, loud, even = _read(e.f, f0, floor)
    # A probe still growing with t at the tiny step meets a function whose scale is far
    # below its value's (a feature of 1e4 with a spread of 0.01 into a batch norm, where
    # f'' t^2 at t = 1e-5 dwarfs the rounding): it is read again at steps PROBE_STEP
    # times smaller, where the curvature falls away and the rounding stays. There the
    # curvature the larger step measured, scaled by (PROBE_STEP)^2, tells noise from it:
    # a reading a hundred times above it is not curvature, and one that does not double
    # twice from t to 4t is not a kink nearer than t (whose even part grows like t).
    for _ in range(DEEPER_PROBES):
        if not loud.any():
            break
        probes, t, curvature = probes[loud], PROBE_STEP * t[loud], even[loud] * PROBE_STEP**2
        e = _probe(objective, tensor, probes, t, max_memory)
        if not np.all(np.isfinite(e.f)) or not np.any(e.f != e.f0):
            break  # below every change the forward sees: nothing more to read
        deeper, loud, even = _read(e.f, e.f0, floor, curvature)
        measured = max(measured, deeper)
    return min(max(floor, measured), cap)


def _probe(objective, tensor: str, probes: np.ndarray, t: np.ndarray, max_memory: int):
    """The objective at the probes (K,) moved by ±t, ±2t, ±4t (t: (K,))."""
    steps = np.stack([t, -t, 2 * t, -2 * t, 4 * t, -4 * t], axis=1)
    return evaluate(objective, tensor, probes, steps, max_memory)


def _read(
    f: np.ndarray, f0: float, floor: float, curvature: np.ndarray | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """(the noise of one evaluation the quiet probes show, which probes were not quiet,
    each probe's second difference at t), from f (K, 6): the objective at ±t, ±2t, ±4t
    of each probe. curvature (K,): the most f'' t^2 can be at this t (deeper probes)."""
    even = np.abs(f[:, 0::2] + f[:, 1::2] - 2 * f0)  # (K, 3) at t, 2t, 4t
    odd = f[:, 0::2] - f[:, 1::2]  # f(v + s) - f(v - s) = 2 g s + O(s^3)
    odd = np.abs(odd[:, 1:] - 2 * odd[:, :-1])  # (K, 2) at t and 2t: 2 g s cancels
    # The second difference holds three evaluations' noise: half of it is one's. But only
    # the even part of the rounding: where f(v + t) and f(v - t) round alike it cancels,
    # while a value downstream that is large beside its change (a logit of 1e4 moved by
    # 1e-6) rounds v + t and v - t to its grid one up, one down: odd, the part a central
    # difference keeps. The odd third difference holds about three evaluations' noise.
    # A probe is read only where both parts hold still: a kink nearer than t (a max-pool
    # near-tie 3e-8 away, t = 3e-7) leaves the odd third difference at jump * distance
    # for every t past it, steady like noise, while its even part grows with t.
    quiet = steady(even[:, :2], floor) & steady(odd, floor)
    measured = max(
        float(np.max(even[quiet, :2], initial=0.0)) / 2,
        float(np.max(odd[quiet], initial=0.0)) / 3,
    )
    if curvature is not None:  # rounding is a grid: it reads 1e-11 at t and 3e-16 at 2t
        kink_like = (even[:, 1] >= 1.8 * even[:, 0]) & (even[:, 2] >= 1.8 * even[:, 1])
        noisy = ~quiet & ~kink_like & (np.max(even, axis=1) >= 100.0 * 16.0 * curvature)
        measured = max(measured, float(np.max(even[noisy], initial=0.0)) / 2)
        quiet |= noisy
    return measured, ~quiet, even[:, 0]
