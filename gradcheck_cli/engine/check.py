"""Orchestration: one problem in, one Report out.

1. analytic forward and backward in the problem's dtype;
2. a float64 forward trace, the prefix cache of the numeric side;
3. every selected tensor checked element-wise against central differences;
4. every layer's (and the loss's) own backward checked in isolation, to blame the
   layer whose backward is wrong and mark the failures below it as consequences;
5. the ``expect:`` values compared with the engine's.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..options import report_settings
from ..problem import Method, Mode, Problem
from ..report import ExpectationResult, LayerVerdict, Report, TensorCheck
from . import blas, budget, fast, memory, numeric
from .compare import judge, within
from .diagnose import diagnose
from .kinks import JUMP_KEY, settle_compound_kinks, split_upstream
from .network import Gradients, Trace, backward, forward, problem_params, require_finite
from .objective import LayerObjective, LossObjective, NetworkObjective
from .taylor import taylor_check

ProgressCallback = Callable[[int, int], None]  # (elements done, elements in total)

#: float32 problems: the analytic side carries ~1e-7 relative rounding, so the default
#: tolerances are multiplied by this factor (atol 1e-7 -> 1e-5, rtol 1e-5 -> 1e-3).
FLOAT32_TOLERANCE_FACTOR = 100.0


class CheckInterrupted(Exception):
    """Ctrl-C during a check; ``report`` holds what was finished."""

    def __init__(self, report: Report):
        super().__init__("interrupted")
        self.report = report


@dataclass
class Tolerances:
    atol: float
    rtol: float
    eps: float
    strict_kinks: bool


def select_tensors(problem: Problem) -> tuple[list[str], list[str]]:
    """(checked, skipped) tensor names under the ``only`` globs."""
    names = problem.tensor_names()
    only = problem.settings.only
    if not only:
        return names, []
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in only)]
    return chosen, [n for n in names if n not in chosen]


def select_elements(size: int, problem: Problem, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to check in a tensor of ``size`` elements (sorted)."""
    s = problem.settings
    if s.mode in (Mode.SAMPLE, Mode.BUDGET) and s.sample is not None and s.sample < size:
        return np.sort(rng.choice(size, size=s.sample, replace=False))
    return np.arange(size)


def tolerances(problem: Problem) -> tuple[Tolerances, list[str]]:
    """The tolerances in force, scaled for float32 when the user kept the defaults."""
    s = problem.settings
    atol, rtol, notes = s.atol, s.rtol, []
    if problem.dtype == "float32":
        from ..problem import CheckSettings

        default = CheckSettings()
        if (atol, rtol) == (default.atol, default.rtol):
            atol *= FLOAT32_TOLERANCE_FACTOR
            rtol *= FLOAT32_TOLERANCE_FACTOR
            notes.append(
                f"float32: analytic gradients in float32, numeric reference in float64; "
                f"tolerances scaled by {FLOAT32_TOLERANCE_FACTOR:g} to atol={atol:g}, rtol={rtol:g}"
            )
    return Tolerances(atol, rtol, s.eps, s.strict_kinks), notes


def user_shape(problem: Problem, tensor: str) -> tuple[int, ...]:
    if tensor == "input":
        return tuple(problem.input_user_shape)
    layer, _, param = tensor.rpartition(".")
    spec = next(s for s in problem.layers if s.name == layer)
    return tuple(spec.user_shapes.get(param, spec.params[param].shape))


@blas.single_threaded  # thousands of small BLAS calls: threads cost more than they give
def run_check(problem: Problem, progress: ProgressCallback | None = None) -> Report:
    """Check every gradient the problem describes; see the module docstring."""
    started = time.perf_counter()
    memory.require_fits(problem)  # a check too large is refused before any work (exit 2)
    tol, notes = tolerances(problem)
    params = problem_params(problem)
    trace, grads = analytic_pass(problem, params)

    objective = network_objective(problem, trace, grads)
    checked, skipped = select_tensors(problem)
    rng = np.random.default_rng(problem.settings.seed)
    plan = {t: select_elements(objective.tensors()[t].size, problem, rng) for t in checked}
    if problem.settings.mode is Mode.BUDGET and problem.settings.time_budget is not None:
        plan, budget_note = budget.plan(problem, objective, checked, tol, rng, started)
        notes = [*notes, budget_note]
    total = sum(len(ix) for ix in plan.values())
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress is not None:
            progress(done[0], total)

    report = Report(
        config=problem.path,
        name=problem.name,
        loss=trace.loss,
        settings=settings_dict(problem, tol),
        skipped=skipped,
        warnings=[*problem.warnings, *notes],
    )
    try:
        directions = np.random.default_rng([problem.settings.seed, 1])  # --method taylor
        if problem.settings.mode is Mode.FAST and problem.settings.method is Method.CENTRAL:
            # directions first; element-wise only for the tensors whose direction failed
            fast_checks, fast_notes = fast.fast_checks(problem, objective, checked, tol, rng, tick)
            report.checks.extend(fast_checks)
            report.warnings.extend(fast_notes)
            checked = []
        for tensor in checked:
            if problem.settings.method is Method.TAYLOR:
                shape = user_shape(problem, tensor)
                report.checks.append(taylor_check(objective, tensor, shape, directions))
                tick(len(plan[tensor]))
                continue
            report.checks.append(check_tensor(problem, objective, tensor, plan[tensor], tol, tick))
        report.expectations = compare_expectations(problem, trace, grads)
        how = isolation_mode(problem, report)
        report.layers = isolate_layers(problem, objective, grads, tol, rng, how)
        if how == "skip":
            report.warnings.append(fast.ISOLATION_SKIPPED)
        settle_compound_kinks(report, problem, tol, objective, problem.settings.max_memory)
        mark_consequences(report, problem)
        for c in report.checks:
            if not c.passed:
                c.diagnosis = diagnose(c, batch_size=problem.batch_size)
    except KeyboardInterrupt:
        report.interrupted = True
        report.total_s = time.perf_counter() - started
        report.forward_passes = objective.forward_passes
        raise CheckInterrupted(report) from None
    report.forward_passes = objective.forward_passes + sum(v.checked for v in report.layers)
    report.total_s = time.perf_counter() - started
    return report


def analytic_pass(problem: Problem, params) -> tuple[Trace, Gradients]:
    """Forward and backward in the problem's dtype, refusing NaN/Inf (exit 3)."""
    with np.errstate(all="ignore"):
        trace = forward(problem, problem.x, params)
    for spec, a in zip(problem.layers, trace.activations[1:], strict=True):
        require_finite(f"the output of layer {spec.name!r}", a)
    require_finite("the loss", trace.loss)
    with np.errstate(all="ignore"):
        grads = backward(problem, trace, params)
    require_finite("the gradient with respect to the input", grads.dx)
    for layer, g in grads.params.items():
        for p, v in g.items():
            require_finite(f"the gradient of {layer}.{p}", v)
    return trace, grads


def network_objective(problem: Problem, trace: Trace, grads: Gradients) -> NetworkObjective:
    """The float64 objective; for float32 problems an upcast copy of the forward."""
    if problem.x.dtype == np.float64:
        params64, trace64 = problem_params(problem), trace
    else:
        params64 = problem_params(problem, np.float64)
        with np.errstate(all="ignore"):
            trace64 = forward(problem, problem.x.astype(np.float64), params64)
        require_finite("the float64 reference loss", trace64.loss)
    target = problem.loss.target
    if target is not None and np.issubdtype(target.dtype, np.floating):
        target = target.astype(np.float64)
    analytic = {"input": grads.dx}
    for spec in problem.layers:
        for p, g in grads.params[spec.name].items():
            analytic[f"{spec.name}.{p}"] = g
    return NetworkObjective(
        problem=problem,
        x=trace64.activations[0].astype(np.float64),
        params=params64,
        activations=[a.astype(np.float64) for a in trace64.activations],
        target=target,
        f0=trace64.loss,
        analytic=analytic,
    )


def check_elements(
    objective, tensor: str, index: np.ndarray, tol: Tolerances, max_memory: int, tick=None
):
    """Element-wise verdict of one tensor of any objective: (Differences, ElementVerdict)."""
    with np.errstate(all="ignore"):
        d = numeric.differences(objective, tensor, index, tol.eps, max_memory, tick)
    from ..errors import NumericalError

    stuck = (d.h_plus <= 0) | (d.h_minus <= 0) | ~np.isfinite(d.h_plus + d.h_minus)
    if np.any(stuck):  # v + eps == v: no difference can be taken, which is not a wrong gradient
        i = int(index[np.argmax(stuck)])
        value = float(objective.tensors()[tensor].reshape(-1)[i])
        raise NumericalError(
            f"{tensor} has the value {value:g} at flat index {i}, where a step of eps="
            f"{tol.eps:g} is lost to rounding (v + eps == v in float64), so no finite "
            "difference can be taken; use smaller values or a larger --eps"
        )
    if not np.all(np.isfinite(d.f_plus)) or not np.all(np.isfinite(d.f_minus)):
        raise NumericalError(
            f"a perturbed forward pass for {tensor} gave NaN or Inf; "
            "the check cannot be carried out (try a smaller --eps)"
        )
    analytic = objective.analytic[tensor].reshape(-1)[index]
    return d, judge(analytic, d, tol.atol, tol.rtol, tol.strict_kinks)


def check_tensor(
    problem: Problem,
    objective: NetworkObjective,
    tensor: str,
    index: np.ndarray,
    tol: Tolerances,
    tick,
) -> TensorCheck:
    """Check the chosen elements of one tensor and shape the result as the user wrote it."""
    _, v = check_elements(objective, tensor, index, tol, problem.settings.max_memory, tick)
    mode = problem.settings.mode.value
    shape = user_shape(problem, tensor)
    return tensor_check(tensor, objective.analytic[tensor], index, v, shape, mode)


def tensor_check(
    tensor: str, analytic: np.ndarray, index: np.ndarray, v, shape: tuple[int, ...], mode: str
) -> TensorCheck:
    """A TensorCheck in ``shape`` from the verdict ``v`` on the flat elements ``index``."""
    size = analytic.size

    def scatter(values, fill, dtype=np.float64):
        out = np.full(size, fill, dtype=dtype)
        out[index] = values
        return out.reshape(shape)

    layer, _, param = tensor.rpartition(".")
    return TensorCheck(
        name=tensor,
        layer=layer or None,
        param=param if layer else None,
        analytic=analytic.astype(np.float64).reshape(shape),
        numeric=scatter(v.numeric, np.nan),
        checked_mask=scatter(True, False, bool),
        failed_mask=scatter(v.failed, False, bool),
        kink_mask=scatter(v.kink, False, bool),
        abs_error=scatter(v.abs_error, np.nan),
        rel_error=scatter(v.rel_error, np.nan),
        mode=mode if len(index) < size else "full",
        extra={JUMP_KEY: scatter(v.failed & v.jump, False, bool)},
    )


def compare_expectations(problem: Problem, trace: Trace, grads: Gradients):
    """Each ``expect:`` value against the engine's, reshaped to the user's shape."""
    layer_index = {s.name: k for k, s in enumerate(problem.layers)}
    results = []
    for e in problem.expectations:
        key = e.key
        if key == "loss":
            actual = np.asarray(trace.loss)
        elif key == "input.grad":
            actual = grads.dx
        elif key.endswith(".grad"):
            layer, param = key[: -len(".grad")].rsplit(".", 1)
            actual = grads.params[layer][param]
        elif key.endswith(".output"):
            actual = trace.activations[layer_index[key[: -len(".output")]] + 1]
        else:  # <layer>.delta
            actual = grads.deltas[layer_index[key[: -len(".delta")]]]
        actual = np.asarray(actual, dtype=np.float64).reshape(e.value.shape)
        expected = np.asarray(e.value, dtype=np.float64)
        ok = within(actual, expected, problem.expect_atol, problem.expect_rtol)
        results.append(
            ExpectationResult(
                name=key,
                expected=expected,
                actual=actual,
                passed=bool(np.all(ok)),
                max_abs_error=float(np.max(np.abs(actual - expected))) if actual.size else 0.0,
            )
        )
    return results


def isolate_layers(
    problem: Problem,
    net: NetworkObjective,
    grads: Gradients,
    tol: Tolerances,
    rng: np.random.Generator,
    how: str = "elements",
) -> list[LayerVerdict]:
    """Each layer's (and the loss's) own backward against its own numeric VJP.

    The layer is fed its real input and the real upstream delta (float64 copies), so a
    layer whose backward is right passes even when a layer above it is wrong.
    ``directional``: random directions first, element-wise only where one fails.
    """
    if how == "skip":
        return []
    judge = fast.directional_verdict if how == "directions" else judge_objective
    verdicts = []
    for k, spec in enumerate(problem.layers):
        delta = grads.deltas[k].astype(np.float64)
        analytic = {"input": grads.deltas[k - 1] if k else grads.dx}
        analytic.update({f"{spec.name}.{p}": g for p, g in grads.params[spec.name].items()})
        x = net.activations[k]
        with np.errstate(all="ignore"):
            y = net.activations[k + 1]
        obj = LayerObjective(
            spec, x, net.params[spec.name], delta, float((y * delta).sum()), analytic
        )
        verdicts.append(judge(obj, spec.name, spec.type, problem, tol, rng))
    loss_obj = LossObjective(
        problem, net.activations[-1], net.target, net.f0, {"input": grads.deltas[-1]}
    )
    verdicts.append(judge(loss_obj, "loss", problem.loss.type, problem, tol, rng))
    return verdicts


def isolation_mode(problem: Problem, report: Report) -> str:
    """How the per-layer isolation runs: "elements", "directions" or "skip".

    Element-wise isolation costs about as much as the network check itself. It serves
    blame, so it stays element-wise when a network tensor failed (in full and sample
    mode), and goes direction first (engine/fast.py: element-wise only where a
    direction disagrees) under --fast and --time-budget. When every network tensor
    passed, full and sample mode check each layer direction first, and --fast skips the
    isolation (``layers`` stays empty and a note says so): it would cost more than the
    fast check itself.
    """
    passed = all(c.passed for c in report.checks)
    if problem.settings.mode is Mode.FAST:
        return "skip" if passed else "directions"
    if problem.settings.mode is Mode.BUDGET:
        return "directions"
    return "directions" if passed else "elements"


def judge_objective(
    obj, name: str, type_: str, problem: Problem, tol: Tolerances, rng: np.random.Generator
) -> LayerVerdict:
    """Element-wise check of every tensor of an isolated layer, folded into one verdict."""
    failed = kinks = checked = 0
    max_abs = max_rel = 0.0
    per_tensor = {}
    diagnoses = []
    for tensor, value in obj.tensors().items():
        index = select_elements(value.size, problem, rng)
        _, v = check_elements(obj, tensor, index, tol, problem.settings.max_memory)
        if isinstance(obj, LayerObjective):  # ties where several kinks meet: engine/kinks.py
            v = split_upstream(obj, tensor, index, v, tol, problem.settings.max_memory)
        per_tensor[tensor] = int(v.failed.sum()) == 0
        if not per_tensor[tensor]:  # say what is wrong with this layer's own backward
            mode = problem.settings.mode.value
            own = tensor_check(tensor, obj.analytic[tensor], index, v, value.shape, mode)
            # "dx": the gradient it passes down (for the loss, dE/dy of the network output)
            what = (
                tensor.rpartition(".")[2] if tensor != "input" else "dy" if name == "loss" else "dx"
            )
            found = diagnose(own, batch_size=problem.batch_size)
            diagnoses.append(f"{what}: {found}" if found else f"{what} is wrong")
        failed += int(v.failed.sum())
        kinks += int(v.kink.sum())
        checked += len(index)
        if len(index):
            max_abs = max(max_abs, float(np.max(v.abs_error)))
            max_rel = max(max_rel, float(np.max(v.rel_error)))
    return LayerVerdict(
        name,
        type_,
        failed == 0,
        max_abs,
        max_rel,
        kinks,
        checked,
        per_tensor,
        diagnosis="; ".join(diagnoses) or None,
    )


def mark_consequences(report: Report, problem: Problem) -> None:
    """Point each failing tensor whose own layer is right at the wrong layer above it.

    A tensor of layer j (the input: j = -1) whose own isolated check passed can only be
    wrong because a delta arriving from above is: blame the nearest layer m > j whose dx
    (or the loss, whose dy) is wrong.
    """
    verdicts = {v.name: v for v in report.layers}
    order = [s.name for s in problem.layers] + ["loss"]
    for c in report.checks:
        if c.passed:
            continue
        j = -1 if c.name == "input" else order.index(c.layer)
        if j >= 0 and not verdicts[c.layer].tensors_ok.get(c.name, True):
            continue  # its own layer's backward is wrong for this very tensor
        for name in order[j + 1 :]:
            if not verdicts[name].tensors_ok.get("input", True):
                c.consequence_of = name
                break


def settings_dict(problem: Problem, tol: Tolerances) -> dict:
    """The report's ``settings``, with the tolerances in force (float32 scales them)."""
    return report_settings(
        problem.settings, problem.dtype, eps=tol.eps, atol=tol.atol, rtol=tol.rtol
    )
