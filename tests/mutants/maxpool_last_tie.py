"""NOT a bug: max pooling that gives a tie's gradient to the LAST maximum.

Built-in max pooling hands a tie to the first maximum in row-major order; this one hands
it to the last. Both are valid subgradients (limits of the gradient from nearby points
without ties), so on an input full of ties it must pass, with the ties counted as kinks.
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


@gc.register_layer("maxpool_last_tie")
class MaxPoolLastTie(Pool):
    def forward(self, x, params):
        win = windows(x, self.k, self.s)
        last = win.shape[-1] - 1 - win[..., ::-1].argmax(axis=-1)  # last maximum
        return win.max(axis=-1), (x.shape, last)

    def backward(self, dy, cache, params):
        shape, idx = cache
        dwin = np.zeros((*dy.shape, self.k * self.k))
        np.put_along_axis(dwin, idx[..., None], dy[..., None], axis=-1)
        return unwindows(dwin, shape, self.k, self.s), {}
