"""``--time-budget SECONDS``: check as many elements per tensor as fit in the budget.

1. Calibrate. For each checked tensor, time central differences of a few randomly
   chosen elements, twice (SMALL, then LARGE elements in one call each), and fit
   seconds = a + b * elements per call: a is the per-call overhead (Python, the
   unperturbed part of the perturbed layer), b the cost of one more element.
2. Choose one K for every tensor, as ``--sample K`` would: the largest K whose predicted
   cost, summed over the tensors (a tensor smaller than K is checked whole), fits in
   what is left of the budget after the time already spent and a reserve for the
   per-layer isolation (directional, about ISOLATION_FORWARDS forward passes).

The budget covers the whole check; calibration counts against it. The estimate is
conservative (calls are timed at small chunk sizes, where the overhead weighs most).

The budget is also a deadline (``Calls.deadline``, engine/check.py): no call into a layer
starts past it, so the check overruns it by at most the call running then. A tensor
the deadline cuts short keeps the elements it finished; one it never reached has none,
and then the check could not be carried out (exit 3, ``unreached``): a tensor nobody
checked is never reported as passed. Past the deadline the layers' own backwards are not
checked either (no layer is blamed; the report says so).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..exit_codes import ExitCode
from ..how_checked import HowChecked
from ..report import Report, RunError
from . import numeric
from .passes import OutOfTime

#: Elements timed per tensor in the two calibration calls.
SMALL, LARGE = 2, 8
#: A first calibration call slower than this (seconds) is the only one: the layers are
#: slow enough that the per-call overhead does not matter, and timing more elements
#: would spend the budget on timing.
SLOW_CALL = 0.05
#: Evaluations of the objective per tensor that do not depend on the elements checked
#: (engine/numeric.py measures the forward's noise at NOISE_PROBES elements, 4 each).
FIXED_EVALUATIONS = 4 * numeric.NOISE_PROBES
#: Forward passes reserved for the per-layer directional isolation.
ISOLATION_FORWARDS = 60
#: The report's note when the deadline passed before the layers' own backwards were
#: checked.
NO_ISOLATION = (
    "the time budget ran out before each layer's own backward was checked in isolation: "
    "no layer is blamed"
)


@dataclass
class Cost:
    """Predicted seconds for k elements of one tensor: calls * overhead + k * per_element."""

    size: int
    overhead: float
    per_element: float
    per_call: int  # elements per call under the memory and cache caps
    #: seconds spent on the tensor whatever k (its noise probes), once k > 0
    fixed: float = 0.0

    def seconds(self, k: int) -> float:
        k = min(k, self.size)
        fixed = self.fixed if k else 0.0
        return math.ceil(k / self.per_call) * self.overhead + k * self.per_element + fixed


def calibrate(objective, tensor: str, eps: float, max_memory: int, rng) -> Cost:
    """Time two small calls of central differences on random elements of ``tensor``."""
    size = objective.tensors()[tensor].size
    per_call = max(1, numeric.chunk_size(objective.bytes_per_copy(tensor), max_memory) // 2)
    timings = []
    for k in (min(SMALL, size), min(LARGE, size)):
        if timings and timings[0][1] > SLOW_CALL:  # slow layers: one timing must do
            timings.append(timings[0])
            break
        index = np.sort(rng.choice(size, size=k, replace=False))
        started = time.perf_counter()
        with np.errstate(all="ignore"):
            numeric.differences(objective, tensor, index, eps, max_memory)
        timings.append((k, time.perf_counter() - started))
    (k1, t1), (k2, t2) = timings
    if k2 > k1:
        per_element = max((t2 - t1) / (k2 - k1), 0.25 * t2 / k2)
        overhead = max(t1 - per_element * k1, 0.0)
    else:  # a tiny tensor: both calls were the same size
        per_element, overhead = t2 / max(k2, 1), 0.0
    # the noise probes cost an evaluation each, half an element's differences
    return Cost(size, overhead, per_element, per_call, FIXED_EVALUATIONS / 2 * per_element)


def choose_k(costs: dict[str, Cost], seconds: float) -> int:
    """The largest K (at least 1) with sum of costs of min(K, size) elements <= seconds."""
    largest = max((c.size for c in costs.values()), default=1)

    def total(k: int) -> float:
        return sum(c.seconds(k) for c in costs.values())

    lo, hi = 1, largest
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if total(mid) <= seconds:
            lo = mid
        else:
            hi = mid - 1
    return lo


def plan(problem, objective, names: list[str], tol, rng, started: float):
    """(flat indices to check per tensor, note) under ``problem.settings.time_budget``."""
    budget = float(problem.settings.time_budget)
    try:
        costs = {
            t: calibrate(objective, t, tol.eps, problem.settings.max_memory, rng) for t in names
        }
        forward_started = time.perf_counter()
        objective.loss_at({})
        forward = time.perf_counter() - forward_started
    except OutOfTime:  # timing the first elements took the whole budget
        note = f"time budget {budget:g} s: it ran out while timing the first elements"
        return {t: np.arange(0) for t in names}, note
    left = budget - (time.perf_counter() - started) - ISOLATION_FORWARDS * forward
    k = choose_k(costs, left)
    index = {}
    for t in names:
        size = costs[t].size
        index[t] = np.arange(size) if k >= size else np.sort(rng.choice(size, k, replace=False))
    checked = sum(len(ix) for ix in index.values())
    total = sum(c.size for c in costs.values())
    note = (
        f"time budget {budget:g} s: planned {checked:,} of {total:,} elements "
        f"(up to {k:,} per tensor; the table says how many were checked)"
    )
    predicted = sum(costs[t].seconds(len(index[t])) for t in names)
    if predicted > max(left, 0.0):
        note += "; the budget is too small for one element per tensor and will be overrun"
    return index, note


def unreached(report: Report, budget: float) -> RunError | None:
    """The error of a check whose time budget ran out before some tensor had a single
    element checked (exit 3), or None when every tensor got at least one."""
    missed = [c.name for c in report.checks if c.mode is not HowChecked.TAYLOR and c.checked == 0]
    if not missed:
        return None
    names = ", ".join(missed[:5]) + (f" and {len(missed) - 5} more" if len(missed) > 5 else "")
    return RunError(
        "budget",
        f"the check could not be carried out: the time budget of {budget:g} s ran out "
        f"before any element of {names} was checked; give it more time",
        file=report.config,
        exit_code=ExitCode.NOT_CARRIED_OUT,
    )
