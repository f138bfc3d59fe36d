"""The loss's part of ``explain`` and the ``--lr`` step (pure data).

- the network output's delta from the loss's own rule (``Loss.derive``): softmax
  cross-entropy as ``dE/dz = p - y``, mse as ``y - t``, cross-entropy on probabilities
  as ``-y / p``, entry by entry with the numbers, each compared with what the loss's
  backward gave (divided by N for ``reduction: mean``);
- after a softmax layer, a cross-entropy on probabilities gives the softmax's input the
  delta ``p - y`` (``LossDelta.after_softmax``): shown at the softmax, compared with
  what its backward sent;
- ``--lr``: one gradient-descent step ``w - lr * dE/dw`` of every parameter, with the
  whole batch's gradient, as the classic worked answers end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import protocol
from ..problem import Problem
from .passes import Gradients, Trace
from .sums import Listing


@dataclass
class DeltaEntry:
    """One entry of a loss's delta: its index (per example), the values of the
    expression's names there, what the expression gives (divided by N for a mean) and
    what the loss's backward gave."""

    index: tuple[int, ...]
    values: dict[str, float]
    value: float
    actual: float
    slack: float = 0.0

    @property
    def agrees(self) -> bool:
        return abs(self.value - self.actual) <= self.slack


@dataclass
class LossDerivation:
    """A delta derived from the loss's own rule (``protocol.LossDelta``) for example k:
    ``formula`` in words, ``expression`` over ``names``, written out for the chosen
    ``entries`` (of ``size``); ``divisor``: N when the loss is averaged over the batch;
    ``key``: the value it is the delta of (``--entry``)."""

    formula: str
    expression: str
    names: tuple[str, ...]
    entries: list[DeltaEntry]
    size: int
    divisor: int = 1
    key: str = ""
    title: str = ""

    @property
    def agrees(self) -> bool:
        return all(e.agrees for e in self.entries)


@dataclass
class Descent:
    """One gradient-descent step of a parameter: value, gradient (the whole batch's)
    and value - lr * gradient, in the shape the user wrote; ``entries``: flat positions
    written out one by one."""

    name: str
    value: np.ndarray
    grad: np.ndarray
    updated: np.ndarray
    entries: list[int] = field(default_factory=list)


@dataclass
class DescentStep:
    """``--lr``: w - lr * dE/dw for every parameter (shared ones once, by their owner)."""

    lr: float
    params: list[Descent]
    reduction: str = "sum"
    batch_size: int = 1


def loss_delta(
    problem: Problem, trace: Trace, grads: Gradients, k: int, listing: Listing
) -> LossDerivation | None:
    """The network output's delta for example k by the loss's rule; None when the loss
    declares none (a function loss, a plugin's)."""
    told = _derived(problem, trace)
    if told is None:
        return None
    actual = grads.deltas[trace.output][k]
    title = f"the network output's delta, by {problem.loss.type}'s own rule"
    return _derivation(told, actual, problem, k, trace.output, listing, title)


def after_softmax(
    problem: Problem, trace: Trace, grads: Gradients, k: int, listing: Listing
) -> LossDerivation | None:
    """At a softmax layer (``SoftmaxNote``) that is the network output, the delta of its
    input as the loss says it comes to (cross-entropy: p - y); None otherwise."""
    node = problem.network.node(problem.network.output)
    if not isinstance(getattr(node.layer, "derivation", None), protocol.SoftmaxNote):
        return None
    told = _derived(problem, trace)
    if told is None or told.after_softmax is None or len(node.inputs) != 1:
        return None
    actual = grads.contributions[(node.name, 0)][k]  # what the softmax's backward sent
    title = (
        f"softmax followed by {problem.loss.type}: together they give the softmax's input "
        "the delta p - y (the softmax's Jacobian and -y/p cancel)"
    )
    return _derivation(told.after_softmax, actual, problem, k, node.inputs[0], listing, title)


def _derived(problem: Problem, trace: Trace) -> protocol.LossDelta | None:
    try:
        return problem.loss.loss.derive(trace.values[trace.output], problem.loss.target)
    except Exception:  # a plugin's explanation is no reason to stop explaining
        return None


def _derivation(
    told: protocol.LossDelta,
    actual: np.ndarray,
    problem: Problem,
    k: int,
    key: str,
    listing: Listing,
    title: str,
) -> LossDerivation:
    divisor = problem.batch_size if problem.loss.reduction == "mean" else 1
    value = np.asarray(told.value, dtype=np.float64)[k] / divisor
    parts = {name: np.asarray(a, dtype=np.float64)[k] for name, a in told.parts}
    eps = float(np.finfo(actual.dtype).eps) if actual.dtype.kind == "f" else 0.0
    entries = []
    for flat in listing.chosen(key, value.size):
        ix = tuple(int(i) for i in np.unravel_index(flat, value.shape)) if value.ndim else ()
        values = {name: float(a[ix]) for name, a in parts.items()}
        v, a = float(value[ix]), float(actual[ix])
        scale = max([abs(v), abs(a), *(abs(x) for x in values.values())])
        entries.append(DeltaEntry(ix, values, v, a, 64 * eps * scale + 1e-300))
    return LossDerivation(
        told.formula,
        told.expression,
        tuple(name for name, _ in told.parts),
        entries,
        int(value.size),
        divisor,
        key,
        title,
    )


def descent(
    problem: Problem, params: dict, grads: Gradients, lr: float, listing: Listing
) -> DescentStep:
    """``w - lr * dE/dw`` for every parameter, in the shape the user wrote it; the
    gradient is the whole batch's (shared parameters: the sum over every use)."""
    found = []
    for node in problem.network:
        if node.share is not None:
            continue
        for p, value in params[node.name].items():
            shape = node.user_shapes.get(p, value.shape)
            w = np.asarray(value, dtype=np.float64).reshape(shape)
            g = np.asarray(grads.params[node.name][p], dtype=np.float64).reshape(shape)
            name = f"{node.name}.{p}"
            found.append(Descent(name, w, g, w - lr * g, listing.chosen(name, w.size)))
    return DescentStep(lr, found, problem.loss.reduction, problem.batch_size)
