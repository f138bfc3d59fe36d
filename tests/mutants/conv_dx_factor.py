"""Mutant: conv2d dx off by a factor 1 + 1e-5.

The backward scales dx by a "gradient scale" of 1.00001 meant for the optimiser; dweight
and dbias are right, so only what lies below the layer comes out 0.001% too large.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.conv import Conv2d


@gc.register_layer("conv2d_dx_factor")
class Conv2dInputFactor(Conv2d):
    """Cross-correlation. x: (N, C, H, W), weight: (O, C, kh, kw) -> y: (N, O, Ho, Wo)."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx * 1.00001, grads  # BUG: the optimiser's scale applied to dx
