"""upsample2d: nearest-neighbour upsampling by whole factors."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..protocol import InputKind, Layer, Note, Params, Shape, image_shape, register_layer
from ._fields import IntPair, checked_pair


class UpsampleCache(NamedTuple):
    hw: tuple[int, int]  # (H, W) of the input


@register_layer("upsample2d")
class Upsample2d(Layer):
    """Nearest-neighbour upsampling, like torch.nn.Upsample(scale_factor=scale, mode="nearest").

    x: (N, C, H, W) -> y: (N, C, H*sh, W*sw) with y[n, c, a, b] = x[n, c, a // sh, b // sw]:
    every pixel becomes an sh x sw block of copies. ``scale`` is one whole factor for
    both axes or a pair [sh, sw].
    """

    summary = "nearest-neighbour upsampling by whole factors, scale or [sh, sw]"
    input_kind = InputKind.IMAGE
    field_bounds = {"scale": {"minimum": 1}}
    kinks = ""  # none: a copy is linear
    batch_independent = True

    def __init__(self, scale: IntPair):
        self.scale = checked_pair(scale, "scale", 1)

    @property
    def derivation(self) -> Note:  # type: ignore[override]
        sh, sw = self.scale
        return Note(
            f"nearest-neighbour upsampling: each input pixel was copied to a {sh}x{sw} "
            f"block, so its delta is the sum of that block's {sh * sw} deltas"
        )

    def output_shape(self, in_shape: Shape) -> Shape:
        c, h, w = image_shape(in_shape, getattr(self, "type_name", "upsample2d"))
        sh, sw = self.scale
        return (c, h * sh, w * sw)

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, UpsampleCache]:
        n, c, h, w = x.shape
        sh, sw = self.scale
        blocks = np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw))
        return blocks.reshape(n, c, h * sh, w * sw), UpsampleCache((h, w))

    def backward(
        self, dy: np.ndarray, cache: UpsampleCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        # The adjoint of copying: each source pixel collects its sh x sw block.
        (h, w), (sh, sw) = cache.hw, self.scale
        n, c = dy.shape[:2]
        return dy.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5)), {}
