"""Small helpers shared by the losses."""

from __future__ import annotations

import numpy as np


def row_sums(a: np.ndarray) -> np.ndarray:
    """a: (N, *shape) -> (N,), the sum over each example (``short_sums``' bits)."""
    return short_sums(a.reshape(a.shape[0], -1))


#: Up to this many columns (classes), ``short_sums`` and ``class_max`` go column by
#: column; numpy's own reduction is as fast beyond.
FEW_COLUMNS = 64


def short_sums(a: np.ndarray) -> np.ndarray:
    """a: (M, K) -> (M,), each row's sum, bit for bit what ``a.sum(axis=1)`` gives.

    numpy's reduction over a short inner axis costs per row (3,656 rows of 10 logits, the
    batch-8 MLP's copies: 62 us against 19 us here). For a C-contiguous float array of
    2 to FEW_COLUMNS columns, the columns are added element-wise in the order numpy adds
    each row's values (its pairwise sum): fewer than 8 in turn from 0; otherwise eight
    running sums r_j over every eighth value, then ((r0 + r1) + (r2 + r3)) + ((r4 + r5)
    + (r6 + r7)), then the values left over in turn, and last the reduction's starting
    0 (which turns a sum of -0.0 into 0.0). Other arrays go to numpy, whose order for
    them differs (a Fortran-ordered array is added column after column).
    tests/test_losses.py holds both orders to numpy's, NaN, infinities and signed zeros
    included."""
    k = a.shape[1] if a.ndim == 2 else 0
    if not 1 < k <= FEW_COLUMNS or a.dtype.kind != "f" or not a.flags.c_contiguous:
        return a.sum(axis=1)
    return _in_numpy_order([a[:, j] for j in range(k)])


def class_major_sums(a: np.ndarray) -> np.ndarray:
    """a: (K, M), 2 <= K, float -> (M,), each column's sum, bit for bit what
    ``short_sums(a.T.copy())`` (numpy's row sums of a.T) gives: the same additions in the
    same order, on rows that lie contiguous in memory."""
    return _in_numpy_order(a)


def _in_numpy_order(cols: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """The element-wise sum of cols (k vectors of one length, 2 <= k: a list, or the rows
    of a (k, M) array), added in the order numpy's pairwise sum adds the k values of a
    row (``short_sums``)."""
    k = len(cols)
    zero = cols[0].dtype.type(0)
    if k < 8:
        out = cols[0] + zero
        for col in cols[1:]:
            out += col
        return out
    whole = k - k % 8
    # each running sum starts as a new array holding its first addition (no copy of a
    # column that only gets added to): the same additions, half the passes at k < 16
    if whole == 8:
        runs = [cols[j] + cols[j + 1] if j % 2 == 0 else cols[j] for j in range(8)]
    else:
        runs = [cols[j] + cols[8 + j] for j in range(8)]
        for start in range(16, whole, 8):
            for j in range(8):
                runs[j] += cols[start + j]
        for j in (0, 2, 4, 6):
            runs[j] += runs[j + 1]
    runs[0] += runs[2]
    runs[4] += runs[6]
    out = runs[0]
    out += runs[4]
    for j in range(whole, k):
        out += cols[j]
    out += zero
    return out


def class_sums(y: np.ndarray) -> np.ndarray:
    """y: (N, C, *rest) -> (N, 1, *rest), the sum over the classes (axis 1), bit for bit
    ``y.sum(axis=1, keepdims=True)`` (``short_sums`` for a 2-D y)."""
    if y.ndim != 2:
        return y.sum(axis=1, keepdims=True)
    return short_sums(y)[:, None]


def class_max(y: np.ndarray) -> np.ndarray:
    """y: (N, C, *rest) -> (N, 1, *rest), the maximum over the classes (axis 1).

    For a 2-D y of few classes, C - 1 element-wise maxima of its columns: numpy's
    reduction over a short inner axis costs per row (the batch-8 MLP's 18,600 copies of
    10 logits: 0.60 ms against ~0.1 ms). A maximum is exact, so the values are the
    reduction's, NaN included."""
    if y.ndim != 2 or not 1 < y.shape[1] <= FEW_COLUMNS:
        return y.max(axis=1, keepdims=True)
    m = y[:, :1].copy()
    for j in range(1, y.shape[1]):
        np.maximum(m, y[:, j : j + 1], out=m)
    return m


def class_major_max(a: np.ndarray) -> np.ndarray:
    """a: (K, M) -> (M,), each column's maximum (exact, NaN included, as ``class_max``)."""
    m = a[0].copy()
    for row in a[1:]:
        np.maximum(m, row, out=m)
    return m


def hot_classes(t: np.ndarray) -> np.ndarray | None:
    """t: (M, C) float -> (M,) intp, the class of each row when every row is one-hot (a
    single 1, zeros elsewhere: class indices turned into distributions), else None.

    A product with 0..C-1 guesses each row's class; then every row must hold 1 there and
    t must hold M nonzero entries in all (counted on the bits: NaN, negative entries and
    -0.0 count), so each row holds that one 1 and nothing else. About 0.2 ms for 19,000
    rows of 10, against 1.4 ms for a loss that multiplies and sums the whole rows."""
    if t.ndim != 2 or t.dtype.kind != "f" or not t.shape[0]:
        return None
    m, c = t.shape
    with np.errstate(all="ignore"):
        guess = t @ np.arange(c, dtype=t.dtype)
    if not np.all(np.isfinite(guess)):
        return None
    k = guess.astype(np.intp)
    np.clip(k, 0, c - 1, out=k)
    bits = np.ascontiguousarray(t).view(f"i{t.dtype.itemsize}")
    if np.count_nonzero(bits) != m or not np.all(t[np.arange(m), k] == 1):
        return None
    return k


def tiled(target: np.ndarray, rows: int) -> np.ndarray:
    """target: (N, ...) -> (rows, ...), row r being target[r % N].

    The engine may evaluate P stacked copies of an N-example batch at once (rows = P*N,
    copy-major); each copy is compared with the same targets.
    """
    n = target.shape[0]
    if n == rows:
        return target
    if n and rows % n == 0:  # whole copies: one repeat, not a gather
        return np.tile(target, (rows // n,) + (1,) * (target.ndim - 1))
    return target[np.arange(rows) % n]


def times_tiled(target: np.ndarray, a: np.ndarray) -> np.ndarray:
    """target (N, ...) times a (M, ...), row r of a by target[r % N]: the product with
    ``tiled(target, M)``, bit for bit, without building the tiling when M is P*N (the
    target broadcast over the P copies)."""
    n, m = target.shape[0], a.shape[0]
    if n != m and n and m % n == 0:
        return (target * a.reshape(m // n, *target.shape)).reshape(a.shape)
    return tiled(target, m) * a
