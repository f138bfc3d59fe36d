"""Mutant: conv2d dweight off by a factor 1 + 1e-5.

A loss-scaling factor of 1 + 1e-5, applied to the weight gradient in the backward but
to nothing in the forward: every element of dweight is 0.001% too large.
"""

import gradcheck_cli as gc
from gradcheck_cli.layers.conv import Conv2d


@gc.register_layer("conv2d_dw_factor")
class Conv2dWeightFactor(Conv2d):
    """Cross-correlation. x: (N, C, H, W), weight: (O, C, kh, kw) -> y: (N, O, Ho, Wo)."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        grads["weight"] = grads["weight"] * (1 + 1e-5)  # BUG: loss scale in backward only
        return dx, grads
