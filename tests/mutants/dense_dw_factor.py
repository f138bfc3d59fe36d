"""Mutant: dense dweight off by a factor 1 + 1e-5.

The backward divides by a keep probability, 1 - 1e-5, left over from a dropout that the
forward no longer applies. Every element of dweight is 0.001% too large; dx and dbias
are right.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.dense import Dense


@gc.register_layer("dense_dw_factor")
class DenseWeightFactor(Dense):
    """y = x W^T + b; x: (N, F), weight: (O, F)."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        grads["weight"] = grads["weight"] / (1 - 1e-5)  # BUG: no dropout in the forward
        return dx, grads
