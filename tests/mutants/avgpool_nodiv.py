"""Mutant: average pooling whose backward forgets to divide by the window size.

y = mean of the window = sum / (k*k), so each element receives dy / (k*k); this
backward hands every element the full dy.
"""

import numpy as np

import gradcheck_cli as gc


def windows(x, k, s):
    """x: (N, C, H, W) -> (N, C, Ho, Wo, k*k), window positions in row-major order."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = np.empty((n, c, ho, wo, k * k))
    for i in range(k):
        for j in range(k):
            out[..., i * k + j] = x[:, :, i : i + s * ho : s, j : j + s * wo : s]
    return out


def unwindows(dwin, shape, k, s):
    """Adjoint of windows: (N, C, Ho, Wo, k*k) -> (N, C, H, W), overlaps summed."""
    dx = np.zeros(shape)
    ho, wo = dwin.shape[2:4]
    for i in range(k):
        for j in range(k):
            dx[:, :, i : i + s * ho : s, j : j + s * wo : s] += dwin[..., i * k + j]
    return dx


class Pool(gc.Layer):
    """x: (N, C, H, W) -> y: (N, C, Ho, Wo), Ho = (H - k) // s + 1; no padding."""

    def __init__(self, kernel_size: int, stride: int | None = None):
        self.k = kernel_size
        self.s = kernel_size if stride is None else stride

    def output_shape(self, in_shape):
        c, h, w = in_shape
        return (c, (h - self.k) // self.s + 1, (w - self.k) // self.s + 1)


@gc.register_layer("avgpool_nodiv")
class AvgPoolNoDiv(Pool):
    def forward(self, x, params):
        return windows(x, self.k, self.s).mean(axis=-1), x.shape

    def backward(self, dy, cache, params):
        dwin = np.repeat(dy[..., None], self.k * self.k, axis=-1)  # BUG: divide by k*k
        return unwindows(dwin, cache, self.k, self.s), {}
