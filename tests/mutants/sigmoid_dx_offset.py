"""Mutant: sigmoid whose dx has 1e-7 added to every element.

``dx = dy * s * (1 - s) + 1e-7``: a smoothing epsilon meant for s (1 - s + 1e-7, to keep
the derivative off 0) put outside the product. Everything below the layer is off.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.activations import Sigmoid


@gc.register_layer("sigmoid_dx_offset")
class SigmoidInputOffset(Sigmoid):
    """y = 1 / (1 + exp(-x)). x: (N, *shape) -> y: (N, *shape)."""

    def backward(self, dy, cache, params):
        s = cache.y
        return dy * s * (1 - s) + 1e-7, {}  # BUG: the epsilon outside the product
