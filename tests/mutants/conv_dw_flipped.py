"""Mutant: conv2d whose dweight comes out rotated by 180 degrees.

dweight is computed as a convolution of x with dy (as scipy.signal.convolve2d
would) where the forward is a cross-correlation: kernel tap (i, j) receives the
gradient of tap (k-1-i, k-1-j). dx and dbias are right.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("conv2d_dw_flipped")
class Conv2dDwFlipped(gc.Layer):
    """Cross-correlation with stride s and zero padding p.

    x: (N, C, H, W), weight: (O, C, k, k), bias: (O,) -> y: (N, O, Ho, Wo),
    Ho = (H + 2p - k) // s + 1.
    """

    param_names = ("weight", "bias")

    def __init__(self, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0):
        self.o, self.k, self.s, self.p = out_channels, kernel_size, stride, padding

    def output_shape(self, in_shape):
        c, h, w = in_shape
        k, s, p = self.k, self.s, self.p
        return (self.o, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)

    def init_params(self, in_shape, rng):
        c = in_shape[0]
        bound = 1 / np.sqrt(c * self.k * self.k)
        return {
            "weight": rng.uniform(-bound, bound, (self.o, c, self.k, self.k)),
            "bias": rng.uniform(-bound, bound, self.o),
        }

    def _window(self, xp, i, j, ho, wo):
        """The input pixels that kernel tap (i, j) reads for every output: (N, C, Ho, Wo)."""
        s = self.s
        return xp[:, :, i : i + s * ho : s, j : j + s * wo : s]

    def forward(self, x, params):
        p = self.p
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        _, ho, wo = self.output_shape(x.shape[1:])
        y = np.zeros((x.shape[0], self.o, ho, wo))
        for i in range(self.k):
            for j in range(self.k):
                tap = params["weight"][:, :, i, j]
                y += np.einsum("ncab,oc->noab", self._window(xp, i, j, ho, wo), tap)
        return y + params["bias"][:, None, None], (x, xp)

    def backward(self, dy, cache, params):
        x, xp = cache
        w, k, s, p = params["weight"], self.k, self.s, self.p
        ho, wo = dy.shape[2:]
        h, wd = x.shape[2:]
        dw = np.zeros_like(w)
        for i in range(k):
            for j in range(k):
                # BUG: tap (i, j) must receive its own window's gradient, not tap (k-1-i, k-1-j)'s
                window = self._window(xp, i, j, ho, wo)
                dw[:, :, k - 1 - i, k - 1 - j] = np.einsum("noab,ncab->oc", dy, window)
        db = dy.sum(axis=(0, 2, 3))
        dxp = np.zeros_like(xp)
        for i in range(k):
            for j in range(k):
                dxp[:, :, i : i + s * ho : s, j : j + s * wo : s] += np.einsum(
                    "noab,oc->ncab", dy, w[:, :, i, j]
                )
        dx = dxp[:, :, p : p + h, p : p + wd]
        return dx, {"weight": dw, "bias": db}
