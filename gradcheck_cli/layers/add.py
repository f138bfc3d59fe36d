"""add: the element-wise sum of several inputs (a residual connection)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..protocol import Layer, Note, Params, Shape, register_layer
from ._fields import same_shapes


class AddCache(NamedTuple):
    n: int  # how many inputs were added


@register_layer("add")
class Add(Layer):
    """Element-wise sum of two or more inputs of one shape: y = x_0 + x_1 + ...

    xs: k arrays (N, *shape), k >= 2 -> y: (N, *shape). No broadcasting: the shapes
    must be equal (the config loader refuses others, naming the inputs).

    Backward: dy/dx_i is the identity for every i, so each input receives the delta
    unchanged, a copy of it. In a residual block y = x + f(x) that is why x's delta is
    the delta from above PLUS what f's backward sends down: the skip path hands the
    delta straight through, and the fork at x adds the two up (the chain rule).
    """

    summary = "element-wise sum of 2 or more inputs of one shape (a residual connection)"
    n_inputs = None  # any number from 2 up
    batch_independent = True
    kinks = ""  # none: a sum is linear
    derivation = Note("add copies its delta, unchanged, to every input: dE/dx_i = delta")

    def output_shape(self, in_shapes: tuple[Shape, ...]) -> Shape:
        return same_shapes(in_shapes, "add")

    def forward(self, xs: tuple[np.ndarray, ...], params: Params) -> tuple[np.ndarray, AddCache]:
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x
        return y, AddCache(len(xs))

    def backward(
        self, dy: np.ndarray, cache: AddCache, params: Params
    ) -> tuple[tuple[np.ndarray, ...], Params]:
        # copies, not dy itself: each input's delta is an array of its own
        return tuple(dy.copy() for _ in range(cache.n)), {}
