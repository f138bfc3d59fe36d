"""Central differences, vectorised and chunked under a memory budget.

For each checked element i of a tensor v the objective is evaluated at v + h and v - h
(two stacked copies per element). The steps actually taken are the representable ones,
h+ = fl(v + h) - v and h- = v - fl(v - h), so the quotient divides by the step the
forward really saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Progress = Callable[[int], None]  # called with the number of elements just finished


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


def chunk_size(bytes_per_copy: int, max_memory: int) -> int:
    """How many perturbed copies fit in the memory budget at once (at least 2)."""
    return max(2, int(max_memory // max(1, bytes_per_copy)))


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

    ``chunk`` forces the number of copies per call (1 gives the unvectorised path).
    """
    values = objective.tensors()[tensor].reshape(-1)[index].astype(np.float64)
    h_plus, h_minus = steps(values, eps)
    k = len(index)
    # Copies interleave as (+h, -h) per element: rows 2i and 2i+1 belong to element i.
    all_index = np.repeat(index, 2)
    all_delta = np.stack([h_plus, -h_minus], axis=1).reshape(-1)
    per_call = chunk or chunk_size(objective.bytes_per_copy(tensor), max_memory)
    out = np.empty(2 * k)
    for start in range(0, 2 * k, per_call):
        stop = min(start + per_call, 2 * k)
        out[start:stop] = objective.losses(tensor, all_index[start:stop], all_delta[start:stop])
        if progress is not None:
            progress(stop // 2 - start // 2)
    return Differences(index, out[0::2], out[1::2], h_plus, h_minus, objective.f0)
