"""Mutant: sigmoid whose derivative is clipped to 0 where the unit is saturated.

"Saturated units learn nothing anyway": the backward zeroes s (1 - s) where |x| > 8.
But s'(8) = 3.4e-4 and s'(10) = 4.5e-5 are not 0, so the gradient through those units
is lost. The backward needs the input, so the cache keeps it beside s.
"""

from typing import NamedTuple

import numpy as np

import gradcheck_cli as gc


class SigmoidCache(NamedTuple):
    x: np.ndarray  # the input (N, *shape)
    s: np.ndarray  # the output (N, *shape)


@gc.register_layer("sigmoid_clip_saturated")
class SigmoidClipSaturated(gc.Layer):
    """y = 1 / (1 + exp(-x)). x: (N, *shape) -> y: (N, *shape)."""

    batch_independent = True

    def forward(self, x, params):
        s = 0.5 * (1 + np.tanh(0.5 * x))  # the logistic function, without overflow
        return s, SigmoidCache(x, s)

    def backward(self, dy, cache, params):
        ds = cache.s * (1 - cache.s)
        ds = np.where(np.abs(cache.x) > 8, 0.0, ds)  # BUG: s' is small there, not 0
        return dy * ds, {}
