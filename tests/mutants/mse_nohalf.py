"""Mutant: squared-error loss missing its 1/2.

The forward is sum((y - t)^2), but the backward returns y - t, the gradient of
1/2 * sum((y - t)^2): the 1/2 the backward assumes is missing from the forward.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_loss("mse_nohalf")
class MSENoHalf(gc.Loss):
    """y: (N, F), target: (N, F) -> losses (N,)."""

    def forward(self, y, target):
        t = target[np.arange(len(y)) % len(target)]  # P stacked copies share the targets
        diff = y - t
        return (diff**2).sum(axis=1), diff  # BUG: 0.5 * (diff**2).sum(axis=1)

    def backward(self, cache):
        return cache
