"""Layers whose maths is right but which break purity, one bug class per group.

Each layer computes what its backward differentiates, so the numeric check alone (on
gradcheck's own copies) would pass: only the purity probes can catch them. Marked
``# BUG:`` where the impurity is.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import gradcheck_cli as gc

# --- forward writes into its input ------------------------------------------------------


@gc.register_layer("inplace_mul")
class InplaceMul(gc.Layer):
    """y = 2x, computed in place."""

    batch_independent = True

    def forward(self, x, params):
        x *= 2  # BUG: the caller's array
        return x, None

    def backward(self, dy, cache, params):
        return 2 * dy, {}


@gc.register_layer("inplace_add")
class InplaceAdd(gc.Layer):
    """y = x + 1, computed in place."""

    def forward(self, x, params):
        x += 1  # BUG
        return x, None

    def backward(self, dy, cache, params):
        return dy.copy(), {}


@gc.register_layer("inplace_ufunc_out")
class InplaceUfuncOut(gc.Layer):
    """y = 3x through np.multiply(..., out=x)."""

    def forward(self, x, params):
        np.multiply(x, 3.0, out=x)  # BUG
        return x, None

    def backward(self, dy, cache, params):
        return 3.0 * dy, {}


@gc.register_layer("inplace_relu")
class InplaceReLU(gc.Layer):
    """y = max(x, 0), zeroing the negative entries of x itself."""

    def forward(self, x, params):
        mask = x > 0
        x[~mask] = 0.0  # BUG
        return x, mask

    def backward(self, dy, mask, params):
        return np.where(mask, dy, 0.0), {}


@gc.register_layer("inplace_later")
class InplaceLater(gc.Layer):
    """y = 2x; keeps x and doubles it later, in backward."""

    def forward(self, x, params):
        self.x = x  # BUG: a reference to the caller's array ...
        return 2 * x, None

    def backward(self, dy, cache, params):
        self.x *= 2  # BUG: ... written after forward returned
        return 2 * dy, {}


# --- writes into its parameters ----------------------------------------------------------


class ScaleCache(NamedTuple):
    x: np.ndarray  # (N, F) the input


class _Scale(gc.Layer):
    """y = x * gain, a gain per feature."""

    param_names = ("gain",)

    def init_params(self, in_shape, rng):
        return {"gain": rng.uniform(0.5, 1.5, size=in_shape)}

    def forward(self, x, params):
        return x * params["gain"], ScaleCache(x)

    def grads(self, dy, cache, params):
        return dy * params["gain"], {"gain": (dy * cache.x).sum(axis=0)}


@gc.register_layer("gain_drift")
class GainDrift(_Scale):
    def forward(self, x, params):
        y = x * params["gain"]
        params["gain"] += 0.25  # BUG: every forward moves the weights
        return y, ScaleCache(x)

    def backward(self, dy, cache, params):
        return self.grads(dy, cache, params)


@gc.register_layer("gain_sgd_in_backward")
class GainSgdInBackward(_Scale):
    def backward(self, dy, cache, params):
        dx, grads = self.grads(dy, cache, params)
        params["gain"] -= 0.5 * grads["gain"]  # BUG: an optimizer step inside backward
        return dx, grads


@gc.register_layer("bias_drift")
class BiasDrift(gc.Layer):
    """y = x + bias; forward moves the bias, which no gradient depends on."""

    param_names = ("bias",)

    def init_params(self, in_shape, rng):
        return {"bias": rng.normal(size=in_shape)}

    def forward(self, x, params):
        y = x + params["bias"]
        params["bias"][...] = 0.0  # BUG
        return y, None

    def backward(self, dy, cache, params):
        return dy.copy(), {"bias": dy.sum(axis=0)}


# --- backward answers differently when called again --------------------------------------


@gc.register_layer("buffer_attr")
class BufferAttr(_Scale):
    """The gain's gradient accumulates in an instance attribute, never zeroed."""

    dgain = None

    def backward(self, dy, cache, params):
        dx, grads = self.grads(dy, cache, params)
        if self.dgain is None:
            self.dgain = np.zeros_like(params["gain"])
        self.dgain += grads["gain"]  # BUG: never zeroed
        return dx, {"gain": self.dgain}


_ACCUMULATOR: dict[int, np.ndarray] = {}


@gc.register_layer("buffer_global")
class BufferGlobal(_Scale):
    """The gain's gradient accumulates in a module-level dict, never zeroed."""

    def backward(self, dy, cache, params):
        dx, grads = self.grads(dy, cache, params)
        acc = _ACCUMULATOR.setdefault(id(self), np.zeros_like(params["gain"]))
        acc += grads["gain"]  # BUG
        return dx, {"gain": acc.copy()}


@gc.register_layer("buffer_dx")
class BufferDx(_Scale):
    """dx accumulates in a buffer, never zeroed: the layers below get it."""

    dx = None

    def backward(self, dy, cache, params):
        dx, grads = self.grads(dy, cache, params)
        if self.dx is None:
            self.dx = np.zeros_like(dx)
        self.dx += dx  # BUG
        return self.dx, grads


class SigmoidCache(NamedTuple):
    s: np.ndarray  # sigmoid(x)


@gc.register_layer("sigmoid_cache_inplace")
class SigmoidCacheInplace(gc.Layer):
    """A sigmoid whose backward turns its cached s into s (1 - s) in place."""

    def forward(self, x, params):
        s = 1.0 / (1.0 + np.exp(-x))
        return s, SigmoidCache(s.copy())

    def backward(self, dy, cache, params):
        s = cache.s
        s *= 1.0 - s  # BUG: the cache is not this call's to change
        return dy * s, {}


# --- forward is not deterministic ---------------------------------------------------------


@gc.register_layer("dropout_fresh_mask")
class DropoutFreshMask(gc.Layer):
    """Dropout that draws a new mask on every call."""

    def forward(self, x, params):
        mask = (np.random.rand(*x.shape) > 0.5) / 0.5  # BUG: a new mask each call
        return x * mask, mask

    def backward(self, dy, mask, params):
        return dy * mask, {}


@gc.register_layer("dropout_rng_in_init")
class DropoutRngInInit(gc.Layer):
    """Dropout with a seeded generator built once: its state still moves every call."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def forward(self, x, params):
        mask = (self.rng.random(x.shape) > 0.5) / 0.5  # BUG: the generator advances
        return x * mask, mask

    def backward(self, dy, mask, params):
        return dy * mask, {}


@gc.register_layer("call_counter")
class CallCounter(gc.Layer):
    """Scales by a factor that grows with every call."""

    calls = 0

    def forward(self, x, params):
        self.calls += 1  # BUG: forward changes the layer
        k = 1.0 + 0.1 * self.calls
        return k * x, k

    def backward(self, dy, k, params):
        return k * dy, {}


@gc.register_layer("noisy")
class Noisy(gc.Layer):
    """Adds a little unseeded noise."""

    def forward(self, x, params):
        return x + 1e-3 * np.random.standard_normal(x.shape), None  # BUG

    def backward(self, dy, cache, params):
        return dy.copy(), {}


# --- a multi-input layer, to build forks ---------------------------------------------------


@gc.register_layer("add2")
class Add2(gc.Layer):
    """y = a + b (correct)."""

    n_inputs = 2

    def forward(self, xs, params):
        a, b = xs
        return a + b, None

    def backward(self, dy, cache, params):
        return (dy.copy(), dy.copy()), {}
