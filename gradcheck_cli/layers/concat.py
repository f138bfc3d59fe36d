"""concat: several inputs joined along one axis of an example."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..protocol import FieldError, Layer, Note, Params, Shape, register_layer


class ConcatCache(NamedTuple):
    axis: int  # the axis of the batched arrays (the example's axis + 1)
    sizes: tuple[int, ...]  # each input's length along it


@register_layer("concat")
class Concat(Layer):
    """Two or more inputs joined along ``axis`` of one example, like torch.cat(dim=axis + 1).

    xs: k arrays (N, *shape_i) that agree on every axis but ``axis`` -> y: (N, *shape)
    with shape[axis] = sum_i shape_i[axis]. ``axis`` counts the axes of one example from
    0 (channels of a (C, H, W) image, features of a vector); a negative one counts from
    the end.

    Backward: each input receives its own slice of the delta, the rows it filled.
    """

    summary = "join 2 or more inputs along axis (of one example; 0 = channels or features)"
    n_inputs = None
    batch_independent = True
    kinks = ""  # none: a copy
    derivation = Note("concat hands each input its own slice of the delta (the part it filled)")

    def __init__(self, axis: int = 0):
        self.axis = axis

    def _example_axis(self, ndim: int) -> int:
        if not -ndim <= self.axis < ndim:
            raise FieldError(
                "axis",
                f"must be an axis of one example, from {-ndim} to {ndim - 1} for inputs of "
                f"{ndim} axes (the batch axis does not count), got {self.axis}",
            )
        return self.axis % ndim

    def output_shape(self, in_shapes: tuple[Shape, ...]) -> Shape:
        ndims = {len(s) for s in in_shapes}
        shapes = ", ".join(str(list(s)) for s in in_shapes)
        if len(ndims) != 1:
            raise FieldError("inputs", f"concat needs inputs with as many axes, got {shapes}")
        axis = self._example_axis(ndims.pop())
        rest = {tuple(d for k, d in enumerate(s) if k != axis) for s in in_shapes}
        if len(rest) != 1:
            raise FieldError(
                "inputs",
                f"concat joins its inputs along axis {self.axis}, so every other axis must "
                f"agree, got {shapes}",
            )
        out = list(in_shapes[0])
        out[axis] = sum(s[axis] for s in in_shapes)
        return tuple(out)

    def forward(self, xs: tuple[np.ndarray, ...], params: Params) -> tuple[np.ndarray, ConcatCache]:
        axis = self._example_axis(xs[0].ndim - 1) + 1
        y = np.concatenate(xs, axis=axis)
        return y, ConcatCache(axis, tuple(x.shape[axis] for x in xs))

    def backward(
        self, dy: np.ndarray, cache: ConcatCache, params: Params
    ) -> tuple[tuple[np.ndarray, ...], Params]:
        cuts = np.cumsum(cache.sizes)[:-1]
        return tuple(part.copy() for part in np.split(dy, cuts, axis=cache.axis)), {}
