"""softmax over the first per-example axis (axis 1 of the batch array, like torch dim=1)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..protocol import FieldError, Layer, Params, Shape, SoftmaxNote, register_layer


class SoftmaxCache(NamedTuple):
    y: np.ndarray  # the layer's output, (N, C, ...)


@register_layer("softmax")
class Softmax(Layer):
    """y[:, k] = exp(x[:, k]) / sum_c exp(x[:, c]) over axis 1.

    x: (N, C, *rest) -> y: (N, C, *rest). For (N, F) the features are normalised, for
    (N, C, H, W) the channels at every pixel.
    """

    summary = "softmax over the first per-example axis (features, or channels per pixel)"
    derivation = SoftmaxNote("dE/dx = y * (d - sum(d * y)): every output depends on every input")
    batch_independent = True

    def output_shape(self, in_shape: Shape) -> Shape:
        if not in_shape:  # a single number per example (``input: 0.7``): nothing to normalise
            raise FieldError(
                "type",
                "softmax normalises over the first axis of one example (its classes), and "
                "this input is a single number per example, shape []; give it a class axis, "
                "e.g. a dense layer with out_features before it",
            )
        return in_shape

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, SoftmaxCache]:
        e = np.exp(x - x.max(axis=1, keepdims=True))  # shifted: exp never overflows
        y = e / e.sum(axis=1, keepdims=True)
        return y, SoftmaxCache(y)

    def backward(
        self, dy: np.ndarray, cache: SoftmaxCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        # dy_k/dx_j = y_k (delta_kj - y_j): every output depends on every input of its row.
        y = cache.y
        return y * (dy - (dy * y).sum(axis=1, keepdims=True)), {}
