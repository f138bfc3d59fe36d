"""Warnings about what a check's numbers mean, found once the network has run.

Pure data: each warning is one line naming the key it is about, with the file and line
where the config says it (``net.yaml:14: loss.type: ...``), shown in the run's output
and the JSON report's ``warnings``.

- the loss declares what its input should look like (``Loss.input_warning``):
  ``cross_entropy`` fed values that are not probabilities suggests
  ``softmax_cross_entropy``;
- a tensor whose largest relative error comes from elements where the analytic and
  numeric values are both ~0 (``TensorCheck.noise_floor_mask``): a relative error of 1.0
  that only says both are noise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ConfigIssue
from ..problem import Problem
from ..report import TensorCheck
from .passes import Trace, loss_input_hint

#: A relative error at the noise floor below this is not worth a warning.
FLOOR_WARNING = 1e-3


def located(problem: Problem, line: int | None, key: str, message: str) -> str:
    """``net.yaml:14: loss.type: message``, as config errors are written."""
    return str(ConfigIssue(problem.path, line, key, message))


def loss_warnings(problem: Problem, trace: Trace) -> list[str]:
    """What the loss says about the network output it was fed (``input_warning``)."""
    said = loss_input_hint(problem, trace)
    return [located(problem, problem.loss.line, "loss.type", said)] if said else []


def noise_floor_warnings(problem: Problem, checks: list[TensorCheck]) -> list[str]:
    """A line for every tensor whose ``max_rel_error`` comes from elements at the noise
    floor (both values ~0), saying so."""
    found = []
    for c in checks:
        floor = c.noise_floor_mask
        if not floor.any() or c.max_rel_error < FLOOR_WARNING:
            continue
        if c.max_rel_error_above_floor >= c.max_rel_error:
            continue  # the largest relative error is a real one
        a, n, b = (abs(v[floor]).max() for v in (c.analytic, c.numeric, c.error_bound))
        count = int(floor.sum())
        what = "element" if count == 1 else "elements"
        line, _ = problem.where(c.layer) if c.layer else (None, "")
        found.append(
            located(
                problem,
                line,
                c.name,
                f"max rel err {c.max_rel_error:.2e} is from {count} {what} where analytic "
                f"and numeric are both ~0 (|a| <= {a:.2g}, |n| <= {n:.2g}, numeric noise "
                f"{b:.2g}): meaningless there, so the table shows 'both ~0'; they pass",
            )
        )
    return found


#: A float32 tensor whose analytic allowance exceeds this fraction of its largest
#: gradient is named in a warning (``float32_allowance_warning``).
FLOAT32_WARN_SHARE = 1e-4


def float32_allowance_warning(
    problem: Problem, checks: list[TensorCheck], scale: Callable[[str], float], ulps: float
) -> list[str]:
    """In float32, the tensors on which the analytic side's allowance (``ulps`` float32
    epsilons of |a| + ``scale(tensor)``, the largest term the backward passes combine
    into the tensor's gradient: engine/verdict.py ``gradient_scale``) is more than
    FLOAT32_WARN_SHARE of the tensor's largest gradient: a bug smaller than that passes
    there (a SELU backward with its constants rounded to 5 digits, 7e-5 off, passed in
    float32 and failed in float64: found by a hunt). None in float64, nor for a tensor
    with no gradient."""
    if problem.dtype == "float64":
        return []
    eps = float(np.finfo(np.dtype(problem.dtype)).eps)
    wide = []
    for c in checks:
        top = float(np.max(np.abs(c.analytic), initial=0.0))
        if top > 0 and np.isfinite(top):
            share = ulps * eps * (top + scale(c.name)) / top
            if share > FLOAT32_WARN_SHARE:
                wide.append((share, c.name))
    if not wide:
        return []
    wide.sort(reverse=True)
    names = ", ".join(f"{name} ({share:.1e})" for share, name in wide[:5])
    more = f" and {len(wide) - 5} more" if len(wide) > 5 else ""
    return [
        "float32: the analytic side is allowed its float32 rounding of the largest term "
        "its backward passes combine (each delta on the way to the loss), which is more "
        f"than {FLOAT32_WARN_SHARE:g} of the largest gradient on {names}{more}: a bug "
        "smaller than that share passes there; run the check with dtype: float64 to "
        "resolve it"
    ]
