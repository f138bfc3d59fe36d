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

import functools
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


def padded(x: np.ndarray, g: Geometry, pad_value: float = 0.0) -> np.ndarray:
    """x: (N, C, H, W) -> (N, C, H + 2 ph, W + 2 pw), padded with pad_value; x itself
    without padding (np.pad copies x even for a zero width)."""
    if not (g.ph or g.pw):
        return x
    return np.pad(x, ((0, 0), (0, 0), (g.ph, g.ph), (g.pw, g.pw)), constant_values=pad_value)


def window_view(x: np.ndarray, g: Geometry, pad_value: float = 0.0) -> np.ndarray:
    """x: (N, C, H, W) -> a strided view (N, C, Ho, Wo, kh, kw) of its padded windows:
    ``view[n, c, a, b, i, j] = xpad[n, c, a * sh + i, b * sw + j]``, nothing copied but
    the padding."""
    xp = padded(x, g, pad_value)
    return sliding_window_view(xp, (g.kh, g.kw), axis=(2, 3))[:, :, :: g.sh, :: g.sw]


def patches(x: np.ndarray, g: Geometry, pad_value: float = 0.0) -> np.ndarray:
    """x: (N, C, H, W) -> contiguous windows (N, C, kh, kw, Ho, Wo); padding = pad_value."""
    return np.ascontiguousarray(window_view(x, g, pad_value).transpose(0, 1, 4, 5, 2, 3))


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


class Window(NamedTuple):
    """A block of outputs, the same size for every row of a group: rows a0 .. a0 + wa - 1
    and columns b0 .. b0 + wb - 1 of the output (a0, b0: (R,) per row)."""

    a0: np.ndarray
    b0: np.ndarray
    wa: int
    wb: int


class Where(NamedTuple):
    """Changed inputs: flat positions ``index`` (R, K) in one (C, H, W) input of shape
    ``shape``, and the extremes of their rows and columns in each row of the batch,
    r_min, r_max, s_min, s_max (R,): all a block and its patch need to know of them."""

    shape: tuple[int, int, int]
    index: np.ndarray
    r_min: np.ndarray
    r_max: np.ndarray
    s_min: np.ndarray
    s_max: np.ndarray

    def rows(self, group: np.ndarray) -> Where:
        if len(group) == len(self.index):
            return self
        return Where(self.shape, *(a[group] for a in self[1:]))


#: Inputs up to this many elements per example look positions up in tables (a gather
#: is 4x faster than numpy's integer division of the (R, K) positions); larger divide.
#: At most 32 tables are kept (``_table``): 32 MiB at most.
TABLE_ELEMENTS = 1 << 17


@functools.lru_cache(maxsize=32)
def _table(c: int, h: int, w: int, a: int, d: int, e: int) -> np.ndarray:
    """ch * a + r * d + s * e for every flat position (ch, r, s) of a (C, H, W) input."""
    ch, spatial = np.divmod(np.arange(c * h * w), h * w)
    r, s = np.divmod(spatial, w)
    return ch * a + r * d + s * e


def affine(shape: tuple[int, int, int], index: np.ndarray, a: int, d: int, e: int):
    """ch * a + r * d + s * e at every flat position in ``index`` (R, K)."""
    c, h, w = shape
    if c * h * w <= TABLE_ELEMENTS:
        return np.take(_table(c, h, w, a, d, e), index)
    ch, spatial = np.divmod(index, h * w)
    r, s = np.divmod(spatial, w)
    return ch * a + r * d + s * e


def where(shape: tuple[int, int, int], index: np.ndarray) -> Where:
    """The changed inputs at ``index`` (R, K), flat positions in one ``shape`` input."""
    r, s = affine(shape, index, 0, 1, 0), affine(shape, index, 0, 0, 1)
    return Where(shape, index, r.min(axis=1), r.max(axis=1), s.min(axis=1), s.max(axis=1))


def changed_blocks(
    g: Geometry, out_hw: tuple[int, int], at: Where
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a0, b0, wa, wb), each (R,): per row, a block of outputs holding every output whose
    window reads one of the changed inputs ``at``. The block's size depends only on how
    far the row's changes spread (not on where they are, nor on the other rows), so rows
    of one spread share one size and a row's outputs come out the same whatever rows it
    is computed with; it is placed inside the output, over the outputs the changes
    reach."""
    ho, wo = out_hw
    r_min, r_max, s_min, s_max = at.r_min, at.r_max, at.s_min, at.s_max
    wa = np.minimum(reach(r_max - r_min, g.kh, g.sh), ho)
    wb = np.minimum(reach(s_max - s_min, g.kw, g.sw), wo)
    a_lo = np.clip(-((-(r_min + g.ph - g.kh + 1)) // g.sh), 0, ho - 1)
    b_lo = np.clip(-((-(s_min + g.pw - g.kw + 1)) // g.sw), 0, wo - 1)
    return np.minimum(a_lo, ho - wa), np.minimum(b_lo, wo - wb), wa, wb


def reach(extent: np.ndarray, k: int, stride: int) -> np.ndarray:
    """The most outputs along one axis that changes spread over ``extent`` + 1 inputs
    (R,) can reach, wherever they sit: outputs a with a * stride - pad <= r <=
    a * stride - pad + k - 1 for a changed r. With the changes starting at phase phi of
    the stride (phi = (r_min + pad) mod stride) that is floor((phi + extent) / stride) -
    ceil((phi - k + 1) / stride) + 1; the most over every phase depends on the extent
    alone. (A 2x2 pooling of a 3-row change reaches 2 rows of outputs at either phase.)"""
    most = np.zeros_like(extent)
    for phi in range(stride):
        np.maximum(most, (phi + extent) // stride + (k - 1 - phi) // stride + 1, out=most)
    return most


def window_patches(
    x: np.ndarray,
    rows: np.ndarray,
    at: Where,
    values: np.ndarray,
    g: Geometry,
    win: Window,
    pad_value: float = 0.0,
) -> np.ndarray:
    """The input each row's output block reads: (R, C, (wa - 1) * sh + kh, (wb - 1) * sw +
    kw), cut from the padded base input x[rows] with the row's changed values put in.

    x: (N, C, H, W); rows (R,); at (R, K) and values (R, K) the changed inputs. Changed
    inputs outside the block's reach are read by no output in it, and are left out.
    """
    c = x.shape[1]
    xp = padded(x, g, pad_value)
    ph_, pw_ = (win.wa - 1) * g.sh + g.kh, (win.wb - 1) * g.sw + g.kw
    top, left = win.a0 * g.sh, win.b0 * g.sw
    # every (ph_, pw_) window of xp, then one window per row: R x C strided block copies
    blocks = sliding_window_view(xp, (ph_, pw_), axis=(2, 3))
    patch = np.ascontiguousarray(blocks[rows, :, top, left])  # (R, C, ph_, pw_)
    # The changed values go in through one flat index into the patch: changed input
    # (ch, r, s) of row i sits at ((i * C + ch) * ph_ + r + ph - top) * pw_ + s + pw - left.
    # An input outside the patch (read by no output of the block) is left out; whether
    # a row has any shows in its extreme rows and columns, without a mask per input.
    down, right = g.ph - top, g.pw - left  # (R,): from input rows/columns to the patch's
    offset = np.arange(len(rows)) * (c * ph_ * pw_) + down * pw_ + right
    flat = affine(at.shape, at.index, ph_ * pw_, pw_, 1) + offset[:, None]
    if (
        (at.r_min + down >= 0).all()
        and (at.r_max + down < ph_).all()
        and (at.s_min + right >= 0).all()
        and (at.s_max + right < pw_).all()
    ):
        patch.reshape(-1)[flat.reshape(-1)] = values.reshape(-1)
    else:
        pr = affine(at.shape, at.index, 0, 1, 0) + down[:, None]
        ps = affine(at.shape, at.index, 0, 0, 1) + right[:, None]
        inside = (pr >= 0) & (pr < ph_) & (ps >= 0) & (ps < pw_)
        patch.reshape(-1)[flat[inside]] = values[inside]
    return patch


def window_index(channels: int, out_hw: tuple[int, int], win: Window) -> np.ndarray:
    """Flat positions (R, channels * wa * wb) of every row's output block in one
    (channels, Ho, Wo) output, in the block's (channel, row, column) order."""
    ho, wo = out_hw
    a = win.a0[:, None] + np.arange(win.wa)  # (R, wa)
    b = win.b0[:, None] + np.arange(win.wb)  # (R, wb)
    ch = np.arange(channels)
    flat = (ch[None, :, None, None] * ho + a[:, None, :, None]) * wo + b[:, None, None, :]
    return flat.reshape(len(win.a0), -1)


def one_channel(index: np.ndarray, hw: int) -> tuple[np.ndarray, np.ndarray]:
    """(channel, alone), each (R,): the channel of each row's first changed input
    (flat positions ``index`` (R, K) in a (C, H, W) input, hw = H * W), and whether all
    the row's changes lie in it (positions are channel-major: the extremes tell)."""
    channel = index.min(axis=1) // hw
    return channel, index.max(axis=1) // hw == channel


def changed_inputs(x: np.ndarray, rows: np.ndarray, index: np.ndarray, values: np.ndarray):
    """x[rows] (R, C, H, W) with each row's changed values (R, K) put in at ``index``."""
    dense = x[rows].reshape(len(rows), -1).copy()
    dense[np.arange(len(rows))[:, None], index] = values
    return dense.reshape(len(rows), *x.shape[1:])


def local_blocks(g, x, y, rows, index, values, compute, whole, pad_value=0.0):
    """The outputs a few changed inputs reach, block by block: rows are grouped by the
    size of their block and each group computed at that size (so a row's values never
    depend on the rows beside it), then padded to one width by repeating each row's
    first output (the Local convention). A row whose block would cover more than
    LOCAL_SHARE of the output is computed whole by ``whole(rows, index, values)`` (the
    layer's forward of ``changed_inputs``, or its own way; row by row as well).

    x: (N, C, H, W), y: (N, O, Ho, Wo); compute(patch, win) -> (R_g, O, wa, wb).
    Returns (index, values), each (R, K').
    """
    channels, ho, wo = y.shape[1:]
    at = where(x.shape[1:], index)
    a0, b0, wa, wb = changed_blocks(g, (ho, wo), at)
    big = wa * wb > LOCAL_SHARE * ho * wo
    width = channels * (ho * wo if big.any() else int((wa * wb).max()))
    out_index = np.empty((len(rows), width), dtype=np.intp)
    out_values = np.empty((len(rows), width), dtype=values.dtype)
    if big.any():
        group = np.flatnonzero(big)
        out_values[group] = whole(rows[group], index[group], values[group]).reshape(len(group), -1)
        out_index[group] = np.arange(width)
    sizes = np.where(big, -1, wa * (wo + 1) + wb)
    # sorted(set(...)), not np.unique: its first call imports numpy.ma (15 ms of start-up)
    for size in sorted(set(sizes[sizes >= 0].tolist())):
        group = np.flatnonzero(sizes == size)
        win = Window(a0[group], b0[group], int(wa[group[0]]), int(wb[group[0]]))
        patch = window_patches(x, rows[group], at.rows(group), values[group], g, win, pad_value)
        block = compute(patch, win).reshape(len(group), -1)
        k = block.shape[1]
        out_values[group, :k] = block
        out_index[group, :k] = window_index(channels, (ho, wo), win)
        if k < width:
            out_values[group, k:] = block[:, :1]
            out_index[group, k:] = out_index[group, :1]
    return out_index, out_values


#: A layer computes a local change only while its block is at most this share of the
#: output: beyond it, the whole forward costs about the same and gathering loses.
LOCAL_SHARE = 0.5
