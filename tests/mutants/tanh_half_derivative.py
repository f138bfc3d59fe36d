"""Mutant: tanh whose derivative goes through float16 in float32 networks.

``(1 - y * y).astype(np.float16)`` "to halve the memory of the saved derivative" when
the network is float32: 1 - y^2 keeps 11 bits, and where |y| > 0.9995 it rounds to a
multiple of 2^-11 or to 0.
"""

import numpy as np

import gradcheck_cli as gc
from gradcheck_cli.layers.activations import Tanh


@gc.register_layer("tanh_half_derivative")
class TanhHalfDerivative(Tanh):
    """y = tanh(x). x: (N, *shape) -> y: (N, *shape)."""

    def backward(self, dy, cache, params):
        d = 1 - cache.y**2
        if d.dtype == np.float32:
            d = d.astype(np.float16).astype(np.float32)  # BUG: 11 bits of the derivative
        return dy * d, {}
