"""Mutant: sigmoid whose derivative is floored at 1e-3.

A "vanishing gradient" remedy: s (1 - s) is never allowed below 1e-3. Right wherever
the unit is not saturated; wrong (too large) wherever |x| > 6.9.
"""

import numpy as np

import gradcheck_cli as gc
from gradcheck_cli.layers.activations import Sigmoid


@gc.register_layer("sigmoid_floor")
class SigmoidFloor(Sigmoid):
    """y = 1 / (1 + exp(-x)). x: (N, *shape) -> y: (N, *shape)."""

    def backward(self, dy, cache, params):
        s = cache.y
        return dy * np.maximum(s * (1 - s), 1e-3), {}  # BUG: s' is below 1e-3 when saturated
