"""Mutant: tanh whose derivative is clipped to 0 where the unit is saturated.

The backward zeroes 1 - y^2 where |y| > 0.999 (|x| > 3.8), "saturated". The true
derivative there is about 1e-3 and less, not 0.
"""

import numpy as np

import gradcheck_cli as gc
from gradcheck_cli.layers.activations import Tanh


@gc.register_layer("tanh_clip_saturated")
class TanhClipSaturated(Tanh):
    """y = tanh(x). x: (N, *shape) -> y: (N, *shape)."""

    def backward(self, dy, cache, params):
        y = cache.y
        return dy * np.where(np.abs(y) > 0.999, 0.0, 1 - y**2), {}  # BUG: not 0 there
