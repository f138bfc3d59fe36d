"""Mutant: ELU whose derivative forgets alpha on the negative side.

y = x for x > 0 and alpha (exp(x) - 1) otherwise, so dy/dx = alpha exp(x) = y + alpha
there. This backward writes exp(x), right only when alpha = 1: wrong exactly where the
input is negative, by the factor 1 / alpha.
"""

from typing import NamedTuple

import numpy as np

import gradcheck_cli as gc


class EluCache(NamedTuple):
    x: np.ndarray  # the input (N, *shape)


@gc.register_layer("elu_negative")
class EluNegative(gc.Layer):
    """y = x if x > 0 else alpha * (exp(x) - 1). x: (N, *shape) -> y: (N, *shape)."""

    batch_independent = True
    kinks = "x = 0 when alpha != 1 (derivative taken as alpha there)"

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def forward(self, x, params):
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0))), EluCache(x)

    def backward(self, dy, cache, params):
        x = cache.x
        return dy * np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))), {}  # BUG: alpha * exp(x)
