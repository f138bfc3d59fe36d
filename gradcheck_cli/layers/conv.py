"""conv2d: 2-D cross-correlation with stride, zero padding and several channels."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..protocol import ConvSums, InputKind, Layer, Params, Shape, image_shape, register_layer
from ._fields import IntPair, checked_int, checked_pair
from ._windows import (
    Geometry,
    changed_inputs,
    fold,
    local_blocks,
    one_channel,
    patches,
    window_view,
)


class ConvCache(NamedTuple):
    cols: np.ndarray  # (N, C*kh*kw, Ho*Wo), the im2col matrix of every example
    hw: tuple[int, int]  # (H, W) of the input


@register_layer("conv2d")
class Conv2d(Layer):
    """2-D cross-correlation (what deep-learning libraries call convolution).

    x: (N, C, H, W), weight: (O, C, kh, kw), bias: (O,) -> y: (N, O, Ho, Wo) with

        y[n, o, a, b] = bias[o] + sum_{c,i,j} weight[o, c, i, j] * xpad[n, c, a*sh + i, b*sw + j]
        Ho = (H + 2*ph - kh) // sh + 1,  Wo = (W + 2*pw - kw) // sw + 1

    where xpad is x with ph rows and pw columns of zeros on each side.
    """

    summary = "2-D cross-correlation: stride, zero padding, several in/out channels"
    param_names = ("weight", "bias")
    input_kind = InputKind.IMAGE
    param_axes = {"weight": "(out_channels, in_channels, kh, kw)", "bias": "(out_channels,)"}
    param_shorthands = {"weight": "(kh, kw) for one channel"}
    inferred_from = {"weight": ("out_channels", "kernel_size")}
    field_bounds = {
        "out_channels": {"minimum": 1},
        "kernel_size": {"minimum": 1},
        "stride": {"minimum": 1},
        "padding": {"minimum": 0},
    }
    derivation = ConvSums()
    supports_perturbed = True
    supports_local = True
    batch_independent = True

    def __init__(
        self,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        bias: bool = True,
    ):
        self.out_channels = checked_int(out_channels, "out_channels")
        kh, kw = checked_pair(kernel_size, "kernel_size", 1)
        sh, sw = checked_pair(stride, "stride", 1)
        ph, pw = checked_pair(padding, "padding", 0)
        self.geometry = Geometry(kh, kw, sh, sw, ph, pw)
        if not bias:
            self.param_names = ("weight",)

    @classmethod
    def sizes_from(cls, name: str, shape: Shape) -> dict[str, Any]:
        """out_channels and kernel_size from a (O, C, kh, kw) or a 2-D (kh, kw) weight."""
        if name != "weight" or len(shape) not in (2, 4):
            return {}
        kh, kw = shape[-2:]
        return {
            "out_channels": shape[0] if len(shape) == 4 else 1,
            "kernel_size": kh if kh == kw else (kh, kw),
        }

    def from_written(self, name: str, value: np.ndarray, needed: Shape) -> np.ndarray | None:
        if name == "weight" and needed == (1, 1, *value.shape):  # a 2-D kernel: 1-in, 1-out
            return value.reshape(needed)
        return None

    def param_sizes(self, in_shape: Shape, out_shape: Shape) -> dict[str, tuple[str, int]]:
        g = self.geometry
        return {"weight": ("out_channels", self.out_channels * in_shape[0] * g.kh * g.kw)}

    def output_shape(self, in_shape: Shape) -> Shape:
        _, h, w = image_shape(in_shape, "conv2d")
        return (self.out_channels, *self.geometry.out_hw(h, w))

    def init_params(self, in_shape: Shape, rng: np.random.Generator) -> Params:
        c, _, _ = image_shape(in_shape, "conv2d")
        g = self.geometry
        bound = 1.0 / np.sqrt(c * g.kh * g.kw)  # PyTorch's default: U(-1/sqrt(fan_in), ...)
        params = {"weight": rng.uniform(-bound, bound, (self.out_channels, c, g.kh, g.kw))}
        if "bias" in self.param_names:
            params["bias"] = rng.uniform(-bound, bound, (self.out_channels,))
        return params

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, ConvCache]:
        n, _, h, w = x.shape
        ho, wo = self.geometry.out_hw(h, w)
        cols = patches(x, self.geometry).reshape(n, -1, ho * wo)
        w2d = params["weight"].reshape(self.out_channels, -1)
        # One (O, C*kh*kw) @ (C*kh*kw, Ho*Wo) product per example: row n of y never
        # depends on the batch size (a single big gemm would, through BLAS blocking).
        y = np.matmul(w2d, cols)
        if "bias" in params:
            y += params["bias"][:, None]
        return y.reshape(n, self.out_channels, ho, wo), ConvCache(cols, (h, w))

    def backward(
        self, dy: np.ndarray, cache: ConvCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        n, o = dy.shape[:2]
        g = self.geometry
        dy2 = dy.reshape(n, o, -1)  # (N, O, Ho*Wo)
        weight = params["weight"]
        dw = np.tensordot(dy2, cache.cols, axes=([0, 2], [0, 2]))  # (O, C*kh*kw)
        grads = {"weight": dw.reshape(weight.shape)}
        if "bias" in params:
            grads["bias"] = dy2.sum(axis=(0, 2))
        dcols = np.matmul(weight.reshape(o, -1).T, dy2)  # (N, C*kh*kw, Ho*Wo)
        c = weight.shape[1]
        dp = dcols.reshape(n, c, g.kh, g.kw, *dy.shape[2:])
        return fold(dp, cache.hw, g), grads

    def forward_perturbed(
        self, x: np.ndarray, params: Params, name: str, index: np.ndarray, delta: np.ndarray
    ) -> np.ndarray:
        """y: (P, N, O, Ho, Wo), copy p with params[name].flat[index[p]] += delta[p].

        The output is linear in the parameters, so copy p is the base output plus
        delta[p] times one im2col row (weight) or a constant (bias) on one channel.
        """
        y, cache = self.forward(x, params)
        p = np.arange(len(index))
        out = np.repeat(y[None], len(index), axis=0)
        if name == "bias":
            out[p, :, index] += delta[:, None, None, None]
            return out
        o, rest = np.divmod(index, cache.cols.shape[1])  # rest = c*kh*kw + i*kw + j
        rows = cache.cols[:, rest].transpose(1, 0, 2)  # (P, N, Ho*Wo)
        out[p, :, o] += (delta[:, None, None] * rows).reshape(out.shape[:2] + out.shape[3:])
        return out

    def perturbed_local(self, x, y, params, name, index, delta):
        """Copy p changes one output channel o of every example: by delta[p] (bias[o]),
        or by delta[p] times the input pixels weight[o, c, i, j] meets (its im2col row,
        read from the padded input through a strided view, not built whole). The same
        sums as ``forward_perturbed``. x: (N, C, H, W), y: (N, O, Ho, Wo); returns
        (P * N, Ho * Wo) positions and values, row p * N + n the copy p of example n."""
        n, _, ho, wo = y.shape
        size, p = ho * wo, len(index)
        if name == "bias":
            o = index
            change = np.broadcast_to(delta[:, None, None], (p, n, size))
        else:
            g = self.geometry
            o, rest = np.divmod(index, params["weight"][0].size)
            c, ij = np.divmod(rest, g.kh * g.kw)
            i, j = np.divmod(ij, g.kw)
            # (P, N, Ho, Wo): the advanced axes go first
            met = window_view(x, g)[:, c, :, :, i, j]
            change = delta[:, None, None] * met.reshape(p, n, size)
        values = y.reshape(n, -1, size)[:, o].transpose(1, 0, 2) + change  # (P, N, Ho*Wo)
        positions = o[:, None] * size + np.arange(size)  # (P, Ho*Wo)
        return np.repeat(positions, n, axis=0), values.reshape(p * n, size)

    def forward_local(self, x, y, params, rows, index, values):
        """The output block a few changed input pixels reach (every output channel),
        computed from the input patch it reads (``_windows.local_blocks``).

        x: (N, C, H, W), y: (N, O, Ho, Wo); rows (R,); index, values (R, K) in (C, H, W)."""
        g = self.geometry
        unpadded = Geometry(g.kh, g.kw, g.sh, g.sw, 0, 0)
        w2d = params["weight"].reshape(self.out_channels, -1)

        def compute(patch, win):
            cols = patches(patch, unpadded).reshape(len(patch), -1, win.wa * win.wb)
            out = np.matmul(w2d, cols)
            if "bias" in params:
                out += params["bias"][:, None]
            return out

        def whole(rows, index, values):
            """Rows whose change reaches most of the output, each computed alone."""
            _, c, h, w = x.shape
            channel, alone = one_channel(index, h * w)
            one = alone & (c > 1)
            out = np.empty((len(rows), y[0].size), dtype=values.dtype)
            if one.any():
                out[one] = self._one_channel(
                    x, y, params, rows[one], index[one], values[one], channel[one]
                )
            if not one.all():
                z = changed_inputs(x, rows[~one], index[~one], values[~one])
                out[~one] = self.forward(z, params)[0].reshape(int((~one).sum()), -1)
            return out

        return local_blocks(g, x, y, rows, index, values, compute, whole)

    def _one_channel(self, x, y, params, rows, index, values, channel):
        """Rows whose changes all lie in one input channel, ``channel`` (R,) (a moved
        conv weight's channel, pooled), and reach most of the output: y[rows] plus the
        convolution of the change with that channel's kernels alone, 1/C of the whole
        forward's work. The layer is linear in x and both sides pad with the same zeros,
        so this is the forward's value up to rounding; a row's values depend on that row
        alone. Returns (R, O * Ho * Wo), every output in order."""
        g = self.geometry
        n, c, h, w = x.shape
        r, o = len(rows), self.out_channels
        ho, wo = y.shape[2:]
        change = np.zeros((r, h * w), dtype=values.dtype)
        # a row padded by repeating its first position writes the same change twice
        before = x.reshape(n, -1)[rows[:, None], index]
        change[np.arange(r)[:, None], index - (channel * (h * w))[:, None]] = values - before
        cols = patches(change.reshape(r, 1, h, w), g).reshape(r, g.kh * g.kw, ho * wo)
        kernels = params["weight"][:, channel].transpose(1, 0, 2, 3).reshape(r, o, -1)
        out = y[rows].reshape(r, o, ho * wo) + np.matmul(kernels, cols)
        return out.reshape(r, -1)
