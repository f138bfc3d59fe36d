"""A user-written layer: swish(x) = x * sigmoid(beta * x), checked like any built-in.

Run: gradcheck run configs/examples/custom_layer/swish.yaml
"""

from typing import NamedTuple

import numpy as np

import gradcheck_cli as gc


class SwishCache(NamedTuple):
    x: np.ndarray  # (N, *shape) the input
    s: np.ndarray  # (N, *shape) sigmoid(beta * x)


@gc.register_layer("swish")
class Swish(gc.Layer):
    """Swish activation x * sigmoid(beta * x), elementwise; any shape."""

    param_names = ()  # no arrays in the YAML; every other key is a keyword argument

    def __init__(self, beta: float = 1.0):
        self.beta = beta

    def output_shape(self, in_shape):
        return in_shape

    def init_params(self, in_shape, rng):
        return {}

    def forward(self, x, params):
        s = 1.0 / (1.0 + np.exp(-self.beta * x))
        return x * s, SwishCache(x, s)

    def backward(self, dy, cache, params):
        x, s = cache
        return dy * (s + self.beta * x * s * (1.0 - s)), {}
