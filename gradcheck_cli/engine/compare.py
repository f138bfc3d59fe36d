"""Error metrics, the settings of a verdict, and the per-element verdict record.

Reported relative error: |a - n| / max(|a|, |n|), and 0 when both are 0. The rule
that turns an analytic value a and the numeric evaluations into a verdict is in
engine/verdict.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tolerances:
    """The verdict's settings in force: the user's explicit widenings atol and rtol (0
    unless given), eps (the step, relative to each element's magnitude), whether kinks
    fail, and the machine epsilon of the dtype the analytic gradients were computed in."""

    atol: float
    rtol: float
    eps: float
    strict_kinks: bool
    analytic_eps: float = sys.float_info.epsilon


@dataclass
class ElementVerdict:
    """Per checked element, all (K,): numeric value, errors, failure and kink flags."""

    numeric: np.ndarray
    abs_error: np.ndarray
    rel_error: np.ndarray
    failed: np.ndarray
    kink: np.ndarray
    #: a non-differentiable point is proven at the element (engine/verdict.py)
    jump: np.ndarray | None = None
    #: no step resolved the element: never a pass
    inconclusive: np.ndarray | None = None
    #: the numeric value's estimated error (engine/verdict.py)
    bound: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = len(self.numeric)
        if self.jump is None:
            self.jump = np.zeros(k, dtype=bool)
        if self.inconclusive is None:
            self.inconclusive = np.zeros(k, dtype=bool)
        if self.bound is None:
            self.bound = np.full(k, np.nan)


def rel_error(a: np.ndarray, n: np.ndarray) -> np.ndarray:
    """|a - n| / max(|a|, |n|), defined as 0 where both are 0."""
    scale = np.maximum(np.abs(a), np.abs(n))
    diff = np.abs(a - n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, diff / np.where(scale > 0, scale, 1.0), 0.0)


def within(a: np.ndarray, n: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """|a - n| <= atol + rtol * max(|a|, |n|), elementwise."""
    return np.abs(a - n) <= atol + rtol * np.maximum(np.abs(a), np.abs(n))
