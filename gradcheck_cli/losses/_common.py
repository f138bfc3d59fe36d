"""Small helpers shared by the losses."""

from __future__ import annotations

import numpy as np


def row_sums(a: np.ndarray) -> np.ndarray:
    """a: (N, *shape) -> (N,), the sum over each example."""
    return a.reshape(a.shape[0], -1).sum(axis=1)


def tiled(target: np.ndarray, rows: int) -> np.ndarray:
    """target: (N, ...) -> (rows, ...), row r being target[r % N].

    The engine may evaluate P stacked copies of an N-example batch at once (rows = P*N,
    copy-major); each copy is compared with the same targets.
    """
    if target.shape[0] == rows:
        return target
    return target[np.arange(rows) % target.shape[0]]
