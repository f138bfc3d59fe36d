"""Central differences, vectorised and chunked under a memory budget.

For each checked element i of a tensor v the objective is evaluated at v + h and v - h
(two stacked copies per element). The steps actually taken are the representable ones,
h+ = fl(v + h) - v and h- = v - fl(v - h), so the quotient divides by the step the
forward really saw.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Progress = Callable[[int], None]  # called with the number of elements just finished

#: The float64 machine epsilon, 2^-52 (np.finfo costs 3 ms at import).
EPS64 = sys.float_info.epsilon


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


def steps(values: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The representable steps around each value: (h+, h-), both positive, shape (K,)."""
    h_plus = (values + eps) - values
    h_minus = values - (values - eps)
    return h_plus, h_minus


#: Copies per call are also capped so that one call's working set stays near this size:
#: chunks that stay in cache run faster than one huge batch (on LeNet-5 the input's
#: copies run twice as fast in chunks of 16 as in one chunk of 1,568).
CACHE_BYTES = 16 << 20
#: ... but never below this many copies, so Python's per-call overhead stays small.
MIN_CHUNK = 16


def chunk_size(bytes_per_copy: int, max_memory: int) -> int:
    """How many perturbed copies to evaluate per call: within the memory budget (at
    least 2), and near the cache-friendly size."""
    per_copy = max(1, bytes_per_copy)
    by_memory = max(2, int(max_memory // per_copy))
    return min(by_memory, max(MIN_CHUNK, int(CACHE_BYTES // per_copy)))


class ChunkTuner:
    """Copies per call: the estimate from ``chunk_size``, then the fastest of a few sizes.

    ``bytes_per_copy`` is a rough estimate (a layer's im2col or window copies are not in
    it), so when a tensor needs many calls the first ones try 1/4, 1/2 and all of the
    estimate, once each, and the rest use the size that cost least per copy. Chunking
    never changes a value (the layers are row-consistent), only the time.
    """

    def __init__(self, estimate: int, copies: int):
        # never above the estimate: it holds the memory budget
        sizes = sorted({min(estimate, max(MIN_CHUNK, estimate // d)) for d in (4, 2, 1)})
        self.trials = sizes if copies >= 4 * sum(sizes) else []
        self.best = estimate
        self._best_rate = float("inf")

    def next_size(self) -> int:
        return self.trials[0] if self.trials else self.best

    def record(self, size: int, seconds: float) -> None:
        if self.trials and size == self.trials[0]:
            self.trials.pop(0)
            if seconds / size < self._best_rate:
                self.best, self._best_rate = size, seconds / size


def differences(
    objective,
    tensor: str,
    index: np.ndarray,
    eps: float,
    max_memory: int,
    progress: Progress | None = None,
    chunk: int | None = None,
) -> Differences:
    """Evaluate f(v ± h e_i) for every flat index i of ``tensor`` in ``index`` (K,).

    ``chunk`` forces the number of copies per call (1 gives the unvectorised path);
    by default it is tuned (``ChunkTuner``) under the memory budget.
    """
    values = objective.tensors()[tensor].reshape(-1)[index].astype(np.float64)
    h_plus, h_minus = steps(values, eps)
    k = len(index)
    # Copies interleave as (+h, -h) per element: rows 2i and 2i+1 belong to element i.
    all_index = np.repeat(index, 2)
    all_delta = np.stack([h_plus, -h_minus], axis=1).reshape(-1)
    estimate = chunk or chunk_size(objective.bytes_per_copy(tensor), max_memory)
    tuner = ChunkTuner(estimate, 0 if chunk else 2 * k)
    out = np.empty(2 * k)
    start = 0
    while start < 2 * k:
        stop = min(start + tuner.next_size(), 2 * k)
        started = time.thread_time()  # CPU time: other processes do not sway the choice
        out[start:stop] = objective.losses(tensor, all_index[start:stop], all_delta[start:stop])
        tuner.record(stop - start, time.thread_time() - started)
        if progress is not None:
            progress(stop // 2 - start // 2)
        start = stop
    return Differences(index, out[0::2], out[1::2], h_plus, h_minus, objective.f0)
