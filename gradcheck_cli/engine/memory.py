"""Refuse, before any work, a check that cannot fit in memory.

A numeric check holds, at its peak:

- the forward trace: the input and every activation, the layers' caches and the
  backward deltas, about 3 float64 arrays per activation element (N examples);
- a chunk of perturbed copies of the network below the perturbed tensor, each as large
  as the trace from that layer down (``NetworkObjective.bytes_per_copy``): central
  differences evaluate at least 2 at a time (+h and -h), ``--fast`` one;
- per element of a checked tensor, its analytic and numeric values, errors and masks in
  the report (whole tensors, also when sampled), and per element actually checked the
  steps and objective values of central differences.

``require_fits`` refuses (exit 2) when the copies alone exceed ``--max-memory`` (the
engine could not keep to the budget) or the whole estimate exceeds the machine's
memory, with the estimate and what would make the check fit.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from ..errors import OptionHint, Part, TooLargeError
from ..problem import Method, Mode, Problem
from .elements import select_tensors

#: float64 arrays per activation element held by the trace (value, cache, delta).
TRACE_ARRAYS = 3
#: Bytes per element of a checked tensor in the report (4 float64 arrays, 4 masks),
#: per element checked (index, steps, f+ and f-, errors), and per parameter element
#: (float64 copy, gradient, its isolation copy).
REPORT_BYTES, CHECKED_BYTES, PARAM_BYTES = 40, 80, 24
#: Elements per tensor the ``--sample`` hint proposes.
SAMPLE_HINT = 20


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a check needs at its peak, by part (see the module docstring)."""

    trace: int
    per_copy: int
    copies: int
    tensors: int
    elements: int  # elements to be checked numerically

    @property
    def copies_bytes(self) -> int:
        return self.copies * self.per_copy

    @property
    def total(self) -> int:
        return self.trace + self.copies_bytes + self.tensors


def _size(shape: tuple[int, ...]) -> int:
    return math.prod(int(d) for d in shape)


def estimate(problem: Problem) -> MemoryEstimate:
    """The peak memory of checking ``problem`` with its settings (no array is made)."""
    network = problem.network
    n = problem.batch_size
    checked, _ = select_tensors(problem)
    s = problem.settings
    sampled = s.mode in (Mode.SAMPLE, Mode.BUDGET) and s.sample is not None
    one_at_a_time = s.mode is Mode.FAST or s.method is Method.TAYLOR
    per_copy = whole = elements = 0
    for tensor in checked:
        below = network.example_sizes(network.copy_values(tensor))
        per_copy = max(per_copy, 8 * n * TRACE_ARRAYS * (sum(below) + max(below)))
        if network.is_input(tensor):
            size = problem.inputs[tensor].size
        else:
            owner, param = network.split_param(tensor)
            size = network.node(owner).params[param].size
        whole += size
        elements += min(size, s.sample) if sampled else size  # type: ignore[type-var]
    params = sum(p.size for node in network if node.share is None for p in node.params.values())
    return MemoryEstimate(
        trace=8 * n * TRACE_ARRAYS * sum(network.example_sizes()),
        per_copy=per_copy,
        copies=1 if one_at_a_time else 2,
        tensors=REPORT_BYTES * whole + CHECKED_BYTES * elements + PARAM_BYTES * params,
        elements=elements,
    )


def physical_memory() -> int | None:
    """The machine's RAM in bytes, where the OS says it (None otherwise)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def gib(size: float) -> str:
    """Bytes as the user reads them: ``5.2 GiB``, ``340 MiB``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{int(size)} bytes"


def require_fits(problem: Problem, ram: int | None = None) -> MemoryEstimate:
    """The estimate, or TooLargeError (exit 2) saying what it needs and what would fit.

    ram: the machine's memory (default: asked from the OS).
    """
    ram = physical_memory() if ram is None else ram
    est = estimate(problem)
    if _fits(est, problem.settings.max_memory, ram):
        return est
    budget = problem.settings.max_memory
    over_budget = est.copies_bytes > budget
    why: list[Part] = (
        ["more than ", OptionHint("max_memory", gib(budget))]
        if over_budget
        else [f"more than {gib(ram or 0)} of RAM"]
    )
    tries: list[Part] = [
        hint
        for hint, settings in (
            (OptionHint("fast"), {"mode": Mode.FAST}),
            (OptionHint("sample", SAMPLE_HINT), {"mode": Mode.SAMPLE, "sample": SAMPLE_HINT}),
        )
        if hint.option not in _given(problem)
        and _fits(estimate(_with(problem, **settings)), budget, ram)
    ]
    tries.append("a smaller input or network")
    if over_budget and (ram is None or est.total <= ram):
        size = _option_size(est.copies_bytes)
        tries.append(OptionHint("max_memory", size, remark="if the machine has it"))
    parts: list[Part] = [
        f"{problem.path}: the check needs about {gib(est.total)} of memory, ",
        *why,
        f": one perturbed forward pass of {problem.batch_size} example(s) through "
        f"{len(problem.layers)} layer(s) holds about {gib(est.per_copy)}, {est.copies} run at "
        f"a time, and {est.elements:,} elements are to be checked. Try ",
    ]
    for k, part in enumerate(tries):
        parts.extend([", or "] if k else [])
        parts.append(part)
    raise TooLargeError([*parts, "."])


def _option_size(size: int) -> str:
    """A max_memory value at least ``size``: ``3GiB``, ``12MiB``."""
    if size > 2**30:
        return f"{math.ceil(size / 2**30)}GiB"
    return f"{max(1, math.ceil(size / 2**20))}MiB"


def _fits(est: MemoryEstimate, budget: int, ram: int | None) -> bool:
    return est.copies_bytes <= budget and (ram is None or est.total <= ram)


def _given(problem: Problem) -> set[str]:
    """The modes already chosen, as option names (a hint never repeats them)."""
    mode = problem.settings.mode
    return {"fast"} if mode is Mode.FAST else {"sample"} if mode is Mode.SAMPLE else set()


def _with(problem: Problem, **changes: object) -> Problem:
    return dataclasses.replace(problem, settings=dataclasses.replace(problem.settings, **changes))
