"""Mutant: dense dweight with 1e-7 added to every element.

An epsilon meant for a denominator elsewhere (a norm, ``/ (n + 1e-7)``) ended up added
to the weight gradient. dx and dbias are right.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.dense import Dense


@gc.register_layer("dense_dw_offset")
class DenseWeightOffset(Dense):
    """y = x W^T + b; x: (N, F), weight: (O, F)."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        grads["weight"] = grads["weight"] + 1e-7  # BUG: an epsilon that belongs elsewhere
        return dx, grads
