"""Mutant: squared-error loss whose gradient has the wrong sign (t - y, not y - t)."""

import numpy as np

import gradcheck_cli as gc


@gc.register_loss("mse_sign")
class MSESign(gc.Loss):
    """y: (N, F), target: (N, F) -> losses (N,) = 1/2 * sum((y - t)^2)."""

    def forward(self, y, target):
        t = target[np.arange(len(y)) % len(target)]
        return 0.5 * ((y - t) ** 2).sum(axis=1), (y, t)

    def backward(self, cache):
        y, t = cache
        return t - y  # BUG: y - t
