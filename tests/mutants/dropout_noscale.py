"""Mutant: inverted dropout whose backward forgets the 1 / (1 - p) scale.

Forward keeps a unit with a fixed mask and scales it by 1 / (1 - p); backward passes dy
through the mask without the scale.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("dropout_noscale")
class DropoutNoScale(gc.Layer):
    """x: (N, *shape) -> y = x * keep / (1 - p), one fixed keep mask per example shape."""

    def __init__(self, p: float = 0.5, seed: int = 0):
        self.p, self.seed = p, seed

    def mask(self, shape):
        return np.random.default_rng(self.seed).random(shape) >= self.p

    def forward(self, x, params):
        keep = self.mask(x.shape[1:])
        return x * keep / (1 - self.p), keep

    def backward(self, dy, cache, params):
        keep = cache
        return dy * keep, {}  # BUG: dy * keep / (1 - p)
