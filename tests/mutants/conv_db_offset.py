"""Mutant: conv2d dbias with 1e-7 added to every element.

A "never exactly zero" guard, ``db = dy.sum(...) + 1e-7``, copied from code that divides
by the gradient later. dweight and dx are right.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.conv import Conv2d


@gc.register_layer("conv2d_db_offset")
class Conv2dBiasOffset(Conv2d):
    """Cross-correlation. x: (N, C, H, W), bias: (O,) -> y: (N, O, Ho, Wo)."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        grads["bias"] = grads["bias"] + 1e-7  # BUG: a guard against 0 that changes the value
        return dx, grads
