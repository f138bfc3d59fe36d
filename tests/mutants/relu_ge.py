"""NOT a bug: ReLU with the derivative taken as 1 at x = 0 (x >= 0).

At 0 every value in [0, 1] is a valid subgradient; PyTorch picks 0, this layer picks 1.
Fed an input with exact zeros, it must pass, the zeros counted as kinks.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("relu_ge")
class ReluGe(gc.Layer):
    """x: (N, *shape) -> y = max(x, 0)."""

    def forward(self, x, params):
        return np.maximum(x, 0), x

    def backward(self, dy, cache, params):
        return dy * (cache >= 0), {}
