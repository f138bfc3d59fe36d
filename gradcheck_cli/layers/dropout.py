"""dropout with one fixed mask, so that every evaluation sees the same function."""

from __future__ import annotations

import functools
import math
from numbers import Real
from typing import NamedTuple

import numpy as np

from ..protocol import ElementWise, FieldError, Layer, Params, Shape, register_layer
from ._fields import checked_int


@functools.lru_cache(maxsize=64)
def dropout_mask(seed: int, p: float, shape: Shape) -> np.ndarray:
    """The scaled keep mask of shape ``shape``: 1/(1-p) where kept, 0 where dropped.

    A pure function of (seed, p, shape); read-only because it is cached and shared.
    """
    keep = np.random.default_rng(seed).random(shape) >= p
    mask = keep / (1.0 - p)  # inverted dropout: kept units are scaled up at training time
    mask.flags.writeable = False
    return mask


class DropoutCache(NamedTuple):
    mask: np.ndarray  # (N, *shape), the scaled mask each row was multiplied by


@register_layer("dropout")
class Dropout(Layer):
    """Inverted dropout with a mask fixed by (seed, p): y = x * mask.

    x: (M, *shape) -> y: (M, *shape). The mask has shape (batch_size, *shape) and holds
    1/(1-p) for kept units and 0 for dropped ones; row r of x uses mask[r % batch_size],
    so P stacked copies of an N-example batch all see the same masks.
    """

    summary = "dropout with a fixed mask (p, seed), kept units scaled by 1/(1-p)"
    field_bounds = {"p": {"minimum": 0, "exclusiveMaximum": 1}, "seed": {"minimum": 0}}
    derivation = ElementWise(
        "f'(x) = the fixed mask: 1/(1-p) for kept units, 0 for dropped ones", activation=False
    )
    batch_independent = True
    example_dependent = True  # row r is multiplied by example r mod N's mask
    #: The config loader passes batch_size=N, the number of examples in the input.
    wants_batch_size = True

    def __init__(self, p: float = 0.5, seed: int = 0, batch_size: int = 1):
        ok = isinstance(p, Real) and not isinstance(p, bool) and math.isfinite(p)
        if not ok or not 0.0 <= p < 1.0:
            raise FieldError("p", f"must be a drop probability in [0, 1), got {p!r}")
        self.p = float(p)
        self.seed = checked_int(seed, "seed", minimum=0)
        self.batch_size = checked_int(batch_size, "batch_size")

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, DropoutCache]:
        full = dropout_mask(self.seed, self.p, (self.batch_size, *x.shape[1:]))
        mask = full[np.arange(x.shape[0]) % self.batch_size].astype(x.dtype, copy=False)
        return x * mask, DropoutCache(mask)

    supports_local = True

    def forward_local(self, x, y, params, rows, index, values):
        """The changed positions times their rows' mask there."""
        full = dropout_mask(self.seed, self.p, (self.batch_size, *x.shape[1:]))
        mask = full.reshape(self.batch_size, -1)[(rows % self.batch_size)[:, None], index]
        return index, values * mask.astype(values.dtype, copy=False)

    def backward(
        self, dy: np.ndarray, cache: DropoutCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        # Like max pooling, the gradient flows only through the kept units.
        return dy * cache.mask, {}
