"""Mutant: dense layer whose dweight comes out transposed.

y = x W^T + b, so dW = dy^T x, shaped (out, in). This backward writes x^T dy, shaped
(in, out): with a square W the shapes fit and nothing complains. dx and dbias are right.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("dense_transposed")
class DenseTransposed(gc.Layer):
    """x: (N, F), weight: (O, F), bias: (O,) -> y: (N, O)."""

    param_names = ("weight", "bias")

    def __init__(self, out_features: int):
        self.o = out_features

    def output_shape(self, in_shape):
        return (self.o,)

    def init_params(self, in_shape, rng):
        bound = 1 / np.sqrt(in_shape[0])
        return {
            "weight": rng.uniform(-bound, bound, (self.o, in_shape[0])),
            "bias": rng.uniform(-bound, bound, self.o),
        }

    def forward(self, x, params):
        return x @ params["weight"].T + params["bias"], x

    def backward(self, dy, cache, params):
        x = cache
        dw = x.T @ dy  # BUG: should be dy.T @ x
        return dy @ params["weight"], {"weight": dw, "bias": dy.sum(axis=0)}
