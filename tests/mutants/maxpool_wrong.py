"""Mutant: max pooling that routes the gradient to the wrong element of the window.

The argmax of the flattened k*k window is turned back into (row, column) the wrong way
round, column-major: idx % k is taken as the row and idx // k as the column. A maximum
off the window's diagonal sends its gradient to the mirrored position.
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


@gc.register_layer("maxpool_wrong")
class MaxPoolWrong(Pool):
    def forward(self, x, params):
        win = windows(x, self.k, self.s)
        return win.max(axis=-1), (x.shape, win.argmax(axis=-1))

    def backward(self, dy, cache, params):
        shape, idx = cache
        k = self.k
        row, col = idx % k, idx // k  # BUG: should be idx // k, idx % k
        dwin = np.zeros((*dy.shape, k * k))
        np.put_along_axis(dwin, (row * k + col)[..., None], dy[..., None], axis=-1)
        return unwindows(dwin, shape, k, self.s), {}
