"""Mutant: dense layer whose dweight is averaged over the batch.

The loss sums over the examples, so dW = sum_n dy_n x_n^T. This backward divides by the
batch size, as if the loss were a mean: mean vs sum over the batch. dx and dbias are
right.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("dense_batch_mean")
class DenseBatchMean(gc.Layer):
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
        dw = dy.T @ x / len(x)  # BUG: the loss sums over the batch; no division by N
        return dy @ params["weight"], {"weight": dw, "bias": dy.sum(axis=0)}
