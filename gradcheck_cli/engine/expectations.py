"""``expect:``: the values a user derived by hand, against the engine's.

The tolerance in force, per element:

- the config's ``tolerance: {atol, rtol}`` when it gives one:
  ``|actual - expected| <= atol + rtol * max(|actual|, |expected|)``;
- otherwise half a unit in the last place the number was written with (config/written.py):
  ``0.3116`` passes for any actual value in [0.31155, 0.31165], both ends included,
  since a person rounding half up or half to even may write either. The comparison adds
  ``REPRESENTATION_ULPS`` epsilons of the check's dtype times the magnitudes, because
  0.3116, 0.31165 and 0.00005 are not exactly representable in binary: a value exactly
  at the edge passes, one a unit in the last place further fails;
- a number with no written text (from a ``.npy``/``.npz`` file, or a Python number given
  through the API) gets ``atol`` 1e-6, ``rtol`` 0 (config/settings.py's defaults).

Every disagreeing element is kept with its index in the tensor's coordinates, in the
shape the user wrote (the coordinates of ``conv1.weight.grad[0, :]`` are the kernel's).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..problem import Expectation, Problem
from ..report import ExpectationResult, Mismatch
from .passes import Gradients, Trace

#: Epsilons of the check's dtype, times the magnitudes compared, allowed for the binary
#: representation of decimal values and tolerances (module docstring).
REPRESENTATION_ULPS = 4


def actual_value(problem: Problem, trace: Trace, grads: Gradients, key: str) -> np.ndarray:
    """The engine's value for an expectation key (without an index): ``loss``,
    ``<input>.grad``, ``<layer>.output``, ``<layer>.delta`` (dE/d of its output) or
    ``<owner>.<param>.grad``."""
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
    """Each ``expect:`` value against the engine's, in the shape the user wrote."""
    eps = float(np.finfo(np.dtype(problem.dtype)).eps)
    results = []
    for e in problem.expectations:
        whole = np.asarray(actual_value(problem, trace, grads, e.base), dtype=np.float64)
        expected = np.asarray(e.value, dtype=np.float64)
        if e.positions is None:
            actual = whole.reshape(expected.shape)
            positions = np.arange(expected.size).reshape(expected.shape)
        else:
            actual = whole.reshape(-1)[e.positions]
            positions = e.positions
        allowed, rule = tolerance_of(problem, e, actual, expected)
        diff = np.abs(actual - expected)
        ok = agrees(actual, expected, allowed, 0.0 if problem.expect_tolerance_given else eps)
        shape = tuple(e.shape or expected.shape)
        tol = np.broadcast_to(allowed, expected.shape).reshape(-1)
        flat = [a.reshape(-1) for a in (np.asarray(positions), expected, actual)]
        mismatches = [
            Mismatch(
                index=tuple(int(i) for i in np.unravel_index(int(flat[0][k]), shape)),
                expected=float(flat[1][k]),
                actual=float(flat[2][k]),
                tolerance=float(tol[k]),
            )
            for k in np.flatnonzero(~np.reshape(ok, -1))
        ]
        results.append(
            ExpectationResult(
                name=e.key,
                expected=expected,
                actual=actual,
                passed=bool(np.all(ok)),
                max_abs_error=float(np.max(diff)) if diff.size else 0.0,
                mismatches=mismatches,
                tolerance=rule,
                base=e.base,
            )
        )
    return results


def agrees(actual: Any, expected: Any, allowed: Any, eps: float) -> np.ndarray:
    """``|actual - expected| <= allowed``, plus what binary representation may add to
    either side: REPRESENTATION_ULPS epsilons (``eps``: of the check's dtype; 0 for the
    config's own tolerance, which is taken as given) of the magnitudes involved.

    >>> bool(agrees(0.31165, 0.3116, 0.00005, 2.0**-52))   # exactly at the edge
    True
    >>> bool(agrees(0.31166, 0.3116, 0.00005, 2.0**-52))
    False
    """
    actual, expected, allowed = (
        np.asarray(v, dtype=np.float64) for v in (actual, expected, allowed)
    )
    scale = np.maximum(np.maximum(np.abs(actual), np.abs(expected)), allowed)
    return np.abs(actual - expected) <= allowed + REPRESENTATION_ULPS * eps * scale


def tolerance_of(
    problem: Problem, e: Expectation, actual: np.ndarray, expected: np.ndarray
) -> tuple[np.ndarray, dict]:
    """The tolerance in force for each element (shaped like expected), and the rule as
    the JSON report describes it (``rule``: ``given``, ``written`` or ``default``)."""
    atol, rtol = problem.expect_atol, problem.expect_rtol
    explicit = atol + rtol * np.maximum(np.abs(actual), np.abs(expected))
    if problem.expect_tolerance_given:
        text = f"atol {atol:g}" + (f", rtol {rtol:g}" if rtol else "")
        return explicit, {
            "rule": "given",
            "atol": atol,
            "rtol": rtol,
            "description": f"{text} (given)",
        }
    places = e.places if e.places is not None else np.full(expected.shape, np.nan)
    places = np.broadcast_to(np.asarray(places, dtype=np.float64), expected.shape)
    written = ~np.isnan(places)
    allowed = np.where(written, 0.5 * np.where(written, places, 0.0), explicit)
    if not written.any():
        return allowed, {
            "rule": "default",
            "atol": atol,
            "rtol": rtol,
            "description": f"atol {atol:g} (no written decimals: from a file)",
        }
    units = sorted({float(p) for p in places[written].reshape(-1)})
    rule = {
        "rule": "written",
        "min": 0.5 * units[0],
        "max": 0.5 * units[-1],
        "description": written_description(units),
    }
    if not written.all():
        rule["atol"] = atol
        rule["description"] += f"; atol {atol:g} for the values with no written text"
    return allowed, rule


def written_description(units: list[float]) -> str:
    """``±0.00005, from 4 written decimals``; numbers written to different places:
    ``±0.00005 to ±0.5, each from its own written decimals (0 to 4)``."""
    half = [0.5 * u for u in units]
    if len(units) == 1:
        return f"±{plain(half[0])}, from {_places(units[0])}"
    low, high = (-round(math.log10(u)) for u in (units[-1], units[0]))
    return (
        f"±{plain(half[0])} to ±{plain(half[-1])}, each from its own written decimals "
        f"({low} to {high})"
    )


def _places(unit: float) -> str:
    """How a unit in the last place is said: ``4 written decimals``, ``integers``."""
    decimals = -round(math.log10(unit))
    if decimals > 0:
        return f"{decimals} written decimal" + ("" if decimals == 1 else "s")
    if decimals == 0:
        return "a written integer"
    return f"a number written to the {plain(unit)}s"


def plain(v: float) -> str:
    """A tolerance as a person reads it: ``0.00005``, ``0.5``, ``5e-09``."""
    if v == 0 or not 1e-9 <= abs(v) < 1e6:
        return f"{v:g}"
    return f"{v:.12f}".rstrip("0").rstrip(".")
