"""Mutant: conv2d whose dx forgets the kernel flip.

dx is the "full" convolution of dy with the kernel: in cross-correlation form it needs
the kernel rotated by 180 degrees. This backward correlates the padded dy with the
kernel as stored. Only dx is wrong; dweight and dbias are right.
"""

import numpy as np

import gradcheck_cli as gc


@gc.register_layer("conv2d_noflip")
class Conv2dNoFlip(gc.Layer):
    """Stride-1, unpadded cross-correlation. x: (N, C, H, W), weight: (O, C, k, k)."""

    param_names = ("weight", "bias")

    def __init__(self, out_channels: int, kernel_size: int):
        self.o, self.k = out_channels, kernel_size

    def output_shape(self, in_shape):
        c, h, w = in_shape
        return (self.o, h - self.k + 1, w - self.k + 1)

    def init_params(self, in_shape, rng):
        c = in_shape[0]
        bound = 1 / np.sqrt(c * self.k * self.k)
        return {
            "weight": rng.uniform(-bound, bound, (self.o, c, self.k, self.k)),
            "bias": rng.uniform(-bound, bound, self.o),
        }

    def forward(self, x, params):
        w, k = params["weight"], self.k
        ho, wo = x.shape[2] - k + 1, x.shape[3] - k + 1
        y = np.zeros((x.shape[0], self.o, ho, wo))
        for i in range(k):
            for j in range(k):
                y += np.einsum("ncab,oc->noab", x[:, :, i : i + ho, j : j + wo], w[:, :, i, j])
        return y + params["bias"][:, None, None], x

    def backward(self, dy, cache, params):
        x, w, k = cache, params["weight"], self.k
        ho, wo = dy.shape[2:]
        dw = np.zeros_like(w)
        for i in range(k):
            for j in range(k):
                dw[:, :, i, j] = np.einsum("noab,ncab->oc", dy, x[:, :, i : i + ho, j : j + wo])
        h, wd = x.shape[2:]
        dyp = np.pad(dy, ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
        kernel = w  # BUG: the full convolution needs w[:, :, ::-1, ::-1]
        dx = np.zeros_like(x)
        for i in range(k):
            for j in range(k):
                dx += np.einsum(
                    "noab,oc->ncab", dyp[:, :, i : i + h, j : j + wd], kernel[:, :, i, j]
                )
        return dx, {"weight": dw, "bias": dy.sum(axis=(0, 2, 3))}
