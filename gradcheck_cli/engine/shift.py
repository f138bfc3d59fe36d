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
from .fast import FLOOR_ULPS, STEP_FACTOR, analytic_eps, directional_test
from .numeric import EPS64
from .objective import LayerObjective, LossObjective
from .passes import loss_forward, node_forward

#: An error must exceed the test's tolerance plus this many times the ambiguity ...
AMBIGUITY_SAFETY = 2.0
#: ... plus this many epsilons (of the analytic side's dtype) of the terms dx . u sums.
ANALYTIC_ULPS = 64.0
#: At most this many groups of tied values are moved one by one (``_smooth_groups``).
MAX_GROUPS = 256
#: E has one slope along u when its one-sided slopes differ by at most this fraction of
#: their size (plus the test's tolerance).
COUPLING_TOL = 1e-3
#: Kinks interact when the slope along u and the sum of the elements' own one-sided
#: slopes differ by more than the test's tolerance plus this many times those slopes'
#: own error (their change from step h to 2h, and their rounding) ...
SLOPE_SAFETY = 4.0
#: ... plus this fraction of the size of the terms summed.
COUPLING_REL = 1e-6


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
    """The shift test of tensor ``tensor`` of an isolated layer (an input slot's name or
    ``<layer>.<param>``: ties inside a weight row a layer takes the max of) or of the
    loss alone (a LossObjective's ``input``); None where it
    says nothing: not an input, no elements, no smooth step along u, or (a failure,
    with ``kinks``, the flat positions of the elements the element-wise check called
    kinks) kinks that do not interact (``coupled``)."""
    return joint_shift_test(obj, {tensor: kinks}, eps, problem, max_memory)


def joint_shift_test(
    obj, kinks: dict[str, np.ndarray | None], eps: float, problem, max_memory: int = 0
) -> ShiftResult | None:
    """The shift test of several tensors of one isolated layer moved together (its inputs
    and parameters: a clip whose learned bound ties with an input is one tie too):
    ``kinks`` holds, for each tensor, the flat positions of its elements the
    element-wise check called kinks (None: move every element). Ties across inputs
    move together: an element-wise max of two equal inputs is one tie, each input
    alone at a kink, and a backward routing the delta to both sums to twice it
    (``_direction``). One input: ``shift_test``."""
    outputs = _outputs(obj, list(kinks))
    if outputs is None:
        return None
    xs = {t: obj.tensors()[t] for t in kinks}
    if any(x.size == 0 for x in xs.values()):
        return None
    u = _direction(xs, kinks)
    if u is None or (len(u) > 1 and sum(bool(v.any()) for v in u.values()) < 2):
        return None  # several inputs of which one moves: that input's own test
    start = _start(xs, u, kinks, eps)
    d = directional_test(obj, u, eps, analytic_eps(problem), start)
    if not d.smooth or not _one_slope(obj, xs, u, d):
        # a group of ties that kinks along u on its own (a fused ReLU's zeros, a
        # padding's 0) gives E two slopes and silenced the test for every other tie of
        # the layer (found by a hunt): once more without such groups
        u = _smooth_groups(obj, xs, u, d.step if start is None else min(start, d.step))
        if u is None:
            return None
        d = directional_test(obj, u, eps, analytic_eps(problem), start)
        if not d.smooth or not _one_slope(obj, xs, u, d):
            return None
    spread, size = ambiguity(outputs, xs, u, d.step)
    # dx . u is a sum of the weights' terms, however much they cancel: a max pool adds
    # two windows' deltas into one shared element, each rounded (a layer norm's deltas
    # sum to 0 and dx . u came out -1.4e-17 against a slope of 5e-30: a fresh draw)
    rounding = ANALYTIC_ULPS * analytic_eps(problem) * size
    slack = AMBIGUITY_SAFETY * spread + rounding
    found = ShiftResult(d.analytic, d.analytic + d.error, d.tolerance + slack)
    given = {t: k for t, k in kinks.items() if k is not None}
    if found.failed and given and not coupled(obj, u, given, d, max_memory):
        return None
    return found


def _smooth_groups(
    obj, xs: dict[str, np.ndarray], u: dict[str, np.ndarray], step: float
) -> dict[str, np.ndarray] | None:
    """u without the groups of moved elements (elements of one value, in any input) along
    which E has two slopes on their own at ``step``; None when none or all are such, or
    when there are more than MAX_GROUPS groups. Each group is moved alone, up and down:
    2 evaluations of the layer per group."""
    moved = {t: u[t].reshape(-1) != 0 for t in u}
    flats = {t: np.asarray(x, dtype=np.float64).reshape(-1) for t, x in xs.items()}
    values = np.unique(np.concatenate([flats[t][moved[t]] for t in u]))
    if not 1 < len(values) <= MAX_GROUPS or not step > 0:
        return None
    floor = 4 * FLOOR_ULPS * EPS64 * max(abs(float(obj.f0)), numeric.magnitude(obj)) / step
    keep = []
    for value in values:
        group = {t: np.where(moved[t] & (flats[t] == value), u[t].reshape(-1), 0.0) for t in u}
        group = {t: g.reshape(xs[t].shape) for t, g in group.items()}
        right, left = _sides(obj, xs, group, step)
        if not (math.isfinite(right) and math.isfinite(left)):
            continue
        if abs(right - left) <= floor + COUPLING_TOL * (abs(right) + abs(left)):
            keep.append(value)
    if not keep or len(keep) == len(values):
        return None
    kept = {t: np.where(moved[t] & np.isin(flats[t], keep), 1.0, 0.0) for t in u}
    if sum(bool(v.any()) for v in kept.values()) < min(2, len(u)):
        return None  # several inputs of which one still moves: that input's own test
    return _unit(kept, xs)


def _unit(weights: dict[str, np.ndarray], xs: dict[str, np.ndarray]) -> dict | None:
    """Flat 0/1 ``weights`` per tensor as a unit direction in the tensors' shapes
    (1 / sqrt(K) on each of the K ones); None when there is no one."""
    total = sum(float(v.sum()) for v in weights.values())
    if total == 0:
        return None
    return {t: (v / math.sqrt(total)).reshape(xs[t].shape) for t, v in weights.items()}


def ties_across(xs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """For each input, the flat positions of its elements equal in value to an element of
    another input: where inputs tie (an element-wise max of two equal inputs, zeros on
    both sides), which each input's own checks cannot see, as each input alone sits at
    a kink there and its one-sided slopes take any value between."""
    flats = {t: np.asarray(x, dtype=np.float64).reshape(-1) for t, x in xs.items()}
    out = {}
    for t, flat in flats.items():
        others = [f for o, f in flats.items() if o != t]
        found = np.isin(flat, np.concatenate(others)) if others else np.zeros(flat.size, bool)
        out[t] = np.flatnonzero(found)
    return out


def _direction(
    xs: dict[str, np.ndarray], kinks: dict[str, np.ndarray | None]
) -> dict[str, np.ndarray] | None:
    """u: the kink elements and every element equal in value to one, in any of the
    inputs, moved together (1 / sqrt(K) on each of those K, 0 elsewhere), or every
    element of an input whose kinks are not given. Not every element: moving the
    elements that are no kink of their own too can join a kink of another kind to them
    (a clamp at its upper bound, all tied, beside a max of tied zeros in one output:
    the two cancel along all-ones, where a valid dx of 0 failed; found by a hunt).
    None when nothing moves."""
    # every element equal to a kink's value: a tied maximum whose analytic value is the
    # central difference (half the delta) passes at its first step and is no kink, yet
    # must move with the rest of its tie (found by the same hunt)
    values = [
        x.reshape(-1)[np.asarray(kinks[t], dtype=np.intp)]
        for t, x in xs.items()
        if kinks[t] is not None
    ]
    tied = np.concatenate(values) if values else np.zeros(0)
    u = {
        t: (np.ones(x.size) if kinks[t] is None else np.isin(x.reshape(-1), tied).astype(float))
        for t, x in xs.items()
    }
    return _unit(u, xs)


def _start(
    xs: dict[str, np.ndarray], u: dict[str, np.ndarray], kinks: dict, eps: float
) -> float | None:
    """The first step along u that moves each element by STEP_FACTOR eps times the
    smallest nonzero |value| at a kink, when that is below the usual step: a step of the
    tensor's scale carried two tied maxima of 1e-7 past a log's domain, and the test
    said nothing (found by a hunt)."""
    given = [
        np.abs(x.reshape(-1)[np.asarray(kinks[t], dtype=np.intp)].astype(np.float64))
        for t, x in xs.items()
        if kinks[t] is not None and len(kinks[t])
    ]
    if not given:
        return None
    at = np.concatenate(given)
    at = at[np.isfinite(at) & (at > 0)]
    if not len(at):
        return None
    moved = sum(np.count_nonzero(v) for v in u.values())
    return STEP_FACTOR * eps * float(at.min()) * math.sqrt(float(moved))


def _moved(xs: dict[str, np.ndarray], u: dict[str, np.ndarray], step: float) -> dict:
    """Each input moved by ``step`` along its part of u (new arrays)."""
    return {t: x + step * u[t] for t, x in xs.items()}


def _one_slope(obj, xs: dict[str, np.ndarray], u: dict[str, np.ndarray], d) -> bool:
    """E has one slope along u at x: its one-sided slopes at the test's step agree
    within the test's tolerance (and COUPLING_TOL of their size). A kink exactly at x
    gives central differences of one value at every step, which the directional test
    takes for smooth (ReLU6 inputs at 0 and at 6 into a global average pool: the right
    slope counts the zeros, the left one the sixes; found by a hunt)."""
    right, left = _sides(obj, xs, u, d.step)
    if not (math.isfinite(right) and math.isfinite(left)):
        return False
    return abs(right - left) <= d.tolerance + COUPLING_TOL * (abs(right) + abs(left))


def _sides(obj, xs: dict[str, np.ndarray], u: dict[str, np.ndarray], step: float):
    """(right, left): E's one-sided slopes along u at ``step`` (NaN past the forward's
    domain)."""
    up = domain.loss_at(obj, _moved(xs, u, step))
    down = domain.loss_at(obj, _moved(xs, u, -step))
    return (up - obj.f0) / step, (obj.f0 - down) / step


def coupled(
    obj, u: dict[str, np.ndarray], kinks: dict[str, np.ndarray], d, max_memory: int
) -> bool:
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
    rest, right_sum, left_sum, size, error, met = d.analytic, 0.0, 0.0, 0.0, 0.0, False
    for tensor, kink in kinks.items():
        index = np.asarray(kink, dtype=np.intp)
        if not len(index):
            continue
        met = True
        flat = obj.tensors()[tensor].reshape(-1).astype(np.float64)
        h = numeric.element_steps(flat[index], numeric.step_scale(flat), 1e-6)
        offsets = np.stack([h, -h, 2 * h, -2 * h], axis=1)
        e = numeric.evaluate(obj, tensor, index, offsets, max_memory or 2**28)
        with np.errstate(all="ignore"):
            slopes = (e.f - e.f0) / e.offsets  # right, left, right at 2h, left at 2h
            rounding = 4 * EPS64 * (np.abs(e.f) + abs(e.f0)) / np.abs(e.offsets)
        right, left = slopes[:, 0], slopes[:, 1]
        weights = u[tensor].reshape(-1)[index]
        # each one-sided slope's own error: its change from h to 2h (the step's first
        # order term), and rounding; where another kink lies within 2h it is large, and
        # the kinks are taken for separate
        own = np.abs(slopes[:, 2:] - slopes[:, :2]) + rounding[:, :2] + rounding[:, 2:]
        # the rest move smoothly: dx . u over them, as their checks passed
        analytic = np.asarray(obj.analytic[tensor], float).reshape(-1)[index]
        rest -= float(np.dot(analytic, weights))
        right_sum += float(np.dot(right, weights))
        left_sum += float(np.dot(left, weights))
        size += float(np.abs(weights * right).sum() + np.abs(weights * left).sum())
        error += float((np.abs(weights)[:, None] * own).sum())
    if not met:  # no kink element at all
        return False
    summed = (rest + right_sum, rest + left_sum)
    slope = d.analytic + d.error
    room = d.tolerance + SLOPE_SAFETY * error + COUPLING_REL * (size + abs(slope))
    if not np.isfinite(room):
        return False
    return not all(np.isfinite(summed)) or any(abs(slope - s) > room for s in summed)


def _outputs(obj, tensors: list[str]):
    """(outputs, weights): outputs(moved) gives what E weighs, each (M,) or (N, *out)
    array, for the tensors ``tensors`` (a layer's inputs and parameters) moved to
    ``moved`` ({name: array}); weights, the same shape: E = sum(weights * outputs). A
    layer's outputs under its delta; the loss's per-example losses under the reduction's
    weights (1, or 1/N for a mean). None when one of ``tensors`` is neither."""
    if isinstance(obj, LayerObjective):
        slots = obj.slots()
        params = {f"{obj.node.name}.{p}": p for p in obj.params}
        if not tensors or any(t not in slots and t not in params for t in tensors):
            return None

        def layer(moved: dict[str, np.ndarray]) -> np.ndarray:
            xs, ps = list(obj.xs), dict(obj.params)
            for t, x in moved.items():
                if t in slots:
                    xs[slots[t]] = x
                else:
                    ps[params[t]] = x
            return node_forward(obj.node, xs, ps)[0]

        return layer, obj.delta
    if isinstance(obj, LossObjective) and tensors == ["input"]:
        spec, n = obj.problem.loss, obj.x.shape[0]

        def loss(moved: dict[str, np.ndarray]) -> np.ndarray:
            return np.asarray(loss_forward(spec, moved["input"], obj.target)[0])

        scale = 1.0 / n if spec.reduction == "mean" else 1.0
        return loss, np.full(n, scale)
    return None


def ambiguity(
    outputs, xs: dict[str, np.ndarray], u: dict[str, np.ndarray], step: float
) -> tuple[float, float]:
    """(sum_k |w_k| |R_k - L_k|, sum_k |w_k| (|R_k| + |L_k|) / 2): how far apart valid
    subgradients can put dx . u, and the size of the terms it sums, from each output's
    one-sided slopes along u at ``step`` (R_k = (y_k(x + s u) - y_k(x)) / s, L_k likewise
    on the left; outputs: ``_outputs``). Infinite when not finite."""
    forward, weights = outputs
    with np.errstate(all="ignore"):
        # new arrays: a layer may keep what it is handed
        try:
            up, down = forward(_moved(xs, u, step)), forward(_moved(xs, u, -step))
            y0 = forward({t: x.copy() for t, x in xs.items()})
        except PluginError as exc:  # past the forward's domain: nothing to say
            if not domain.left_domain(exc):
                raise
            return math.inf, math.inf
        right, left = np.abs(weights * (up - y0)), np.abs(weights * (y0 - down))
        gap = float(np.abs(weights * ((up - y0) - (y0 - down))).sum()) / step
        size = float((right + left).sum()) / (2 * step)
    return tuple(v if math.isfinite(v) else math.inf for v in (gap, size))


__all__ = ["ShiftResult", "ambiguity", "joint_shift_test", "shift_test", "ties_across"]
