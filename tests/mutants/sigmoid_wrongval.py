"""Mutant: sigmoid whose derivative s(1 - s) is evaluated on the input x, not on s.

The cache holds the input, and the backward applies the output formula to it:
dx = dy * x * (1 - x) where dy * s * (1 - s) was meant.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("sigmoid_wrongval")
class SigmoidWrongValue(gc.Layer):
    """x: (N, *shape) -> y = 1 / (1 + exp(-x))."""

    def forward(self, x, params):
        return 1 / (1 + np.exp(-x)), x

    def backward(self, dy, cache, params):
        x = cache
        return dy * x * (1 - x), {}  # BUG: s * (1 - s) with s = sigmoid(x)
