"""NOT a bug: L2 normalisation of each example, y = x / ||x||.

x: (N, F) -> y: (N, F), ||x|| the Euclidean norm of each row. Its Jacobian is
(I - y y^T) / ||x||, so dx = (dy - y (y . dy)) / ||x||. Scale-free: on values near 1e-6
the gradient is near 1e6, and gradcheck must judge it as it judges values near 1.
"""

from typing import NamedTuple

import numpy as np

import gradcheck_cli as gc


class NormCache(NamedTuple):
    y: np.ndarray  # (N, F), the normalised rows
    norm: np.ndarray  # (N, 1), each row's norm


@gc.register_layer("l2_normalize")
class L2Normalize(gc.Layer):
    """y = x / ||x|| per example. x: (N, F) -> y: (N, F)."""

    batch_independent = True

    def forward(self, x, params):
        norm = np.sqrt((x * x).sum(axis=1, keepdims=True))
        y = x / norm
        return y, NormCache(y, norm)

    def backward(self, dy, cache, params):
        y, norm = cache
        return (dy - y * (y * dy).sum(axis=1, keepdims=True)) / norm, {}
