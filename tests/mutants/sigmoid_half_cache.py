"""Mutant: sigmoid that keeps its output in half precision when it runs in float32.

Mixed-precision code saves memory by caching activations as float16 "when the model is
float32 anyway". The forward is right; s (1 - s) from a float16 s is off by up to
0.1%, and where s is within 5e-4 of 1, float16 rounds it to 1 and the derivative to 0.
In float64 the cache keeps full precision and the layer is right: the bug shows only
in float32.
"""

import numpy as np

import gradcheck_cli as gc
from gradcheck_cli.layers.activations import OutputCache, Sigmoid


@gc.register_layer("sigmoid_half_cache")
class SigmoidHalfCache(Sigmoid):
    """y = 1 / (1 + exp(-x)). x: (N, *shape) -> y: (N, *shape)."""

    def forward(self, x, params):
        y, cache = super().forward(x, params)
        if x.dtype == np.float32:
            cache = OutputCache(cache.y.astype(np.float16))  # BUG: 11 bits of s kept
        return y, cache

    def backward(self, dy, cache, params):
        s = cache.y.astype(dy.dtype)
        return dy * s * (1 - s), {}
