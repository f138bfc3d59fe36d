"""Compound kinks: where several non-differentiable points meet at one element.

The element-wise kink rule (compare.py) accepts an analytic value between the one-sided
differences d- and d+. That bracket holds every valid subgradient when ONE kink is
crossed, but not when several meet, because moving a single element explores only one
line through the point:

- max pooling with overlapping windows: x ties with a in window 1 (a comes first, so a
  gets the gradient) and with b in window 2 (x comes first). With upstream gradients
  g1 = 1/3 and g2 = -2/3, the analytic dx = g2 = -2/3 is the gradient of the region
  a > x > b, a valid limiting gradient. But moving x up wins both windows,
  d+ = g1 + g2 = -1/3, and moving it down loses both, d- = 0: -2/3 is outside [-1/3, 0];
- several ReLUs at exactly 0 that read the same input element (a block of zeros through
  a convolution without bias): relu'(0) = 0 for each, while d+ and d- each switch on a
  different subset of them.

Two facts settle these elements without a rule for every layer:

1. A layer's VJP, analytic and numeric alike, is linear in the upstream gradient, and
   with a one-signed upstream gradient every max-like tie IS bracketed (with g >= 0,
   moving x up can only add windows and moving it down only remove them). So an element
   of an isolated layer that fails is re-checked with the upstream gradient split into
   its positive and its negative part (``split_upstream``); it is a kink when both
   halves pass. At a smooth element the split changes nothing (a wrong value is wrong
   in at least one half); at a tie it removes the cancellation between windows, which
   can even hide the jump (softmax gradients sum to 0, so a tie across every window
   gives d+ = d- exactly).
2. The network gradient of a tensor is the chain of the VJPs above it. When its own
   layer's backward and every backward above it (and the loss's) pass in isolation, a
   network-level failure comes from kinks composed through the chain rule, not from a
   wrong backward, provided there is a kink to blame: the element's one-sided
   differences disagree, or the isolated checks on that path met kinks, or (for jumps
   below the tolerance, when the gradients are near atol) the differences at h, 2h and
   4h show kinks within the step (``kinks_within_step``). It is then a
   kink (``settle_compound_kinks``); without any kink it stays a failure. The same
   holds for a ``--method taylor`` verdict: a random direction crosses every kink at x
   at once, so the remainder is first-order even for a valid subgradient.

An analytic value at a single kink outside the bracket still fails, in the isolated
check of its layer, which then also keeps the network-level failures below it.
"""

from __future__ import annotations

import numpy as np

from ..problem import Problem
from ..report import Report
from . import numeric
from .blame import path_ok
from .compare import ElementVerdict, judge
from .elements import JUMP_KEY
from .numeric import EPS64
from .objective import LayerObjective
from .passes import node_backward, node_forward

TAYLOR_KINK_NOTE = (
    "Taylor: first-order remainder from kinks at this point (the direction crosses several "
    "at once); every backward on the path passes its isolated check, kinks included"
)

#: A gap or shift counts when it exceeds this many epsilons of the values over h.
ROUNDING_GAP = 10.0
#: The central difference moving by more than this (relative) from h to 2h: not smooth.
CENTRAL_SHIFT = 1e-2


def split_upstream(
    obj: LayerObjective, tensor: str, index: np.ndarray, v: ElementVerdict, tol, max_memory: int
) -> ElementVerdict:
    """Re-check an isolated layer's failed elements with the upstream gradient
    split by sign; those that pass both halves become kinks (still failures under
    ``tol.strict_kinks``). Returns the updated verdict.

    index: (K,) flat indices of the checked elements, v: their verdict; tol: the
    check's Tolerances (atol, rtol, eps, strict_kinks).
    """
    retry = v.failed.copy()
    if not retry.any():
        return v
    sub_index = index[retry]
    node = obj.node
    with np.errstate(all="ignore"):
        y, cache = node_forward(node, obj.xs, obj.params)
    passed = np.ones(len(sub_index), dtype=bool)
    for part in (np.maximum(obj.delta, 0.0), np.minimum(obj.delta, 0.0)):
        if not part.any():
            continue
        with np.errstate(all="ignore"):
            dxs, grads = node_backward(node, part, cache, obj.params, obj.xs)
        analytic = {node.slot_name(s): dx for s, dx in enumerate(dxs)}
        analytic.update({f"{node.name}.{p}": g for p, g in grads.items()})
        half = LayerObjective(node, obj.xs, obj.params, part, float((y * part).sum()), analytic)
        with np.errstate(all="ignore"):
            d = numeric.differences(half, tensor, sub_index, tol.eps, max_memory)
        a = np.asarray(analytic[tensor], dtype=np.float64).reshape(-1)[sub_index]
        passed &= ~judge(a, d, tol.atol, tol.rtol).failed
    settled = np.zeros_like(retry)
    settled[np.flatnonzero(retry)[passed]] = True
    return ElementVerdict(
        numeric=v.numeric,
        abs_error=v.abs_error,
        rel_error=v.rel_error,
        failed=v.failed if tol.strict_kinks else v.failed & ~settled,
        kink=v.kink | settled,
        jump=v.jump,
    )


def kinks_within_step(
    objective, tensor: str, index: np.ndarray, eps: float, max_memory: int
) -> np.ndarray:
    """(K,) bool: the loss is not smooth within the step around each element, however
    small the jumps. Two signatures, from differences at h, 2h and 4h:

    - a kink AT the element: the gap d+ - d- between the one-sided differences stays
      the same at every step (a smooth f has a gap h f'' that grows with h, rounding
      noise one that shrinks like 1/h);
    - kinks NEAR the element, within the step: the central difference moves by more
      than CENTRAL_SHIFT (1 %) between h and 2h, as each step crosses a different set of
      kinks; a smooth f moves it by h^2 times its third derivative, ~1e-12 relative.

    Both must stand ROUNDING_GAP epsilons clear of the values over h. Costs six forward
    passes per element; used only where no tolerance-sized jump or kink explains a
    failure (gradients near atol).
    """
    gaps, centrals, noise = [], [], None
    for k in (1, 2, 4):
        with np.errstate(all="ignore"):
            d = numeric.differences(objective, tensor, index, k * eps, max_memory)
        gaps.append(d.right - d.left)
        centrals.append(d.central)
        if noise is None:
            mags = np.abs(d.f0) + np.abs(d.f_plus) + np.abs(d.f_minus)
            noise = ROUNDING_GAP * EPS64 * mags / np.minimum(d.h_plus, d.h_minus)
    g1, g2, g4 = gaps
    steady = (np.abs(g2 - g1) < 0.25 * np.abs(g1)) & (np.abs(g4 - g1) < 0.25 * np.abs(g1))
    at_kink = (np.abs(g1) > noise) & steady
    shift = np.abs(centrals[1] - centrals[0])
    scale = np.maximum(np.abs(centrals[0]), np.abs(centrals[1]))
    near_kink = (shift > noise) & (shift > CENTRAL_SHIFT * scale)
    return at_kink | near_kink


def settle_compound_kinks(
    report: Report, problem: Problem, tol, objective=None, max_memory: int = 1 << 30
) -> None:
    """Turn a tensor's failures into kinks when its own layer's backward and every
    backward above it pass in isolation and a kink explains them (module docstring).

    Needs ``report.layers`` (the isolated verdicts); tol: the check's Tolerances;
    objective: the network objective, to look for kinks too small for the tolerance
    (``kinks_within_step``) when no other evidence exists. Under
    ``--strict-kinks`` the elements are marked as kinks but stay failures.
    """
    strict = tol.strict_kinks
    verdicts = {v.name: v for v in report.layers}
    if not verdicts:
        return
    for c in report.checks:
        jump = c.extra.get(JUMP_KEY)
        taylor = c.taylor_passed is False
        if c.passed or (jump is None and not taylor):
            continue
        ok, path_kinks = path_ok(problem, verdicts, c.name)
        if not ok:
            continue
        if taylor:
            # A random direction crosses every kink at x at once: the Taylor test cannot
            # decide there, the isolated element-wise checks can.
            if path_kinks > 0 and not strict:
                c.taylor_passed = True
                c.diagnosis = TAYLOR_KINK_NOTE
            continue
        evidence = jump | (path_kinks > 0)
        quiet = c.failed_mask & ~evidence
        if objective is not None and quiet.any():
            index = np.flatnonzero(quiet)
            found = kinks_within_step(objective, c.name, index, tol.eps, max_memory)
            evidence = evidence.copy()
            evidence.reshape(-1)[index[found]] = True
        settled = c.failed_mask & evidence
        c.kink_mask = c.kink_mask | settled
        if not strict:
            c.failed_mask = c.failed_mask & ~settled
