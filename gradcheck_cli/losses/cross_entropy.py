"""cross_entropy (on probabilities) and softmax_cross_entropy (on logits).

Both take ``target`` as a class index per example (turned into one-hot) or as a
distribution shaped like the network output.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..protocol import FieldError, Loss, LossDelta, Shape, register_loss, squeezed
from ._common import (
    FEW_COLUMNS,
    class_major_max,
    class_major_sums,
    class_max,
    class_sums,
    hot_classes,
    row_sums,
    tiled,
    times_tiled,
)


class _ClassTarget(Loss):
    """Shared target handling for the cross-entropy losses."""

    def prepare_target(self, target: np.ndarray, y_shape: Shape) -> np.ndarray:
        """target: (N,) class indices or (N, *y_shape) distribution -> (N, *y_shape).

        A distribution written without the output's size-1 axes is reshaped, as for
        every other loss.
        """
        y_shape = tuple(y_shape)
        if not y_shape:  # a single number per example: no classes to spread over
            raise FieldError(
                "target",
                "a cross-entropy needs a class axis, and the network output is a single "
                "number per example, shape []; end the network with a dense layer of "
                "out_features C (one per class), or use mse",
            )
        written = target.shape[1:]
        if written in ((), (1,)) and len(y_shape) == 1 and written != y_shape:
            return self._one_hot(target.reshape(target.shape[0]), y_shape[0])
        if written != y_shape and squeezed(written) == squeezed(y_shape):
            target = target.reshape(target.shape[0], *y_shape)
        if target.shape[1:] == y_shape:
            if np.any(target < 0):
                raise FieldError(
                    "target",
                    f"a distribution must not have negative entries, got {target.min():g}",
                )
            return target
        if written in ((), (1,)):
            raise FieldError(
                "target",
                f"a class index needs a flat network output (C,), but the output has shape "
                f"{list(y_shape)}; give a distribution shaped like the output instead",
            )
        raise FieldError(
            "target",
            f"must be a class index per example or a distribution shaped like the "
            f"network output {list(y_shape)}, got shape {list(written)}",
        )

    @staticmethod
    def _one_hot(k: np.ndarray, c: int) -> np.ndarray:
        """k: (N,) class indices -> (N, c) one-hot rows; FieldError naming the valid range."""
        bad = ~np.isfinite(k) | (k != np.round(k)) | (k < 0) | (k >= c)
        if np.any(bad):
            raise FieldError(
                "target",
                f"a class index must be an integer from 0 to {c - 1} (the output has {c} "
                f"classes), got {', '.join(f'{v:g}' for v in k[bad][:5])}",
            )
        dtype = k.dtype if np.issubdtype(k.dtype, np.floating) else np.float64
        onehot = np.zeros((len(k), c), dtype=dtype)
        onehot[np.arange(len(k)), k.astype(np.intp)] = 1.0
        return onehot


class CECache(NamedTuple):
    y: np.ndarray  # probabilities, (N, *shape)
    target: np.ndarray  # distribution, (N, *shape)


@register_loss("cross_entropy")
class CrossEntropy(_ClassTarget):
    """E_n = -sum(target_n * log(y_n)) on probabilities y (e.g. after softmax).

    y: (N, *shape), target: (N, *shape) -> losses: (N,); dE/dy = -target / y. Terms with
    target 0 count as 0 (0 * log 0 = 0); y must be > 0 wherever target > 0.
    """

    summary = "cross-entropy on probabilities, -sum(target * log y); target index or distribution"
    reads = "on probabilities, e.g. a softmax layer's output"

    def forward(self, y: np.ndarray, target: np.ndarray | None) -> tuple[np.ndarray, CECache]:
        t = tiled(target, len(y))
        used = t != 0
        with np.errstate(divide="ignore", invalid="ignore"):  # the engine reports NaN/Inf
            log_y = np.log(y, out=np.zeros_like(y), where=used)
        return -row_sums(t * log_y), CECache(y, t)

    def backward(self, cache: CECache) -> np.ndarray:
        t = cache.target
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.divide(-t, cache.y, out=np.zeros_like(cache.y), where=t != 0)

    def derive(self, y: np.ndarray, target: np.ndarray | None) -> LossDelta:
        """dE/dp = -y / p on the probabilities p; after a softmax layer, whose input z
        gives p = softmax(z), the two together come to p - y (p * s - y when the target
        sums to s over the classes instead of 1)."""
        t = tiled(target, len(y))
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.divide(-t, y, out=np.zeros_like(y), where=t != 0)
        return LossDelta(
            "dE/dp = -y / p   (p = the network output, probabilities; y = the target; "
            "0 where y is 0)",
            "-y / p",
            (("y", t), ("p", y)),
            value,
            after_softmax=softmax_delta(y, t, "p = the softmax's output"),
        )

    def input_warning(self, y: np.ndarray, target: np.ndarray | None) -> str | None:
        """Logits where probabilities belong: values outside [0, 1], or an example whose
        target is one distribution (a class index, or entries summing to 1) but whose
        values do not sum to 1."""
        if target is None:
            return None
        t = tiled(target, len(y)).astype(np.float64)
        found = []
        if np.any(y < 0) or np.any(y > 1):
            found.append(f"has values from {y.min():.4g} to {y.max():.4g}, outside [0, 1]")
        sums = row_sums(y.astype(np.float64))
        tol = np.sqrt(np.finfo(y.dtype).eps) * y[0].size
        one = np.abs(row_sums(t) - 1) <= tol
        off = np.flatnonzero(one & (np.abs(sums - 1) > tol))
        if off.size:
            k = int(off[0])
            found.append(f"sums to {sums[k]:.4g} in example {k}, not 1")
        if not found:
            return None
        return (
            "cross_entropy takes probabilities (a softmax layer's output), but the network "
            f"output {', and '.join(found)}: if these are logits, use "
            "softmax_cross_entropy (on logits) or add a softmax layer"
        )


class SCECache(NamedTuple):
    logits: np.ndarray  # the forward's input itself, (M, C, ...): backward reworks from it
    target: np.ndarray  # distribution, (M, C, ...) or its N rows (M = P*N: ``tiled``)


@register_loss("softmax_cross_entropy")
class SoftmaxCrossEntropy(_ClassTarget):
    """E_n = -sum(target_n * log_softmax(z_n)) on logits z, softmax over axis 1.

    z: (N, C, *rest), target: (N, C, *rest) -> losses: (N,). Uses a stable log-sum-exp;
    dE/dz = softmax(z) * sum_c(target) - target (= softmax(z) - target for a distribution).
    """

    summary = "softmax + cross-entropy on logits (stable log-sum-exp); target index or distribution"
    reads = "on logits, applying the softmax itself: no softmax layer before it"

    tiles_target = True

    def forward(self, y: np.ndarray, target: np.ndarray | None) -> tuple[np.ndarray, SCECache]:
        # What backward reads is made there, from the logits, not here: the numeric
        # check calls forward on thousands of copies and never backward.
        cache = SCECache(y, target)
        if y.ndim == 2 and y.dtype.kind == "f" and 1 < y.shape[1] <= FEW_COLUMNS:
            # one-hot rows are found on the target's own N rows, then repeated for the
            # P*N rows of stacked copies (``tiles_target``): not looked for P times
            hot = None if target is None else hot_classes(target)
            if hot is not None:
                return _picked(y, target, tiled(hot, len(y))), cache
        shifted, log_sums = _log_softmax_parts(y)
        return -row_sums(times_tiled(target, shifted - log_sums)), cache

    def rounding_terms(self, y: np.ndarray, target: np.ndarray | None) -> float:
        """Each example's log of sum(exp(z - max z)), a sum of at least 1, rounds to about
        an epsilon times the target's mass there, however small the loss: saturated
        logits (a loss of 1e-13) move it in steps of 2e-16, which a step moving the
        loss by less never crosses."""
        return 0.0 if target is None else float(np.abs(tiled(target, len(y))).sum())

    def backward(self, cache: SCECache) -> np.ndarray:
        t = tiled(cache.target, len(cache.logits))
        shifted, log_sums = _log_softmax_parts(cache.logits)  # the forward's, bit for bit
        return np.exp(shifted - log_sums) * t.sum(axis=1, keepdims=True) - t

    def derive(self, y: np.ndarray, target: np.ndarray | None) -> LossDelta:
        """dE/dz = p - y with p = softmax(z) over axis 1 (p * s - y for a target that
        sums to s over the classes)."""
        t = tiled(target, len(y))
        shifted = y - y.max(axis=1, keepdims=True)
        p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        return softmax_delta(p, t, "p = softmax(z), z = the network output (logits)")


def _log_softmax_parts(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y: (M, C, ...) -> (shifted, log_sums): y less its maximum over axis 1, (M, C, ...),
    and the log of sum(exp(shifted)) over axis 1, (M, 1, ...); log_softmax(y) is their
    difference. ``_picked`` gets the same numbers class-major."""
    shifted = y - class_max(y)
    return shifted, np.log(class_sums(np.exp(shifted)))


#: ``_picked`` works through this many bytes of logits at a time: a block's class-major
#: copy and the arrays made from it stay in the core's cache (the batch-8 MLP's 3,200
#: copies of 8 examples, up to 50,000 rows of 10 logits a call: 5,000 elements of its
#: fc1.weight judged in 34.8 ms instead of 41.4, medians of 6 x 15).
PICK_BLOCK_BYTES = 512 << 10


def _picked(y: np.ndarray, t: np.ndarray, hot: np.ndarray) -> np.ndarray:
    """The losses (M,) of logits y (M, C) against one-hot targets t (M, C, or its N rows
    for M = P*N stacked copies: ``tiled``) whose classes are hot (M,), bit for bit what
    the sum over each row gives (its other terms are zeros; the sum's starting 0 turns
    -0.0 into 0.0): one log-probability picked per row, computed class-major, (C, B),
    where every step runs over long contiguous rows instead of B rows of C (the batch-8
    MLP's 19,000 copies of 10 logits: 0.7 ms against 1.4), on a block of B rows at a
    time (PICK_BLOCK_BYTES; a row's values depend on that row alone, so the blocks
    change no number). y is never written to."""
    m, c = y.shape
    picked = np.empty(m, dtype=np.result_type(y, t))
    block = max(1, PICK_BLOCK_BYTES // (c * y.itemsize))
    for start in range(0, m, block):
        stop = min(start + block, m)
        z = y[start:stop].T.copy()  # (C, B)
        z -= class_major_max(z)
        log_sums = np.log(class_major_sums(np.exp(z)))
        picked[start:stop] = z[hot[start:stop], np.arange(stop - start)] - log_sums
    picked += 0.0
    return -picked


def softmax_delta(p: np.ndarray, t: np.ndarray, what: str) -> LossDelta:
    """The delta at the logits z of p = softmax(z) under a cross-entropy with target t:
    p - t, or p * s - t where the target's classes sum to s, not 1."""
    s = t.sum(axis=1, keepdims=True)
    if np.allclose(s, 1.0):
        return LossDelta(
            f"dE/dz = p - y   ({what}; y = the target)", "p - y", (("p", p), ("y", t)), p - t
        )
    sums = np.broadcast_to(s, p.shape)
    return LossDelta(
        f"dE/dz = p * s - y   ({what}; y = the target, s = its sum over the classes)",
        "p * s - y",
        (("p", p), ("s", sums), ("y", t)),
        p * sums - t,
    )
