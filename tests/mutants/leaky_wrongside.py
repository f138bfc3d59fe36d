"""Mutant: leaky ReLU with the slope on the wrong side in backward.

Forward: x for x > 0, slope * x otherwise. Backward applies the slope to the positive
side and 1 to the negative side.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("leaky_wrongside")
class LeakyWrongSide(gc.Layer):
    """x: (N, *shape) -> y = where(x > 0, x, negative_slope * x)."""

    def __init__(self, negative_slope: float = 0.1):
        self.slope = negative_slope

    def forward(self, x, params):
        return np.where(x > 0, x, self.slope * x), x

    def backward(self, dy, cache, params):
        x = cache
        return np.where(x > 0, self.slope * dy, dy), {}  # BUG: sides swapped
