"""global_avgpool2d: the mean of each channel over the whole image."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..protocol import InputKind, Layer, Note, Params, Shape, image_shape, register_layer


class GlobalPoolCache(NamedTuple):
    hw: tuple[int, int]  # (H, W) of the input


@register_layer("global_avgpool2d")
class GlobalAvgPool2d(Layer):
    """Mean over each channel's H x W values, like torch.nn.AdaptiveAvgPool2d(1) + flatten.

    x: (N, C, H, W) -> y: (N, C) with y[n, c] = sum_{i,j} x[n, c, i, j] / (H * W).
    The output is flat, ready for a dense layer without a flatten.
    """

    summary = "mean of each channel over the whole image, (C, H, W) -> (C,)"
    input_kind = InputKind.IMAGE
    derivation = Note(
        "global average pooling: every input of channel c receives d[c] / (H * W), "
        "H x W the input's height and width"
    )
    kinks = ""  # none: a mean is linear
    batch_independent = True

    def output_shape(self, in_shape: Shape) -> Shape:
        c, _, _ = image_shape(in_shape, getattr(self, "type_name", "global_avgpool2d"))
        return (c,)

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, GlobalPoolCache]:
        n, c, h, w = x.shape
        # A sum along one contiguous axis per (example, channel): the same additions in
        # the same order however many examples are stacked.
        return x.reshape(n, c, h * w).sum(axis=2) / (h * w), GlobalPoolCache((h, w))

    def backward(
        self, dy: np.ndarray, cache: GlobalPoolCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        h, w = cache.hw
        share = dy / (h * w)  # (N, C): each input's part of its channel's mean
        return np.repeat(share[:, :, None], h * w, axis=2).reshape(*dy.shape, h, w), {}
