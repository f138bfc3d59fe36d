"""Mutant: one element of a conv2d dweight wrong by a relative 1e-6.

dweight[0, 0, 1, 1] (output channel 0, input channel 0, the kernel's centre tap) is
1 + 1e-6 times its true value; everything else is right.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.conv import Conv2d


@gc.register_layer("conv2d_one_element")
class Conv2dOneElement(Conv2d):
    """Cross-correlation. x: (N, C, H, W), weight: (O, C, kh, kw) -> y: (N, O, Ho, Wo)."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        grads["weight"][0, 0, 1, 1] *= 1 + 1e-6  # BUG: one element, relative 1e-6
        return dx, grads
