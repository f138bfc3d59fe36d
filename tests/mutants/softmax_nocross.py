"""Mutant: softmax whose backward keeps only the diagonal of its Jacobian.

dy_k/dx_j = y_k (delta_kj - y_j): every output depends on every input of the row, so
dx = y * (dy - sum(dy * y)). This backward treats softmax as element-wise, like a
sigmoid: dx = dy * y * (1 - y), missing the cross terms.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("softmax_nocross")
class SoftmaxNoCross(gc.Layer):
    """Softmax over the features. x: (N, F) -> y: (N, F)."""

    def forward(self, x, params):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
        return y, y

    def backward(self, dy, cache, params):
        y = cache
        return dy * y * (1 - y), {}  # BUG: should be y * (dy - (dy * y).sum(1, keepdims=True))
