"""Per-layer isolation and blame.

A wrong backward in one node makes every tensor whose gradient passes through it fail
too. Each node's own backward (and the loss's) is therefore checked in isolation: its
vector-Jacobian product against the numeric VJP of that node alone, fed its real inputs
and the real upstream delta (float64 copies), so that a node whose backward is right
passes even when a node above it is wrong (engine/blame.py then names the node behind
each failure).
"""

from __future__ import annotations

import copy
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from ..problem import Mode, Problem
from ..report import LayerVerdict, Report
from . import fast
from .blame import LOSS
from .compare import ElementVerdict, Tolerances
from .diagnose import diagnose
from .elements import check_elements, tensor_check
from .kinks import break_ties, split_upstream
from .objective import LayerObjective, LossObjective, NetworkObjective, labelled, layer_energy
from .passes import Gradients, Trace, loss_forward, node_forward, reduce_losses
from .shift import joint_shift_test, shift_test, ties_across

if TYPE_CHECKING:
    import concurrent.futures


class Isolation(str, Enum):
    """How the per-layer isolation runs."""

    ELEMENTS = "elements"  # every element of every tensor of every layer
    DIRECTIONS = "directions"  # random directions first, element-wise only where one fails
    SKIP = "skip"  # not at all (--fast when every network tensor agreed)


def isolation_mode(problem: Problem, report: Report) -> Isolation:
    """How the per-layer isolation runs.

    Element-wise isolation costs about as much as the network check itself. It serves
    blame, so it stays element-wise when a network tensor failed (in full and sample
    mode, and in fast mode too), and goes direction first (engine/fast.py:
    element-wise only where a direction disagrees) under budget mode. When every network
    tensor passed,
    full and sample mode check each layer direction first, and fast mode skips the
    isolation (``layers`` stays empty and a note says so): it would cost more than the
    fast check itself. Unless a network tensor passed with kinks, or after its direction
    disagreed (localised): then fast mode too checks each layer direction first, for
    the shift test at ties (engine/shift.py).
    """
    passed = all(c.passed for c in report.checks)
    if problem.settings.mode is Mode.FAST:
        # a network tensor failed element-wise: blame and the compound-kink rules lean
        # on each layer's own verdict, which directions alone can get wrong where a
        # tensor mixes magnitudes (one step for values of 1e-6 and of 3000)
        if not passed:
            return Isolation.ELEMENTS
        # a pass that took kinks: each tied element alone can sit between its slopes
        # while together they sum wrong, which only a layer's own shift test sees
        # (engine/shift.py: a max pool routing its delta to every tied maximum); and a
        # pass whose directions disagreed, every element then passing on its own: the
        # disagreement is what moving elements together showed (a sort giving each tied
        # zero its tie's whole delta: each element at the noise floor alone)
        doubt = any(c.kinks or c.localised for c in report.checks)
        return Isolation.DIRECTIONS if doubt else Isolation.SKIP
    if problem.settings.mode is Mode.BUDGET:
        return Isolation.DIRECTIONS
    return Isolation.DIRECTIONS if passed else Isolation.ELEMENTS


def objectives(problem: Problem, net: NetworkObjective, trace: Trace, grads: Gradients):
    """(name, type, objective) of every node alone, then of the loss alone.

    Each is checked at the very point its backward saw: its inputs from the analytic
    pass (in the problem's dtype; float32 values upcast, so a tie float32 rounding made
    is a tie here too), run forward afresh in float64 for the base value (no cache that
    user code could have changed), with the real upstream delta.
    """
    out = []
    for node in problem.network:
        delta = grads.deltas[node.name].astype(np.float64)
        slots = [grads.contributions[(node.name, s)] for s in range(len(node.inputs))]
        analytic = labelled(node, slots, grads.per_use[node.name])
        xs = [trace.values[v].astype(np.float64) for v in node.inputs]
        params = net.params[node.owner]
        with np.errstate(all="ignore"):
            y, _ = node_forward(node, xs, params)
        obj = LayerObjective(node, xs, params, delta, layer_energy(y, delta), analytic)
        out.append((node.name, node.type, obj))
    output = problem.network.output
    y = trace.values[output].astype(np.float64)
    with np.errstate(all="ignore"):
        losses, _ = loss_forward(problem.loss, y, net.target)
    f0 = float(reduce_losses(losses, y.shape[0], problem.loss.reduction)[0])
    loss_obj = LossObjective(problem, y, net.target, f0, {"input": grads.deltas[output]})
    out.append((LOSS, problem.loss.type, loss_obj))
    return out


def isolate_layers(
    problem: Problem,
    net: NetworkObjective,
    trace: Trace,
    grads: Gradients,
    tol: Tolerances,
    rng: np.random.Generator,
    how: Isolation = Isolation.ELEMENTS,
) -> list[LayerVerdict]:
    """Each node's (and the loss's) own backward against its own numeric VJP, at the
    inputs of ``trace`` (the analytic pass)."""
    if how is Isolation.SKIP:
        return []
    judge = directional_verdict if how is Isolation.DIRECTIONS else element_verdict
    return [
        judge(obj, name, type_, problem, tol, rng)
        for name, type_, obj in objectives(problem, net, trace, grads)
    ]


class Ahead:
    """The isolation run ahead of its turn: by a helper, handed over as the helpers get
    their first work (``send``: it runs there alongside the element-wise check), or here,
    while this process would only wait for the helpers' last chunks (``run``;
    engine/schedule.py ``helping`` and ``idle``).

    Full and sample mode isolate direction first when every network tensor passed
    (``isolation_mode``), so that is what runs ahead, and only while every tensor
    handed over so far passed. It draws from a copy of the generator: the result is
    taken, with the copy's state, only when the check ends in the mode it assumed; a
    run ahead that is dropped, or that raised (a helper that died: the check does not
    depend on it), leaves everything as it was, and the isolation runs in its turn as
    it would have. Either way the report is the one a single process gives
    (tests/test_jobs.py)."""

    def __init__(self, problem, net, trace, grads, tol, rng, report: Report):
        self.args = (problem, net, trace, grads, tol)
        self.rng, self.report = rng, report
        self.layers: list[LayerVerdict] | None = None
        self.state: dict | None = None
        self.remote: concurrent.futures.Future | None = None

    def _assumable(self) -> bool:
        """Whether the direction-first isolation is still the one the check may end in."""
        problem = self.args[0]
        if problem.settings.mode not in (Mode.FULL, Mode.SAMPLE):
            return False
        return all(c.passed for c in self.report.checks)

    def send(self, helpers) -> None:
        """Hand the isolation to the helpers (engine/schedule.py ``Helpers.isolate``)."""
        isolate = getattr(helpers, "isolate", None)
        if isolate is None or not self._assumable():
            return
        problem, tol = self.args[0], self.args[4]
        try:
            self.remote = isolate(copy.deepcopy(self.rng), problem.settings, tol)
        except Exception:  # no helper to take it: it runs here
            self.remote = None

    def run(self) -> None:
        if self.remote is not None or not self._assumable():
            return  # a helper has it
        rng = copy.deepcopy(self.rng)
        try:
            self.layers = isolate_layers(*self.args, rng, Isolation.DIRECTIONS)
        except Exception:  # raised again, where the isolation runs in its turn
            self.layers = None
            return
        self.state = rng.bit_generator.state

    def take(self, how: Isolation) -> list[LayerVerdict] | None:
        """The layers' verdicts run ahead when ``how`` is the mode they assumed (the
        generator then moves on as if they had been run now), else None. A helper's
        result is waited for."""
        remote, self.remote = self.remote, None
        if how is not Isolation.DIRECTIONS:
            if remote is not None:
                remote.cancel()
            return None
        if remote is not None:
            try:
                self.layers, self.state = remote.result()
            except Exception:  # a helper that died or could not rebuild: run here
                return None
        if self.layers is None:
            return None
        self.rng.bit_generator.state = self.state
        return self.layers


class _Fold:
    """One layer's verdict, folded from the element-wise verdicts of its tensors."""

    def __init__(self, name: str, type_: str, tensors: list[str], directions: int = 0):
        self.verdict = LayerVerdict(
            name, type_, True, 0.0, 0.0, 0, 0, {t: True for t in tensors}, directions=directions
        )
        self.diagnoses: list[str] = []
        #: each input's kinks (flat positions), for the joint shift test
        self.kinks: dict[str, np.ndarray] = {}

    def add(self, obj, tensor: str, index: np.ndarray, v: ElementVerdict, problem: Problem):
        wrong, unsure = bool(v.failed.any()), bool(v.inconclusive.any())
        ok = not wrong and not unsure
        verdict = self.verdict
        verdict.tensors_ok[tensor] = False if wrong else None if unsure else True
        verdict.passed = verdict.passed and ok
        verdict.kinks += int(v.kink.sum())
        verdict.inconclusive += int(v.inconclusive.sum())
        verdict.checked += len(index)
        if len(index):
            verdict.max_abs_error = max(verdict.max_abs_error, float(np.max(v.abs_error)))
            verdict.max_rel_error = max(verdict.max_rel_error, float(np.max(v.rel_error)))
        if wrong:  # say what is wrong with this layer's own backward
            value = obj.tensors()[tensor]
            mode = problem.settings.mode.value
            own = tensor_check(tensor, obj.analytic[tensor], index, v, value.shape, mode)
            found = diagnose(own, batch_size=problem.batch_size, values=value)
            what = _gradient_label(verdict.name, tensor)
            self.diagnoses.append(f"{what}: {found}" if found else f"{what} is wrong")

    def shifted(self, obj, tensor: str, v: ElementVerdict, problem: Problem, tol: Tolerances):
        """An input whose element-wise check met kinks, its tied elements judged jointly
        (engine/shift.py): each tied element within its own slopes can still sum wrong."""
        if not v.kink.any():
            return
        kinks = np.flatnonzero(np.asarray(v.kink).reshape(-1))
        self.kinks[tensor] = kinks
        found = shift_test(obj, tensor, tol.eps, problem, kinks, problem.settings.max_memory)
        if found is None or not found.failed:
            return
        self.verdict.tensors_ok[tensor] = False
        self.verdict.passed = False
        self.diagnoses.append(f"{_gradient_label(self.verdict.name, tensor)}: {found.diagnosis()}")

    def joined(self, obj, problem: Problem, tol: Tolerances):
        """The tensors of a layer of several (inputs and parameters alike), their kinks
        and their ties across tensors judged jointly (engine/shift.py
        ``joint_shift_test``), once each one's own tests passed: an element-wise max of
        two equal inputs is a kink of each alone (or passes a one-sided test along each
        one's gradient), and a backward routing the delta to both sat within each one's
        slopes; so did a learned clip bound tied with its input (found by hunts)."""
        values = obj.tensors() if isinstance(obj, LayerObjective) else {}
        slots = list(values)
        if len(slots) < 2 or not self.verdict.passed:
            return
        across = ties_across(values)
        none = np.zeros(0, dtype=np.intp)
        kinks = {t: np.union1d(self.kinks.get(t, none), across[t]).astype(np.intp) for t in slots}
        if sum(1 for k in kinks.values() if len(k)) < 2:
            return
        found = joint_shift_test(obj, kinks, tol.eps, problem, problem.settings.max_memory)
        if found is None or not found.failed:
            return
        self.verdict.passed = False
        moved = [t for t in slots if len(kinks[t])]
        for t in moved:
            self.verdict.tensors_ok[t] = False
        labels = ", ".join(_gradient_label(self.verdict.name, t) for t in moved)
        self.diagnoses.append(f"{labels} together: {found.diagnosis()}")

    def done(self) -> LayerVerdict:
        self.verdict.diagnosis = "; ".join(self.diagnoses) or None
        return self.verdict


def _gradient_label(layer: str, tensor: str) -> str:
    """How a layer's own gradient is called in its diagnosis: ``dx`` (what it passes
    down; ``dx[1]`` for a second input), ``dy`` for the loss, ``weight`` for a param."""
    if tensor == "input":
        return "dy" if layer == LOSS else "dx"
    if tensor.startswith("input["):
        return "dx" + tensor[len("input") :]
    return tensor.rpartition(".")[2]


def check_layer_tensor(obj, tensor: str, index: np.ndarray, problem: Problem, tol: Tolerances):
    v = check_elements(obj, tensor, index, tol, problem.settings.max_memory)
    if isinstance(obj, LayerObjective):  # ties where several kinks meet: engine/kinks.py
        v = split_upstream(obj, tensor, index, v, tol, problem.settings.max_memory, problem.dtype)
        v = break_ties(obj, tensor, index, v, tol, problem.settings.max_memory)
    return v


def element_verdict(
    obj, name: str, type_: str, problem: Problem, tol: Tolerances, rng: np.random.Generator
) -> LayerVerdict:
    """Element-wise check of every element of every tensor of an isolated layer, folded
    into one verdict (``rng`` unused: the signature is ``directional_verdict``'s).

    Every element, in sample mode too: this runs when a network tensor failed, and blame
    needs each layer's complete verdict (``LayerVerdict.every_element``). A sample of
    the layer's own elements missed the few a wrong backward gets wrong (a global max
    pool routing its gradient to the transposed argmax: the run failed and no layer was
    blamed; found by a hunt)."""
    fold = _Fold(name, type_, list(obj.tensors()))
    for tensor, value in obj.tensors().items():
        index = np.arange(value.size)
        v = check_layer_tensor(obj, tensor, index, problem, tol)
        fold.add(obj, tensor, index, v, problem)
        fold.shifted(obj, tensor, v, problem, tol)
    fold.joined(obj, problem, tol)
    fold.verdict.every_element = True
    return fold.done()


def directional_verdict(
    obj, name: str, type_: str, problem: Problem, tol: Tolerances, rng: np.random.Generator
) -> LayerVerdict:
    """One layer's own backward, direction first: element-wise only where a direction fails.

    Reports what was done: ``directions`` directions over the layer's tensors, and
    ``checked`` elements checked one by one (0 when every direction agreed).
    """
    names = list(obj.tensors())
    a_eps = fast.analytic_eps(problem)
    whole = fast.run_directions(obj, names, fast.DIRECTIONS, rng, tol.eps, a_eps)
    fold = _Fold(name, type_, names, directions=len(whole))
    if all(d.passed for d in whole):
        return fold.done()
    localise, _ = fast.suspects(obj, names, rng, tol.eps, a_eps)
    fold.verdict.directions += len(names)
    fold.verdict.every_element = set(localise) == set(names)  # else some on directions alone
    for t in localise:
        # ties at the point itself (ReLU zeros in a max-pool window) fail every random
        # direction: one along the analytic gradient's support settles most of them
        g = np.asarray(obj.analytic[t], dtype=np.float64).reshape(obj.tensors()[t].shape)
        fold.verdict.directions += 1
        if fast.one_sided_test(obj, {t: fast.support_direction(g, rng)}, tol.eps, a_eps).passed:
            continue
        index = np.arange(obj.tensors()[t].size)
        v = check_layer_tensor(obj, t, index, problem, tol)
        fold.add(obj, t, index, v, problem)
        fold.shifted(obj, t, v, problem, tol)
    fold.joined(obj, problem, tol)
    return fold.done()


__all__ = [
    "Isolation",
    "directional_verdict",
    "element_verdict",
    "isolate_layers",
    "isolation_mode",
    "objectives",
]
