"""Mutant: dense layer whose dweight product runs in float16 when the layer is float32.

"Tensor-core emulation": the weight gradient's matrix product dy^T x is taken in float16
for float32 inputs and cast back. Each product keeps 11 bits, so dweight is off by about
0.05% of its terms. dx and dbias stay in float32 and are right.
"""

import numpy as np

import gradcheck_cli as gc
from gradcheck_cli.layers.dense import Dense


@gc.register_layer("dense_half_dw")
class DenseHalfWeightGrad(Dense):
    """y = x W^T + b; x: (N, F), weight: (O, F)."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        if dy.dtype == np.float32:
            half = dy.T.astype(np.float16) @ cache.x.astype(np.float16)  # BUG: 11 bits
            grads["weight"] = half.astype(np.float32)
        return dx, grads
