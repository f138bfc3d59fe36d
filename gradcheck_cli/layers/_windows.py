"""Sliding windows shared by conv2d and the pooling layers (im2col and its adjoint).

A window geometry is a kernel (kh, kw), a stride (sh, sw) and a zero padding (ph, pw)
on each side. For an input of height H the output height is

    Ho = (H + 2 * ph - kh) // sh + 1        (likewise Wo from W, kw, sw, pw)

``patches`` cuts x: (N, C, H, W) into p: (N, C, kh, kw, Ho, Wo) with
``p[n, c, i, j, a, b] = xpad[n, c, a * sh + i, b * sw + j]``; ``fold`` is its adjoint and
adds every window's gradient back onto the pixels it read, so overlapping windows
accumulate.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..protocol import FieldError


class Geometry(NamedTuple):
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        """(Ho, Wo) for an (h, w) input; FieldError when the kernel does not fit."""
        hp, wp = h + 2 * self.ph, w + 2 * self.pw
        if self.kh > hp or self.kw > wp:
            raise FieldError(
                "kernel_size",
                f"kernel {self.kh}x{self.kw} is larger than the padded input {hp}x{wp} "
                f"(input {h}x{w}, padding {self.ph},{self.pw}); use a kernel of at most "
                f"{hp}x{wp} or more padding",
            )
        return (hp - self.kh) // self.sh + 1, (wp - self.kw) // self.sw + 1


def patches(x: np.ndarray, g: Geometry, pad_value: float = 0.0) -> np.ndarray:
    """x: (N, C, H, W) -> contiguous windows (N, C, kh, kw, Ho, Wo); padding = pad_value."""
    xp = x
    if g.ph or g.pw:  # np.pad copies x even for a zero width
        xp = np.pad(x, ((0, 0), (0, 0), (g.ph, g.ph), (g.pw, g.pw)), constant_values=pad_value)
    v = sliding_window_view(xp, (g.kh, g.kw), axis=(2, 3))[:, :, :: g.sh, :: g.sw]
    return np.ascontiguousarray(v.transpose(0, 1, 4, 5, 2, 3))


def fold(dp: np.ndarray, hw: tuple[int, int], g: Geometry) -> np.ndarray:
    """Adjoint of ``patches``: dp (N, C, kh, kw, Ho, Wo) -> dx (N, C, H, W).

    One vectorised add per kernel offset (kh * kw of them); padding gradients are dropped.
    """
    n, c, _, _, ho, wo = dp.shape
    h, w = hw
    dxp = np.zeros((n, c, h + 2 * g.ph, w + 2 * g.pw), dtype=dp.dtype)
    for i in range(g.kh):
        for j in range(g.kw):
            dxp[:, :, i : i + g.sh * ho : g.sh, j : j + g.sw * wo : g.sw] += dp[:, :, i, j]
    return dxp[:, :, g.ph : g.ph + h, g.pw : g.pw + w]
