"""The per-element verdict: the pass rule, the error metrics and the kink rule.

Pass rule (contract): |a - n| <= atol + rtol * max(|a|, |n|), n the central difference.
Relative error: |a - n| / max(|a|, |n|), and 0 when both are 0.

Kinks. When a step crosses a non-differentiable point (ReLU at 0, a max-pool tie) the
one-sided differences d+ = (f(v+h) - f(v))/h and d- = (f(v) - f(v-h))/h disagree, and
the central difference is their mean, which no valid subgradient has to equal. Such an
element is a kink when it fails the central rule, its one-sided differences disagree by
more than the tolerance, and the analytic value lies (within the tolerance) between
them: every valid subgradient does. It then passes and is counted as a kink, unless
``strict_kinks``. An analytic value outside the bracket fails as usual, unless several
kinks meet at the element and every backward involved is right (engine/kinks.py).

Example (max pool, tie between a and b, upstream gradient g): moving a up makes it the
sole maximum (d+ = g); moving it down hands the maximum to b (d- = 0). Analytic g (a gets
the gradient) or 0 (b gets it) both lie in [0, g]: a kink, not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .numeric import Differences


@dataclass(frozen=True)
class Tolerances:
    """The verdict's settings in force: atol and rtol (scaled for float32 when the user
    kept the defaults), the finite-difference eps, and whether kinks fail."""

    atol: float
    rtol: float
    eps: float
    strict_kinks: bool


@dataclass
class ElementVerdict:
    """Per checked element, all (K,): numeric value, errors, failure and kink flags."""

    numeric: np.ndarray
    abs_error: np.ndarray
    rel_error: np.ndarray
    failed: np.ndarray
    kink: np.ndarray
    #: the one-sided differences disagree: a non-differentiable point lies within the step
    jump: np.ndarray | None = None


def rel_error(a: np.ndarray, n: np.ndarray) -> np.ndarray:
    """|a - n| / max(|a|, |n|), defined as 0 where both are 0."""
    scale = np.maximum(np.abs(a), np.abs(n))
    diff = np.abs(a - n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), 0.0)


def within(a: np.ndarray, n: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """The contract's pass rule, elementwise."""
    return np.abs(a - n) <= atol + rtol * np.maximum(np.abs(a), np.abs(n))


def judge(
    analytic: np.ndarray, d: Differences, atol: float, rtol: float, strict_kinks: bool = False
) -> ElementVerdict:
    """Verdict for K elements: analytic (K,) against the differences around them."""
    a = np.asarray(analytic, dtype=np.float64)
    n = d.central
    ok = within(a, n, atol, rtol)
    right, left = d.right, d.left
    jump = ~within(right, left, atol, rtol)
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    tol = atol + rtol * np.maximum(np.abs(lo), np.abs(hi))
    bracketed = (a >= lo - tol) & (a <= hi + tol)
    kink = ~ok & jump & bracketed
    failed = ~ok & ~kink if not strict_kinks else ~ok
    return ElementVerdict(
        numeric=n,
        abs_error=np.abs(a - n),
        rel_error=rel_error(a, n),
        failed=failed,
        kink=kink,
        jump=jump,
    )
