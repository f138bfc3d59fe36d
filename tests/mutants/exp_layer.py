"""NOT a bug: the element-wise exponential, y = exp(x), dx = dy * y.

On x up to 38 the output reaches 3e16: steps must be relative to x, and the rounding of
a loss that large must be measured, not assumed.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("exp")
class Exp(gc.Layer):
    """y = exp(x). x: (N, *shape) -> y: (N, *shape)."""

    batch_independent = True

    def forward(self, x, params):
        y = np.exp(x)
        return y, y

    def backward(self, dy, cache, params):
        return dy * cache, {}
