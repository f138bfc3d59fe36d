"""Correct layers that purity probes must not fail: only warn where a warning is due."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import gradcheck_cli as gc


def relu_forward(x):
    """cs231n's relu_forward: (out, cache)."""
    out = np.maximum(0, x)
    cache = x
    return out, cache


def relu_backward(dout, cache):
    """cs231n's relu_backward, which zeroes dout in place: right, but impure."""
    x = cache
    dout[x <= 0] = 0
    dx = dout
    return dx


@gc.register_layer("cs231n_relu")
class Cs231nReLU(gc.Layer):
    """cs231n's relu pair behind the protocol."""

    batch_independent = True

    def forward(self, x, params):
        return relu_forward(x)

    def backward(self, dy, cache, params):
        return relu_backward(dy, cache), {}


@gc.register_layer("tanh_dy_ufunc")
class TanhDyUfunc(gc.Layer):
    """tanh whose backward multiplies dy in place (np.multiply(..., out=dy))."""

    def forward(self, x, params):
        y = np.tanh(x)
        return y, y

    def backward(self, dy, y, params):
        np.multiply(dy, 1.0 - y**2, out=dy)
        return dy, {}


class BNCache(NamedTuple):
    xhat: np.ndarray  # (N, F) normalised input
    inv_std: np.ndarray  # (F,)
    gamma: np.ndarray  # (F,)


@gc.register_layer("batchnorm_claims_independent")
class BatchNormClaimsIndependent(gc.Layer):
    """Batch norm over the batch (training mode), copied with a false claim: its rows
    depend on each other through the batch mean and variance."""

    param_names = ("gamma", "beta")
    batch_independent = True  # wrong: batch statistics mix the rows
    needs_flat_input = True

    def init_params(self, in_shape, rng):
        return {"gamma": rng.uniform(0.5, 1.5, size=in_shape), "beta": rng.normal(size=in_shape)}

    def forward(self, x, params):
        mu = x.mean(axis=0)
        inv_std = 1.0 / np.sqrt(x.var(axis=0) + 1e-5)
        xhat = (x - mu) * inv_std
        return params["gamma"] * xhat + params["beta"], BNCache(xhat, inv_std, params["gamma"])

    def backward(self, dy, cache, params):
        n = dy.shape[0]
        dxhat = dy * cache.gamma
        dx = (
            cache.inv_std
            / n
            * (n * dxhat - dxhat.sum(axis=0) - cache.xhat * (dxhat * cache.xhat).sum(axis=0))
        )
        return dx, {"gamma": (dy * cache.xhat).sum(axis=0), "beta": dy.sum(axis=0)}


@gc.register_layer("output_buffer")
class OutputBuffer(gc.Layer):
    """y = 2x written into a buffer it keeps and returns on every call: harmless in a
    training step, and gradcheck's own copies must keep it harmless in the check."""

    batch_independent = False
    buf = None

    def forward(self, x, params):
        if self.buf is None or self.buf.shape != x.shape:
            self.buf = np.empty_like(x)
        np.multiply(x, 2.0, out=self.buf)
        return self.buf, None

    def backward(self, dy, cache, params):
        return 2.0 * dy, {}


@gc.register_layer("seeded_dropout_claims_independent")
class SeededDropoutClaimsIndependent(gc.Layer):
    """numpy-ml style inverted dropout with a fixed seed and a false claim: the mask is
    drawn for x.shape, so a row's mask depends on its position and on the batch size
    (the numeric side's stacked copies would each get another mask). ``bug``: backward
    leaves out the 1 / p scaling."""

    batch_independent = True  # wrong: the mask follows the row's position

    def __init__(self, p: float = 0.6, seed: int = 0, bug: bool = False):
        self.p, self.seed, self.bug = p, seed, bug

    def forward(self, x, params):
        mask = (np.random.default_rng(self.seed).random(x.shape) < self.p) / self.p
        return x * mask, mask

    def backward(self, dy, mask, params):
        return dy * ((mask > 0) if self.bug else mask), {}


def masked_forward(x, param):
    """A fixed (N, D) mask given in the config's args (a precomputed dropout mask)."""
    m = np.asarray(param["mask"], dtype=float)
    return x * m, m


def masked_backward(dout, cache):
    return dout * cache
