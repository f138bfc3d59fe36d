"""transpose: the axes of each example in another order (channels-last and back)."""

from __future__ import annotations

from numbers import Integral
from typing import NamedTuple

import numpy as np

from ..protocol import FieldError, Layer, Note, Params, Shape, register_layer


class TransposeCache(NamedTuple):
    undo: tuple[int, ...]  # the permutation of the batch array's axes that undoes forward's


@register_layer("transpose")
class Transpose(Layer):
    """The axes of each example permuted, like torch.permute(x, (0, *[a + 1 for a in axes])).

    x: (N, *shape) -> y: (N, *[shape[a] for a in axes]), y's axis k being x's axis
    axes[k] (counted within one example, the batch axis stays first). [1, 2, 0] turns a
    (C, H, W) image into (H, W, C) for channels-last code, [2, 0, 1] turns it back.
    """

    summary = "permute the axes of each example, e.g. axes [1, 2, 0]: (C, H, W) -> (H, W, C)"
    field_bounds = {"axes": {"minimum": 0}}
    kinks = ""  # none: a permutation is linear
    batch_independent = True

    def __init__(self, axes: list[int]):
        items = list(axes) if isinstance(axes, (list, tuple)) else None
        ok = items is not None and all(
            isinstance(a, Integral) and not isinstance(a, bool) for a in items
        )
        if not ok or not items or sorted(items) != list(range(len(items))):
            raise FieldError(
                "axes",
                "must list every axis of one example once, a permutation of 0, 1, ... "
                f"such as [1, 2, 0], got {axes!r}",
            )
        self.axes = tuple(int(a) for a in items)  # type: ignore[union-attr]
        self.inverse = tuple(int(a) for a in np.argsort(self.axes))

    @property
    def derivation(self) -> Note:  # type: ignore[override]
        return Note(
            f"a transpose: the input's delta is the output's delta with its axes put back "
            f"(axes {list(self.inverse)}); the numbers are the same"
        )

    def output_shape(self, in_shape: Shape) -> Shape:
        if len(in_shape) != len(self.axes):
            raise FieldError(
                "axes",
                f"has {len(self.axes)} entries but one example has {len(in_shape)} axes "
                f"(shape {list(in_shape)}); give a permutation of {list(range(len(in_shape)))}",
            )
        return tuple(in_shape[a] for a in self.axes)

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, TransposeCache]:
        # A contiguous copy, not a strided view: the next layer (often a plugin written for
        # this layout) gets an array like any other.
        y = np.ascontiguousarray(x.transpose(0, *(a + 1 for a in self.axes)))
        return y, TransposeCache((0, *(a + 1 for a in self.inverse)))

    def backward(
        self, dy: np.ndarray, cache: TransposeCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        # A permutation's adjoint is its inverse: each delta goes back where its value came from.
        return np.ascontiguousarray(dy.transpose(cache.undo)), {}
