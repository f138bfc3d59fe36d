"""maxpool2d and avgpool2d over (possibly overlapping, possibly padded) windows."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..protocol import (
    FieldError,
    InputKind,
    Layer,
    Note,
    Params,
    Routing,
    Shape,
    image_shape,
    register_layer,
)
from ._fields import IntPair, checked_pair
from ._windows import Geometry, changed_inputs, fold, local_blocks, one_channel, padded, patches


class _Pool2d(Layer):
    """Shared geometry: x: (N, C, H, W) -> y: (N, C, Ho, Wo) with

    Ho = (H + 2*ph - kh) // sh + 1,  Wo = (W + 2*pw - kw) // sw + 1.
    """

    input_kind = InputKind.IMAGE
    field_bounds = {
        "kernel_size": {"minimum": 1},
        "stride": {"minimum": 1},
        "padding": {"minimum": 0},
    }
    batch_independent = True
    supports_local = True
    #: what padding counts as: -inf for max pooling, 0 for average pooling
    pad_value: float = 0.0

    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0):
        kh, kw = checked_pair(kernel_size, "kernel_size", 1)
        sh, sw = (kh, kw) if stride is None else checked_pair(stride, "stride", 1)
        ph, pw = checked_pair(padding, "padding", 0)
        # As in PyTorch: with more padding a window could hold padding only.
        if 2 * ph > kh or 2 * pw > kw:
            raise FieldError(
                "padding",
                f"must be at most half the kernel size ({kh // 2}, {kw // 2}), got {ph}, {pw}",
            )
        self.geometry = Geometry(kh, kw, sh, sw, ph, pw)

    def output_shape(self, in_shape: Shape) -> Shape:
        c, h, w = image_shape(in_shape, getattr(self, "type_name", "pooling"))
        return (c, *self.geometry.out_hw(h, w))

    def _windows(self, x: np.ndarray, pad_value: float) -> np.ndarray:
        """x: (N, C, H, W) -> (N, C, kh*kw, Ho, Wo), window positions in row-major order."""
        p = patches(x, self.geometry, pad_value)
        return p.reshape(p.shape[0], p.shape[1], -1, *p.shape[4:])

    def forward_local(self, x, y, params, rows, index, values):
        """The output block a few changed inputs reach, pooled from the input patch it
        reads (``_windows.local_blocks``): on the one channel every row changed when
        there is one (a moved conv weight changes one channel), else on every channel.

        x: (N, C, H, W), y: (N, C, Ho, Wo); rows (R,); index, values (R, K) in (C, H, W)."""
        n, c, h, w = x.shape
        if c > 1 and index.size:
            channel, alone = one_channel(index, h * w)
            if alone.all():
                # pooling never mixes channels: each channel is an image of its own
                at, got = self._blocks(
                    x.reshape(n * c, 1, h, w),
                    y.reshape(n * c, 1, *y.shape[2:]),
                    rows * c + channel,
                    index - (channel * (h * w))[:, None],
                    values,
                )
                return at + (channel * y[0, 0].size)[:, None], got
        return self._blocks(x, y, rows, index, values)

    def _blocks(self, x, y, rows, index, values):
        g = self.geometry
        unpadded = Geometry(g.kh, g.kw, g.sh, g.sw, 0, 0)
        c = y.shape[1]

        def compute(patch, win):
            return self._pool_block(patch, unpadded, c, win.wa, win.wb)

        return local_blocks(
            g,
            x,
            y,
            rows,
            index,
            values,
            compute,
            lambda r, i, v: self.forward(changed_inputs(x, r, i, v), {})[0],
            self.pad_value,
        )

    def _pool_block(self, patch: np.ndarray, g: Geometry, c: int, wa: int, wb: int):
        """A padded input block (R, C, (wa - 1) * sh + kh, (wb - 1) * sw + kw) -> its
        (R, C, wa, wb) pooled values, as ``forward`` computes them."""
        windows = patches(patch, g, self.pad_value)
        return self._pool(windows.reshape(len(patch), c, g.kh * g.kw, wa, wb))

    def _pool(self, windows: np.ndarray) -> np.ndarray:
        """(R, C, kh*kw, a, b) windows -> (R, C, a, b) pooled values (the layers whose
        ``_pool_block`` pools the windows)."""
        raise NotImplementedError

    def _fold(self, dwin: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        """Adjoint of _windows: (N, C, kh*kw, Ho, Wo) -> (N, C, H, W), overlaps summed."""
        g = self.geometry
        n, c, _, ho, wo = dwin.shape
        return fold(dwin.reshape(n, c, g.kh, g.kw, ho, wo), hw, g)


class MaxCache(NamedTuple):
    x: np.ndarray  # (N, C, H, W), the layer's input: backward finds each window's argmax


@register_layer("maxpool2d")
class MaxPool2d(_Pool2d):
    """Maximum over each kh x kw window; padding counts as -inf.

    x: (N, C, H, W) -> y: (N, C, Ho, Wo); stride defaults to the kernel size.
    """

    summary = "2-D max pooling; stride defaults to kernel_size, padding counts as -inf"
    kinks = (
        "ties within a window: the first maximum in row-major order gets the whole "
        "gradient, the other tied inputs exactly 0"
    )
    derivation = Routing()
    pad_value = -np.inf

    def _pool_block(self, patch: np.ndarray, g: Geometry, c: int, wa: int, wb: int):
        return _running_max(patch, g, wa, wb)

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, MaxCache]:
        g = self.geometry
        xp = padded(x, g, self.pad_value)
        return _running_max(xp, g, *g.out_hw(*x.shape[2:])), MaxCache(x)

    def backward(
        self, dy: np.ndarray, cache: MaxCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        # Tie policy: argmax returns the FIRST maximum in row-major window order, and only
        # that position receives the gradient.
        argmax = self._windows(cache.x, -np.inf).argmax(axis=2)
        n, c, ho, wo = dy.shape
        dwin = np.zeros((n, c, self.geometry.kh * self.geometry.kw, ho, wo), dtype=dy.dtype)
        np.put_along_axis(dwin, argmax[:, :, None], dy[:, :, None], axis=2)
        return self._fold(dwin, cache.x.shape[2:]), {}


def _running_max(xp: np.ndarray, g: Geometry, ho: int, wo: int) -> np.ndarray:
    """The (N, C, ho, wo) window maxima of a padded input xp: (N, C, >= (ho - 1) * sh +
    kh, >= (wo - 1) * sw + kw). A running maximum over the kh*kw strided views, no copy
    of the windows: the numeric check pools thousands of times (5x faster than the
    windows' max on LeNet-5's whole forward; on 128 local blocks of the 3x32x32 CNN's
    poolings, 2x2 stride 2, 4.5x at 16 channels of 4x4 and 2.0x at 32 of 8x8).
    Exact, so the whole forward and a local block give the same values."""
    y = None
    for i in range(g.kh):
        for j in range(g.kw):
            rows = slice(i, i + g.sh * (ho - 1) + 1, g.sh)
            cols = slice(j, j + g.sw * (wo - 1) + 1, g.sw)
            view = xp[:, :, rows, cols]
            y = view.copy() if y is None else np.maximum(y, view, out=y)
    return y


class AvgCache(NamedTuple):
    hw: tuple[int, int]  # (H, W) of the input


@register_layer("avgpool2d")
class AvgPool2d(_Pool2d):
    """Mean over each kh x kw window, always dividing by kh*kw (padding counts as 0).

    x: (N, C, H, W) -> y: (N, C, Ho, Wo); stride defaults to the kernel size. Like
    PyTorch's avg_pool2d with count_include_pad=True.
    """

    summary = "2-D average pooling; divides by kh*kw, padding included (count_include_pad)"

    @property
    def derivation(self) -> Note:  # type: ignore[override]
        g = self.geometry
        return Note(
            f"average pooling: every input of a {g.kh}x{g.kw} window receives "
            f"d[a,b] / {g.kh * g.kw}; an input in several windows gets the sum"
        )

    def _pool(self, windows: np.ndarray) -> np.ndarray:
        g = self.geometry
        return windows.sum(axis=2) / (g.kh * g.kw)

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, AvgCache]:
        g = self.geometry
        return self._windows(x, 0.0).sum(axis=2) / (g.kh * g.kw), AvgCache(x.shape[2:])

    def backward(
        self, dy: np.ndarray, cache: AvgCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        g = self.geometry
        n, c, ho, wo = dy.shape
        dwin = np.broadcast_to((dy / (g.kh * g.kw))[:, :, None], (n, c, g.kh * g.kw, ho, wo))
        return self._fold(dwin, cache.hw), {}
