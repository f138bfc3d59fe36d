"""Orchestration: one problem in, one Report out.

1. analytic forward and backward in the problem's dtype (engine/passes.py), then the
   purity probes of every layer and the loss (engine/purity.py);
2. a float64 forward pass, the prefix cache of the numeric side (engine/objective.py);
3. every selected tensor checked element-wise against central differences
   (engine/elements.py), or by directions (engine/fast.py) or Taylor (engine/taylor.py);
4. every layer's (and the loss's) own backward checked in isolation
   (engine/isolation.py), to blame the layer whose backward is wrong and mark the
   failures that follow from it (engine/blame.py); compound kinks settled
   (engine/kinks.py);
5. the ``expect:`` values compared with the engine's (engine/expectations.py).
"""

from __future__ import annotations

import time

import numpy as np

from ..how_checked import HowChecked
from ..options import report_settings
from ..problem import Method, Mode, Problem
from ..report import Report, TensorCheck
from . import blas, budget, fast, memory
from .blame import blame, mark_unselected, unresolved_notes
from .compare import Tolerances
from .diagnose import diagnose
from .elements import check_tensor, select_elements, select_tensors, unchecked, user_shape
from .expectations import compare_expectations
from .float32_recheck import recheck_in_float64
from .interference import PROBE_SHARE, probe_copies
from .isolation import Ahead, Isolation, isolate_layers, isolation_mode
from .kinks import settle_compound_kinks
from .objective import NetworkObjective
from .passes import Calls, OutOfTime, analytic_pass, problem_params
from .progress import PlannedTensor, ProgressCallback, Tracker
from .purity import probe
from .schedule import Helpers, check_plan, prepare_early
from .semantics import float32_allowance_warning, loss_warnings, noise_floor_warnings
from .taylor import taylor_check
from .verdict import ANALYTIC_ULPS, gradient_scale


class CheckInterrupted(Exception):
    """Ctrl-C during a check; ``report`` holds what was finished."""

    def __init__(self, report: Report):
        super().__init__("interrupted")
        self.report = report


def tolerances(problem: Problem) -> tuple[Tolerances, list[str]]:
    """The verdict's settings in force (engine/verdict.py), and notes for the report.

    The analytic side is judged in its own dtype: a float32 backward is allowed its
    float32 rounding (ANALYTIC_ULPS epsilons of float32), no more."""
    s = problem.settings
    analytic_eps = float(np.finfo(np.dtype(problem.dtype)).eps)
    notes = []
    if problem.dtype == "float32":
        notes.append(
            "float32: analytic gradients in float32, numeric reference in float64; each "
            f"element is allowed {ANALYTIC_ULPS:g} float32 epsilons of rounding on the "
            "analytic side"
        )
    return Tolerances(s.atol, s.rtol, s.eps, s.strict_kinks, analytic_eps), notes


def copies_probed(
    problem: Problem, objective, checked: list[str], tol: Tolerances, started: float | None
) -> list[str]:
    """Compare perturbed copies with the network run alone (engine/interference.py; exit
    3 where they differ). ``started``: the check's start under a time budget, of which
    the probe takes at most PROBE_SHARE; the notes say what it left unprobed."""
    budget = problem.settings.time_budget
    if started is not None and budget is not None:
        Calls.deadline = started + PROBE_SHARE * budget
    try:
        return probe_copies(problem, objective, checked, tol.eps, problem.settings.max_memory)
    finally:
        Calls.deadline = None


@blas.single_threaded  # thousands of small BLAS calls: threads cost more than they give
def run_check(
    problem: Problem, progress: ProgressCallback | None = None, helpers: Helpers | None = None
) -> Report:
    """Check every gradient the problem describes; see the module docstring.

    ``progress(snapshot)`` gets a ``CheckProgress`` (engine/progress.py) as elements are
    finished. A callback that also has a ``checked(check)`` method is handed each
    TensorCheck as soon as it is complete, so that a supervisor holds the tensors
    finished so far whatever becomes of the check. ``helpers``: processes that may take
    chunks of the element-wise check (``--jobs``, engine/schedule.py); the report is the
    same with them or without."""
    started = time.perf_counter()
    # a check too large is refused before any work (exit 2)
    elements = memory.require_fits(problem).elements
    prepare_early(problem, elements, helpers)  # helpers load the config beside this process
    tol, notes = tolerances(problem)
    trace, grads = analytic_pass(problem, problem_params(problem))
    purity = probe(problem, trace, grads)  # exit 3 for a non-deterministic forward
    objective = NetworkObjective.build(problem, trace, grads, problem_params(problem, np.float64))
    prepared_in = time.perf_counter() - started
    checked, skipped = select_tensors(problem)
    budgeted = problem.settings.mode is Mode.BUDGET and problem.settings.time_budget is not None
    # exit 3 where perturbed copies evaluated together are not the network run alone
    unprobed = copies_probed(problem, objective, checked, tol, started if budgeted else None)
    notes = [*notes, *unprobed]
    rng = np.random.default_rng(problem.settings.seed)
    plan = {t: select_elements(objective.tensors()[t].size, problem, rng) for t in checked}
    if budgeted:
        # a time budget is a deadline: no call into a layer starts past it (OutOfTime), so
        # that the check overruns by at most the call running then
        Calls.deadline = started + problem.settings.time_budget
        plan, budget_note = budget.plan(problem, objective, checked, tol, rng, started)
        notes = [*notes, budget_note]
    tracker = Tracker(
        [PlannedTensor(t, len(plan[t]), float(objective.bytes_per_copy(t))) for t in checked],
        progress,
    )
    announce = getattr(progress, "checked", None)

    def finished(*checks: TensorCheck) -> None:
        report.checks.extend(checks)
        if announce is not None:
            for c in checks:
                announce(c)

    report = Report(
        config=problem.path,
        name=problem.name,
        loss=trace.loss,
        settings=settings_dict(problem, tol),
        skipped=skipped,
        warnings=[*problem.warnings, *loss_warnings(problem, trace), *notes, *purity.warnings],
    )
    try:
        try:
            ahead = Ahead(problem, objective, trace, grads, tol, rng, report)
            shared = (helpers, prepared_in, ahead.run, ahead.send)
            report.warnings.extend(
                _check_tensors(
                    problem, objective, checked, plan, tol, rng, tracker, finished, *shared
                )
            )
            tracker.stage("layers")
            report.expectations = compare_expectations(problem, trace, grads)
            try:
                how = isolation_mode(problem, report)
                report.layers = ahead.take(how)
                if report.layers is None:
                    report.layers = isolate_layers(problem, objective, trace, grads, tol, rng, how)
                if how is Isolation.SKIP:
                    report.warnings.append(fast.ISOLATION_SKIPPED)
                recheck_in_float64(problem, objective, trace, grads, tol, report.layers)
                settle_compound_kinks(report, problem, tol)
            except OutOfTime:
                report.layers = []
                report.warnings.append(budget.NO_ISOLATION)
        finally:
            Calls.deadline = None
        blame(report, problem)
        mark_unselected(report, problem)
        values = objective.tensors()
        for c in report.checks:
            if c.failed:  # an inconclusive check keeps the note that says why
                c.diagnosis = diagnose(c, batch_size=problem.batch_size, values=values[c.name])
        purity.apply(report)  # after blame and diagnosis, which judge numeric failures
        report.warnings.extend(unresolved_notes(report))
        report.warnings.extend(noise_floor_warnings(problem, report.checks))
        report.warnings.extend(
            float32_allowance_warning(
                problem,
                report.checks,
                lambda tensor: gradient_scale(objective, tensor),
                ANALYTIC_ULPS,
            )
        )
    except KeyboardInterrupt as stop:
        # the tensors in progress, with the elements they finished (engine/elements.py,
        # engine/schedule.py)
        partial = getattr(stop, "partial_check", None)
        if partial is not None:
            report.checks.append(partial)
        report.checks.extend(getattr(stop, "partial_checks", ()))
        report.warnings.extend(not_reached(checked, report))
        report.interrupted = True
        report.total_s = time.perf_counter() - started
        report.forward_passes = objective.forward_passes
        raise CheckInterrupted(report) from None
    report.forward_passes = objective.forward_passes + sum(v.checked for v in report.layers)
    report.total_s = time.perf_counter() - started
    if budgeted:
        report.error = budget.unreached(report, problem.settings.time_budget)
    return report


def not_reached(checked: list[str], report: Report) -> list[str]:
    """The note of a stopped check on the selected tensors it never began (none: [])."""
    begun = {c.name for c in report.checks}
    missing = [t for t in checked if t not in begun]
    if not missing:
        return []
    names = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return [f"stopped before {len(missing)} tensor(s) were checked: {names}"]


def _check_tensors(
    problem,
    objective,
    checked,
    plan,
    tol,
    rng,
    tracker,
    finished,
    helpers=None,
    prepared_in=0.0,
    idle=None,
    helping=None,
) -> list[str]:
    """Check each selected tensor in turn, handing each to ``finished``; returns notes
    for the report. Full and sample mode: the plan's elements in chunks, shared with the
    helpers when they pay (engine/schedule.py; ``helping`` hands them work of another
    kind as they start, ``idle`` runs while this process would only wait for their last
    chunks). Fast mode: directions first,
    element-wise only for the tensors whose direction failed. A tensor the time budget
    did not reach is reported unchecked."""
    central = problem.settings.method is Method.CENTRAL
    if problem.settings.mode is Mode.FAST and central:
        fast_checks, notes = fast.fast_checks(problem, objective, checked, tol, rng, tracker)
        finished(*fast_checks)
        return notes
    if central and problem.settings.mode in (Mode.FULL, Mode.SAMPLE):
        check_plan(
            problem,
            objective,
            checked,
            plan,
            tol,
            tracker,
            finished,
            helpers,
            prepared_in,
            idle,
            helping,
        )
        return []
    directions = np.random.default_rng([problem.settings.seed, 1])  # --method taylor
    for tensor in checked:
        tracker.begin(tensor)
        try:
            if problem.settings.method is Method.TAYLOR:
                shape = user_shape(problem, tensor)
                finished(taylor_check(objective, tensor, shape, directions))
                tracker.tick(len(plan[tensor]))
            else:
                finished(check_tensor(problem, objective, tensor, plan[tensor], tol, tracker.tick))
        except OutOfTime:
            finished(unchecked(problem, objective, tensor, HowChecked.BUDGET))
    return []


def settings_dict(problem: Problem, tol: Tolerances) -> dict:
    """The report's ``settings``, with the tolerances in force."""
    return report_settings(
        problem.settings, problem.dtype, eps=tol.eps, atol=tol.atol, rtol=tol.rtol
    )
