"""multiply: the element-wise product of several inputs (a gate)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..protocol import Layer, Note, Params, Shape, register_layer
from ._fields import same_shapes


class MultiplyCache(NamedTuple):
    xs: tuple[np.ndarray, ...]  # the inputs, each (N, *shape)


def _product(arrays: list[np.ndarray] | tuple[np.ndarray, ...]) -> np.ndarray:
    y = arrays[0] * arrays[1]
    for a in arrays[2:]:
        y = y * a
    return y


@register_layer("multiply")
class Multiply(Layer):
    """Element-wise product of two or more inputs of one shape: y = x_0 * x_1 * ...

    xs: k arrays (N, *shape), k >= 2 -> y: (N, *shape). No broadcasting.

    Backward: dE/dx_i = delta * (the product of every other input), computed as that
    product itself, never as y / x_i, which a zero input would break.
    """

    summary = "element-wise product of 2 or more inputs of one shape (a gate)"
    n_inputs = None
    batch_independent = True
    kinks = ""  # none: a product is smooth
    derivation = Note(
        "multiply: each input's delta is the delta times every other input, "
        "dE/dx_0 = delta * x_1 (and the other way round)"
    )

    def output_shape(self, in_shapes: tuple[Shape, ...]) -> Shape:
        return same_shapes(in_shapes, "multiply")

    def forward(
        self, xs: tuple[np.ndarray, ...], params: Params
    ) -> tuple[np.ndarray, MultiplyCache]:
        return _product(xs), MultiplyCache(tuple(xs))

    def backward(
        self, dy: np.ndarray, cache: MultiplyCache, params: Params
    ) -> tuple[tuple[np.ndarray, ...], Params]:
        xs = cache.xs
        return tuple(_product([dy, *xs[:i], *xs[i + 1 :]]) for i in range(len(xs))), {}
