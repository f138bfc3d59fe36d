"""``expect:``: the values a user derived by hand, against the engine's."""

from __future__ import annotations

import numpy as np

from ..problem import Problem
from ..report import ExpectationResult
from .compare import within
from .passes import Gradients, Trace


def actual_value(problem: Problem, trace: Trace, grads: Gradients, key: str) -> np.ndarray:
    """The engine's value for an expectation key: ``loss``, ``<input>.grad``,
    ``<layer>.output``, ``<layer>.delta`` (dE/d of its output) or ``<owner>.<param>.grad``."""
    network = problem.network
    if key == "loss":
        return np.asarray(trace.loss)
    stem, _, what = key.rpartition(".")
    if what == "grad" and network.is_input(stem):
        return grads.deltas[stem]
    if what == "grad":
        owner, param = network.split_param(stem)
        return grads.params[owner][param]
    if what == "output":
        return trace.values[stem]
    return grads.deltas[stem]  # <layer>.delta


def compare_expectations(
    problem: Problem, trace: Trace, grads: Gradients
) -> list[ExpectationResult]:
    """Each ``expect:`` value against the engine's, reshaped to the user's shape."""
    results = []
    for e in problem.expectations:
        actual = actual_value(problem, trace, grads, e.key)
        actual = np.asarray(actual, dtype=np.float64).reshape(e.value.shape)
        expected = np.asarray(e.value, dtype=np.float64)
        ok = within(actual, expected, problem.expect_atol, problem.expect_rtol)
        results.append(
            ExpectationResult(
                name=e.key,
                expected=expected,
                actual=actual,
                passed=bool(np.all(ok)),
                max_abs_error=float(np.max(np.abs(actual - expected))) if actual.size else 0.0,
            )
        )
    return results
