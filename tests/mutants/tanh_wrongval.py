"""Mutant: tanh whose derivative 1 - t^2 is evaluated on the input x, not on t = tanh(x)."""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("tanh_wrongval")
class TanhWrongValue(gc.Layer):
    """x: (N, *shape) -> y = tanh(x)."""

    def forward(self, x, params):
        return np.tanh(x), x

    def backward(self, dy, cache, params):
        x = cache
        return dy * (1 - x**2), {}  # BUG: 1 - tanh(x)**2
