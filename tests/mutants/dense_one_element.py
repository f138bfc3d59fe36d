"""Mutant: one element of a dense layer's dweight wrong by a relative 1e-6.

The smallest bug issue 10 asks the defaults to catch: dweight[1, 2] is 1 + 1e-6 times
its true value (a float accumulation that double-counts one term scaled by 1e-6, say);
every other element, dx and dbias are right.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.dense import Dense


@gc.register_layer("dense_one_element")
class DenseOneElement(Dense):
    """y = x W^T + b; x: (N, F), weight: (O, F)."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        grads["weight"][1, 2] *= 1 + 1e-6  # BUG: one element, relative 1e-6
        return dx, grads
