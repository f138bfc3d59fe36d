"""function: a plain loss function from a plugin, cs231n style, with no glue code.

    loss(scores, y) -> (loss, dscores)

scores: (N, ...) the network's output for the whole batch, y: the target with the batch
axis first (integer labels as integers); loss: one number for the whole batch, dscores:
d(loss)/d(scores), shaped like scores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np

from ..protocol import FieldError, Loss, Shape, register_loss
from ..usercode import call, cannot_take, described, name_of, wrong_return


class FunctionLossCache(NamedTuple):
    dscores: np.ndarray  # (M, ...) what the function returned, scaled as ``losses`` are


@register_loss("function")
class FunctionLoss(Loss):
    """A plain function loss(scores, y) -> (loss, dscores) named in the config and
    defined in a plugin; one loss for the whole batch, which the function sums
    (``reduction: sum``) or averages (``reduction: mean``) over the examples itself.

    The loss is the function's value and dE/dscores its dscores, whichever reduction is
    written: the engine never divides again. The engine's protocol asks for one loss per
    example, and for ``mean`` it divides their sum by N; so each batch's loss is handed
    over as [L, 0, ..., 0] for ``sum`` and [N L, 0, ..., 0] (dscores times N) for
    ``mean``, and the engine's mean gives back L and dscores. Not per example: a copy of
    the batch is always passed whole (``per_example = False``), and the engine, which
    may stack P copies of the batch into one call, gets the function called once per
    copy (the batch size is the target's, recorded by ``prepare_target``).

    Integer labels (a target whose values are all whole numbers, cs231n's ``y``) reach
    the function as integers.
    """

    summary = (
        "a plain function loss(scores, y) -> (loss, dscores) from a plugin, one loss for "
        "the whole batch; reduction: what the function does over it (sum or mean)"
    )
    target_name = "target"
    per_example = False
    function_fields = ("function",)

    def __init__(
        self, function: Callable[..., Any], reduction: Literal["sum", "mean"] = "sum"
    ) -> None:
        problem = cannot_take(function, ["scores", "y"])
        if problem:
            raise FieldError("function", problem)
        self.function = function
        self.reduction = reduction
        #: N, the batch the function takes: the target's first axis (prepare_target)
        self.batch_size: int | None = None

    def prepare_target(self, target: np.ndarray, y_shape: Shape) -> np.ndarray:
        """Any shape with the batch axis first (the function decides what it takes);
        whole numbers become integers (class labels index arrays)."""
        self.batch_size = int(target.shape[0])
        if np.all(np.isfinite(target)) and np.all(target == np.round(target)):
            return target.astype(np.int64)
        return target

    def forward(self, y: np.ndarray, target: np.ndarray | None) -> tuple[np.ndarray, Any]:
        m = len(y)
        n = self.batch_size if self.batch_size and m % self.batch_size == 0 else m
        scale = n if self.reduction == "mean" else 1
        losses = np.zeros(m, dtype=y.dtype)
        grads = []
        for start in range(0, m, n):  # one call per copy of the batch
            part = None if target is None else target[start : start + n]
            value, dscores = self._call(y[start : start + n], part)
            losses[start] = value * scale
            grads.append(dscores * scale)
        return losses, FunctionLossCache(np.concatenate(grads))

    def backward(self, cache: FunctionLossCache) -> np.ndarray:
        return cache.dscores.copy()  # the engine may scale dy in place (reduction: mean)

    def _call(self, scores: np.ndarray, y: np.ndarray | None) -> tuple[float, np.ndarray]:
        fn = self.function
        name = name_of(fn)
        out = call(fn, scores, y)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise wrong_return(fn, f"{name} returned {described(out)}; expected (loss, dscores)")
        value, dscores = out
        if not isinstance(value, (int, float, np.number, np.ndarray)) or np.size(value) != 1:
            raise wrong_return(
                fn,
                f"{name} returned {described(value)} for the loss; expected one number for "
                f"the whole batch (reduction: {self.reduction} says how it combines the "
                "examples)",
            )
        if not isinstance(dscores, np.ndarray) or dscores.shape != scores.shape:
            got = (
                f"dscores of shape {list(dscores.shape)}"
                if isinstance(dscores, np.ndarray)
                else f"{described(dscores)} for dscores"
            )
            raise wrong_return(
                fn, f"{name} returned {got}, expected {list(scores.shape)} (the shape of scores)"
            )
        return float(np.asarray(value).reshape(())), dscores
