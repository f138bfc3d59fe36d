"""flatten: any per-example shape to a vector."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..protocol import Layer, Note, Params, Shape, register_layer


class FlattenCache(NamedTuple):
    in_shape: tuple[int, ...]  # the input's full shape, (N, *in_shape)


@register_layer("flatten")
class Flatten(Layer):
    """x: (N, *shape) -> y: (N, prod(shape)), in C (row-major) order like torch.flatten."""

    summary = "reshape each example to a vector (row-major), e.g. before dense"
    derivation = Note("a reshape: the input's delta holds the same numbers in its shape")
    batch_independent = True
    supports_local = True

    def output_shape(self, in_shape: Shape) -> Shape:
        return (math.prod(in_shape),)

    def forward_local(self, x, y, params, rows, index, values):
        """A row-major reshape keeps every flat position: the change passes as it is."""
        return index, values

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, FlattenCache]:
        return x.reshape(x.shape[0], math.prod(x.shape[1:])), FlattenCache(x.shape)

    def backward(
        self, dy: np.ndarray, cache: FlattenCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        return dy.reshape(cache.in_shape), {}
