"""The shift test: a layer's dx at ties, judged jointly along the tied elements.

An element-wise check judges each input element alone. At a tie (a max-pool window of
equal values: zeros after a ReLU, copies after an upsample) each tied element's one-sided
slopes are 0 and the window's delta, and any dx between them is a valid subgradient of
that element alone, so a kink passes. But the tied elements are not free one by one: a
valid subgradient of a window's max has components summing to one, so their dx sum to
the window's delta. cs231n's ``max_pool_backward`` built from ``mask = (x == max)``
routes the delta to every tied element: each element alone lies within its one-sided
slopes, while together they carry k times the delta. Upsampled by 2 and pooled back,
the network is the identity and its gradient was 4 times too large, yet the run passed
with "4 kinks" (found by a hunt on cs231n-style layers).

So where an isolated layer's input check met kinks, its kink elements and every element
equal in value to one (their ties) are moved together, u = 1 / sqrt(K) on each of those
K (``_direction``), with the
random-direction test of engine/fast.py: the slope of E = sum(delta * y) along u
against dx . u. A max of tied elements moves smoothly along u, and a dx whose sum is
wrong fails there. Where an output does kink along u (a ReLU at exactly 0), each
output's one-sided slopes along u give the most a valid choice of subgradients can move
dx . u: ``ambiguity`` = sum_k |delta_k| |R_k - L_k|, and only an error beyond the test's
tolerance plus twice that fails. The test says nothing where E itself has two slopes
along u at the point (``_one_slope``), and a failure counts only where the kinks
interact (``coupled``): separate kinks leave each element its own interval.

What it assumes: each output's subgradients project onto u within its one-sided slopes
along u, true for a max or min of the inputs, any smooth output and their sums with
the delta's weights; a single output that is a difference of kinks in different inputs
(|x1| - |x2| at 0, along (1, 1)) is not such a function, and a backward mixing two
tie-break conventions there could fail it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import PluginError
from . import domain, numeric
from .fast import STEP_FACTOR, analytic_eps, directional_test
from .objective import LayerObjective, LossObjective
from .passes import loss_forward, node_forward

#: An error must exceed the test's tolerance plus this many times the ambiguity ...
AMBIGUITY_SAFETY = 2.0
#: ... plus this many epsilons (of the analytic side's dtype) of the terms dx . u sums.
ANALYTIC_ULPS = 64.0
#: Kinks interact when the slope along u and the sum of the elements' own one-sided
#: slopes differ by more than this fraction of their size (plus the test's tolerance).
COUPLING_TOL = 1e-3


@dataclass(frozen=True)
class ShiftResult:
    """The shift test of one input of an isolated layer, in slope units along u.

    analytic: dx . u; numeric: the slope of E along u; tolerance: the directional test's,
    plus AMBIGUITY_SAFETY times the ambiguity the outputs' kinks along u allow."""

    analytic: float
    numeric: float
    tolerance: float

    @property
    def failed(self) -> bool:
        return abs(self.analytic - self.numeric) > self.tolerance

    def diagnosis(self) -> str:
        """What it means, for the layer's diagnosis."""
        ratio = self.analytic / self.numeric if self.numeric else math.inf
        times = f"{ratio:.3g} times " if math.isfinite(ratio) and ratio > 0 else ""
        return (
            f"dx sums to {times}what moving the tied inputs together gives "
            f"({self.analytic:.6g} against {self.numeric:.6g} along u = 1/sqrt(K) on each of "
            "the K tied inputs), though each tied element alone "
            "sat between its one-sided slopes: a gradient routed to every tied maximum "
            "instead of one?"
        )


def shift_test(
    obj, tensor: str, eps: float, problem, kinks: np.ndarray | None = None, max_memory: int = 0
) -> ShiftResult | None:
    """The shift test of input ``tensor`` of an isolated layer (a slot name of a
    LayerObjective) or of the loss alone (a LossObjective's ``input``); None where it
    says nothing: not an input, no elements, no smooth step along u, or (a failure,
    with ``kinks``, the flat positions of the elements the element-wise check called
    kinks) kinks that do not interact (``coupled``)."""
    outputs = _outputs(obj, tensor)
    if outputs is None:
        return None
    x = obj.tensors()[tensor]
    if x.size == 0:
        return None
    u = _direction(x, kinks)
    d = directional_test(obj, {tensor: u}, eps, analytic_eps(problem), _start(x, u, kinks, eps))
    if not d.smooth or not _one_slope(obj, tensor, x, u, d):
        return None
    spread, size = ambiguity(outputs, x, u, d.step)
    # dx . u is a sum of the weights' terms, however much they cancel: a max pool adds
    # two windows' deltas into one shared element, each rounded (a layer norm's deltas
    # sum to 0 and dx . u came out -1.4e-17 against a slope of 5e-30: a fresh draw)
    rounding = ANALYTIC_ULPS * analytic_eps(problem) * size
    slack = AMBIGUITY_SAFETY * spread + rounding
    found = ShiftResult(d.analytic, d.analytic + d.error, d.tolerance + slack)
    if found.failed and kinks is not None and not coupled(obj, tensor, u, kinks, d, max_memory):
        return None
    return found


def _direction(x: np.ndarray, kinks: np.ndarray | None) -> np.ndarray:
    """u: the kink elements and every element equal in value to one moved together
    (1 / sqrt(K) on each of those K, 0 elsewhere), or every element when the kinks are
    not given. Not every element: moving the elements that are
    no kink of their own too can join a kink of another kind to them (a clamp at its
    upper bound, all tied, beside a max of tied zeros in one output: the two cancel
    along all-ones, where a valid dx of 0 failed; found by a hunt)."""
    if kinks is None or not len(kinks):
        u = np.ones(x.size)
    else:
        # every element equal to a kink's value: a tied maximum whose analytic value is
        # the central difference (half the delta) passes at its first step and is no
        # kink, yet must move with the rest of its tie (found by the same hunt)
        flat = x.reshape(-1)
        u = np.isin(flat, flat[np.asarray(kinks, dtype=np.intp)]).astype(np.float64)
    return (u / math.sqrt(float(u.sum()))).reshape(x.shape)


def _start(x: np.ndarray, u: np.ndarray, kinks: np.ndarray | None, eps: float) -> float | None:
    """The first step along u that moves each element by STEP_FACTOR eps times the
    smallest nonzero |value| at a kink, when that is below the usual step: a step of the
    tensor's scale carried two tied maxima of 1e-7 past a log's domain, and the test
    said nothing (found by a hunt)."""
    if kinks is None or not len(kinks):
        return None
    at = np.abs(x.reshape(-1)[np.asarray(kinks, dtype=np.intp)].astype(np.float64))
    at = at[np.isfinite(at) & (at > 0)]
    if not len(at):
        return None
    return STEP_FACTOR * eps * float(at.min()) * math.sqrt(float(np.count_nonzero(u)))


def _one_slope(obj, tensor: str, x: np.ndarray, u: np.ndarray, d) -> bool:
    """E has one slope along u at x: its one-sided slopes at the test's step agree
    within the test's tolerance (and COUPLING_TOL of their size). A kink exactly at x
    gives central differences of one value at every step, which the directional test
    takes for smooth (ReLU6 inputs at 0 and at 6 into a global average pool: the right
    slope counts the zeros, the left one the sixes; found by a hunt)."""
    s = d.step
    up = domain.loss_at(obj, {tensor: x + s * u})
    down = domain.loss_at(obj, {tensor: x - s * u})
    right, left = (up - obj.f0) / s, (obj.f0 - down) / s
    if not (math.isfinite(right) and math.isfinite(left)):
        return False
    return abs(right - left) <= d.tolerance + COUPLING_TOL * (abs(right) + abs(left))


def coupled(obj, tensor: str, u: np.ndarray, kinks: np.ndarray, d, max_memory: int) -> bool:
    """Whether the kinks interact along u: the slope along u differs from the sum of
    each element's own one-sided slopes along it (u >= 0: right slopes for +u, left
    slopes for -u), where each element that is no kink counts its numeric slope.

    Tied maxima interact (each tied element alone raises a max by its full move, all
    together by one move: a window's delta counted k times), and so do the margins of a
    hinge loss; separate kinks do not. Separate kinks leave each element its own
    interval of valid values, and dx . u can lie anywhere in their sum: a clamp to
    [0, 1] of inputs at 0 and at 1 summed into one output moves smoothly along u (one
    kink rises as the other falls), and a backward taking 0 at both bounds, as torch's
    hardtanh does, is right there (found by a hunt on the shift test)."""
    x = obj.tensors()[tensor]
    flat = x.reshape(-1).astype(np.float64)
    index = np.asarray(kinks, dtype=np.intp)
    if not len(index):
        return False
    h = numeric.element_steps(flat[index], numeric.step_scale(flat), 1e-6)
    e = numeric.evaluate(obj, tensor, index, np.stack([h, -h], axis=1), max_memory or 2**28)
    with np.errstate(all="ignore"):
        right = (e.f[:, 0] - e.f0) / e.offsets[:, 0]
        left = (e.f0 - e.f[:, 1]) / -e.offsets[:, 1]
    weights = u.reshape(-1)[index]
    # the rest move smoothly: dx . u over them, as their checks passed
    rest = d.analytic - float(
        np.dot(np.asarray(obj.analytic[tensor], float).reshape(-1)[index], weights)
    )
    summed = (rest + float(np.dot(right, weights)), rest + float(np.dot(left, weights)))
    slope = d.analytic + d.error
    scale = float(np.abs(weights * right).sum() + np.abs(weights * left).sum()) + abs(slope)
    room = d.tolerance + COUPLING_TOL * scale
    return not all(np.isfinite(summed)) or any(abs(slope - s) > room for s in summed)


def _outputs(obj, tensor: str):
    """(outputs, weights): outputs(x) gives what E weighs, each (M,) or (N, *out) array,
    for the input ``tensor`` moved to x; weights, the same shape: E = sum(weights *
    outputs). A layer's outputs under its delta; the loss's per-example losses under the
    reduction's weights (1, or 1/N for a mean). None for any other tensor."""
    if isinstance(obj, LayerObjective):
        slot = obj.slots().get(tensor)
        if slot is None:
            return None

        def layer(x: np.ndarray) -> np.ndarray:
            xs = list(obj.xs)
            xs[slot] = x
            return node_forward(obj.node, xs, obj.params)[0]

        return layer, obj.delta
    if isinstance(obj, LossObjective) and tensor == "input":
        spec, n = obj.problem.loss, obj.x.shape[0]

        def loss(x: np.ndarray) -> np.ndarray:
            return np.asarray(loss_forward(spec, x, obj.target)[0])

        scale = 1.0 / n if spec.reduction == "mean" else 1.0
        return loss, np.full(n, scale)
    return None


def ambiguity(outputs, x: np.ndarray, u: np.ndarray, step: float) -> tuple[float, float]:
    """(sum_k |w_k| |R_k - L_k|, sum_k |w_k| (|R_k| + |L_k|) / 2): how far apart valid
    subgradients can put dx . u, and the size of the terms it sums, from each output's
    one-sided slopes along u at ``step`` (R_k = (y_k(x + s u) - y_k(x)) / s, L_k likewise
    on the left; outputs: ``_outputs``). Infinite when not finite."""
    forward, weights = outputs
    with np.errstate(all="ignore"):
        # new arrays: a layer may keep what it is handed
        try:
            up, down, y0 = forward(x + step * u), forward(x - step * u), forward(x.copy())
        except PluginError as exc:  # past the forward's domain: nothing to say
            if not domain.left_domain(exc):
                raise
            return math.inf, math.inf
        right, left = np.abs(weights * (up - y0)), np.abs(weights * (y0 - down))
        gap = float(np.abs(weights * ((up - y0) - (y0 - down))).sum()) / step
        size = float((right + left).sum()) / (2 * step)
    return tuple(v if math.isfinite(v) else math.inf for v in (gap, size))


__all__ = ["ShiftResult", "ambiguity", "shift_test"]
