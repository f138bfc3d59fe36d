"""Mutant: tanh whose derivative is 0.001% too large.

The derivative is taken from a rational approximation of tanh, 1.00001 * (1 - y^2),
fitted to a different forward. Everything below the layer is off by that factor.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.activations import Tanh


@gc.register_layer("tanh_factor")
class TanhFactor(Tanh):
    """y = tanh(x). x: (N, *shape) -> y: (N, *shape)."""

    def backward(self, dy, cache, params):
        return dy * 1.00001 * (1.0 - cache.y**2), {}  # BUG: 1.00001 from a different fit
