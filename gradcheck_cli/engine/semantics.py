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
