"""Mutant: one element of a tanh layer's dx wrong by a relative 1e-6.

dx.flat[3] is 1 + 1e-6 times its true value; every other element is right.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.activations import Tanh


@gc.register_layer("tanh_one_element")
class TanhOneElement(Tanh):
    """y = tanh(x). x: (N, *shape) -> y: (N, *shape)."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        dx.flat[3] *= 1 + 1e-6  # BUG: one element, relative 1e-6
        return dx, grads
