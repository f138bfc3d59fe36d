"""Mutant: conv2d dx with 1e-7 added to every element.

The input gradient is "regularised" with a constant 1e-7 so that no pixel gets exactly
zero gradient (a dead-pixel workaround). dweight and dbias are right.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.conv import Conv2d


@gc.register_layer("conv2d_dx_offset")
class Conv2dInputOffset(Conv2d):
    """Cross-correlation. x: (N, C, H, W), weight: (O, C, kh, kw) -> y: (N, O, Ho, Wo)."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx + 1e-7, grads  # BUG: a constant where none belongs
