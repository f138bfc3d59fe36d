"""NOT a bug: a steep tanh, y = tanh(gain * x), dx = dy * gain * (1 - y^2).

With gain 1e4 and x near 0 (|x| < 3e-4), the curvature scale is 1e-4: a step that is
fine for x of order 1 would cross the whole transition.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("steep_tanh")
class SteepTanh(gc.Layer):
    """y = tanh(gain * x). x: (N, *shape) -> y: (N, *shape)."""

    batch_independent = True

    def __init__(self, gain: float = 1e4):
        self.gain = float(gain)

    def forward(self, x, params):
        y = np.tanh(self.gain * x)
        return y, y

    def backward(self, dy, cache, params):
        return dy * self.gain * (1 - cache**2), {}
