"""Purity probes: gradcheck proves that every layer (and the loss) behaves like the pure
function the protocol asks for, instead of trusting it (contract section 4).

Where they run. Once per check, after the analytic pass (engine/passes.py) and before
the numeric side (engine/check.py), on every node (and the loss) that runs user code
(``own_code``: gradcheck's own layers and losses are proven pure by its tests and not
called again). Each such node is called again on copies of the very
arrays it read in the analytic pass, through the bare guarded calls
(``passes.guarded_forward``/``guarded_backward``: a plugin's mistake is still a
PluginError naming it), and what it did is found by comparing copies taken before each
call with the arrays after it (engine/copies.py):

- forward, a second time after the analytic pass's call, on equal copies: did it write
  into its inputs or its parameters (``mutates_input``, ``mutates_params``)? Is the
  output the analytic pass's (else ``nondeterministic_forward``)? Does it return, or
  overwrite, memory it returned before?
- backward, twice, with equal copies of ``dy`` and the same cache object and parameter
  arrays, as training code would hold them: did it write into ``dy`` (``mutates_dy``),
  into its cache or its output (``mutates_cache``), its parameters or, through a
  reference kept from forward, its inputs? Do the two answers, and the analytic pass's,
  agree (``backward_not_repeatable``: a gradient buffer never zeroed)?
- a layer declaring ``batch_independent = True``: with row 0 of its input replaced (the
  example moved to row 1 when N = 1), do the other rows of its output still equal the
  analytic pass's (else ``not_batch_independent``)?
- the loss likewise: forward writing into ``y`` or the target, forward determinism,
  backward repeatability and cache writes.

Two results of one computation are compared up to rounding (``copies.close``); whether
an array was written into, exactly (``copies.same``).

Verdicts (``judge``). Findings are data, :class:`~gradcheck_cli.report.LayerProblem`,
listed under the layer by name. Whether one fails the check is decided by running the
network the way a user's training code runs it (``simulate``): no defensive copies,
each layer handed the very array the one before returned, each backward the cache its
forward left and the parameter arrays the network holds; then backward a second time on
the same caches. Every tensor whose gradient there differs from gradcheck's defended
analytic pass fails, with the reason and the layer that caused it (found by running the
real network again with one suspect at a time defended, when there is more than one).
The real network can differ from gradcheck's copies only through a layer that writes
into an array it was handed or answers differently when called again, so it is run
only when a probe found one:

- writing into the input fails when it corrupts a gradient or the loss (a saved
  activation of the layer before, what another reader of the value sees); otherwise it
  is a warning, as PyTorch accepts an in-place operation that corrupts nothing;
- writing into a parameter always fails, that layer and that parameter: parameters are
  the optimizer's to change;
- a backward whose second call differs always fails, that layer, every parameter whose
  gradient changes and every tensor a second backward sweep gets wrong;
- writing into ``dy`` is a warning (it bites only when the array is used again, at a
  fork), writing into the cache a warning unless it makes the second backward differ,
  a false ``batch_independent`` a warning (the node is then checked one copy at a time:
  ``Node.mixes_rows``);
- a non-deterministic forward makes the check impossible: NondeterministicError (exit 3)
  naming the layer and how to seed it.

Nodes found writing into what they are handed, or reusing their output, are marked
``Node.defended`` (the loss: ``LossSpec.defended``) so that the numeric side hands them
copies; clean nodes run uncopied on that hot path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from ..errors import NondeterministicError, PluginError
from ..network import Node
from ..problem import Problem
from ..protocol import Params
from ..report import LayerProblem, LayerVerdict, Report
from .blame import LOSS
from .copies import changed, close, copy_params, copy_tree, max_difference, same, snapshot
from .fastpaths import probe_fast_paths
from .own import own_code
from .passes import (
    Gradients,
    Trace,
    guarded_backward,
    guarded_forward,
    guarded_loss_backward,
    guarded_loss_forward,
    loss_target,
    node_params,
    problem_params,
    reduce_losses,
    reduced_dy,
    tiles_target,
)


class Kind(str, Enum):
    """What a probe found; the ``kind`` of a LayerProblem."""

    MUTATES_INPUT = "mutates_input"
    MUTATES_PARAMS = "mutates_params"
    MUTATES_DY = "mutates_dy"
    MUTATES_CACHE = "mutates_cache"
    BACKWARD_NOT_REPEATABLE = "backward_not_repeatable"
    NONDETERMINISTIC_FORWARD = "nondeterministic_forward"
    NOT_BATCH_INDEPENDENT = "not_batch_independent"
    NOT_PER_EXAMPLE = "not_per_example"
    FAST_PATH_DIFFERS = "fast_path_differs"
    OVERWRITES_OUTPUT = "overwrites_output"


FIX_INPLACE = "write into a new array (y = x * 2, not x *= 2), or copy first (x = x.copy())"
SEEDING = (
    "make it deterministic: draw its random numbers from a generator seeded the same way "
    "on every call (rng = np.random.default_rng(self.seed) inside forward), or draw the "
    "mask once in __init__ and reuse it, as the built-in dropout does with its seed: key; "
    "and keep no counter or other state that forward updates"
)


@dataclass
class Probe:
    """What the probes saw one node (or the loss) do.

    mutated_inputs: the values it wrote into, in forward or later through a reference
    it kept (``target`` for the loss's);
    mutated_params: parameter -> where it was written (``forward``, ``backward``);
    mutated_cache: paths in the cache its backward wrote into; not_repeatable: the
    outputs of backward (``dx``, ``dx[1]``, a parameter name, ``dy`` for the loss) that
    changed on a second call, with the largest change; nondeterministic: how the two
    forwards differed; mixes_rows: how rows of a ``batch_independent`` layer mixed.
    """

    name: str
    type: str
    mutated_inputs: list[str] = field(default_factory=list)
    mutated_params: dict[str, list[str]] = field(default_factory=dict)
    mutated_dy: bool = False
    mutated_cache: list[str] = field(default_factory=list)
    not_repeatable: dict[str, float] = field(default_factory=dict)
    nondeterministic: str | None = None
    reuses_output: bool = False
    mixes_rows: str | None = None

    @property
    def suspect(self) -> bool:
        """A finding that could make the real network's gradients differ."""
        return bool(
            self.mutated_inputs
            or self.mutated_params
            or self.mutated_cache
            or self.not_repeatable
            or self.reuses_output  # another call may overwrite what a layer after it kept
        )

    @property
    def writes_what_it_is_handed(self) -> bool:
        """The numeric side must hand its forward copies."""
        forward_params = any("forward" in w for w in self.mutated_params.values())
        return bool(self.mutated_inputs or forward_params or self.reuses_output)


# --- the probes ------------------------------------------------------------------------


def _labelled(node: Node, out: tuple[list[np.ndarray], Params]) -> dict[str, np.ndarray]:
    """A backward's result by label (``dx``/``dx[s]``, then parameter names), copied."""
    dxs, grads = out
    labels = {("dx" if len(dxs) == 1 else f"dx[{s}]"): d.copy() for s, d in enumerate(dxs)}
    labels.update({p: g.copy() for p, g in grads.items()})
    return labels


def _difference(a: np.ndarray, b: np.ndarray) -> str:
    """``3 of 8 elements differ, by up to 0.5``."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        differ = ~((a64 == b64) | (np.isnan(a64) & np.isnan(b64)))
    return f"{int(differ.sum())} of {a64.size} elements differ, by up to {max_difference(a, b):.3g}"


def probe_node(
    node: Node,
    xs: list[np.ndarray],
    params: Params,
    dy: np.ndarray,
    y0: np.ndarray,
    analytic: dict[str, np.ndarray],
    returned: np.ndarray | None = None,
) -> Probe:
    """Probe one node. xs: its inputs in the analytic pass, params: its parameters, dy:
    its delta, y0: its output there (gradcheck's copy), analytic: its backward's result
    there by label, returned: the array its forward returned there. The analytic pass
    was the first call, the probe's the second. None of these arrays is handed to the
    layer: every call gets copies."""
    probe = Probe(node.name, node.type)

    def written(where: str, before: Params, after: Params) -> None:
        for k in before:
            if not same(before[k], after[k]) and where not in probe.mutated_params.get(k, []):
                probe.mutated_params.setdefault(k, []).append(where)

    def inputs_written(before: list[np.ndarray], after: list[np.ndarray]) -> None:
        for s, (a, b) in enumerate(zip(before, after, strict=True)):
            if not same(a, b) and node.inputs[s] not in probe.mutated_inputs:
                probe.mutated_inputs.append(node.inputs[s])

    # forward, the second call after the analytic pass's: same output, same arrays?
    xs1, ps1 = [x.copy() for x in xs], copy_params(params)
    y1, cache = guarded_forward(node, xs1, ps1)
    first = y1.copy()
    saved = snapshot(cache)
    inputs_written(xs, xs1)
    written("forward", params, ps1)
    # a layer that returns memory it reuses (an output buffer) has overwritten what it
    # returned in the analytic pass, or returned the very same memory
    if returned is not None:
        probe.reuses_output = bool(np.may_share_memory(y1, returned)) or not same(returned, y0)
    if not close(first, y0):
        probe.nondeterministic = _difference(y0, first)
        return probe  # nothing else can be judged on a function that changes

    # backward twice: equal copies of dy, the same cache object and parameter arrays
    # (fresh ones, as the analytic pass had: a forward's writes are judged above)
    kept_xs, ps1 = [x.copy() for x in xs1], copy_params(params)
    kept_ps = copy_params(ps1)
    dy1 = dy.copy()
    once = _labelled(node, guarded_backward(node, dy1, cache, ps1, xs))
    probe.mutated_dy = not same(dy1, dy)
    probe.mutated_cache = changed(saved, cache)
    if not probe.reuses_output and not same(y1, first):
        probe.mutated_cache.append("its output y, after returning it")
    inputs_written(kept_xs, xs1)  # a reference to x kept from forward, written now
    written("backward", kept_ps, ps1)
    twice = _labelled(node, guarded_backward(node, dy.copy(), cache, ps1, xs))
    for label, a in once.items():
        for other in (twice[label], analytic[label]):
            if not close(a, other):
                probe.not_repeatable[label] = max_difference(a, other)
                break
    probe.mixes_rows = _mixes_rows(node, xs, params, y0)
    return probe


def _mixes_rows(node: Node, xs: list[np.ndarray], params: Params, y0: np.ndarray) -> str | None:
    """For a layer that declares ``batch_independent``: how its output rows moved when
    they should not have, or None when they did not.

    One call on two copies of the batch stacked, as the numeric side stacks perturbed
    copies (copy-major: row r of copy p at p * N + r), the first copy's row 0 replaced by
    another row of the same scale. Every other row must come out as the analytic pass's
    output y0 gave it, up to rounding (a batch of another size may take another BLAS
    kernel). Rows 1..N-1 catch batch statistics (row 0's change reaching them); rows
    N..2N-1 catch a result that depends on the batch size, or on the row's position
    beyond r mod N (a mask drawn from a seeded generator for ``x.shape``). For N > 1 a
    third copy holds the rows one place on (row 2N + r is row r + 1 mod N): it catches a
    result that depends on r mod N (a mask per example), which the numeric side would
    get wrong where it runs a copy's rows alone, unless the layer declares
    ``example_dependent`` (the built-in dropout), whose rows then keep their residue.
    """
    if not getattr(node.layer, "batch_independent", False):
        return None
    rng = np.random.default_rng(0)

    def other_row(x: np.ndarray) -> np.ndarray:  # clearly another row, of the same scale
        return x[:1] + (1.0 + np.abs(x[:1])) * rng.standard_normal(x[:1].shape).astype(x.dtype)

    # a third copy with its rows one place on (N > 1), for a layer that does not say its
    # rows depend on their example (``example_dependent``): the numeric side also runs
    # a copy's rows alone, at other positions
    turn = len(xs[0]) > 1 and not getattr(node.layer, "example_dependent", False)
    moved = [np.concatenate([other_row(x), x[1:], x, *([np.roll(x, -1, 0)] * turn)]) for x in xs]
    want = np.concatenate([y0[1:], y0, *([np.roll(y0, -1, 0)] * turn)])
    try:
        y = guarded_forward(node, moved, copy_params(params))[0]
    except PluginError as e:  # it takes no other batch size (a mask of the batch's shape
        # given in its args): not batch independent, checked one copy at a time
        return f"it raised on copies of the batch stacked: {e.message}"
    if y.shape[1:] != want.shape[1:] or y.shape[0] - 1 != want.shape[0]:
        return f"{y.shape[0]} rows of shape {list(y.shape[1:])} for {len(moved[0])} rows"
    if close(y[1:], want):
        return None
    n = len(y0)
    if turn and close(y[1 : 2 * n], want[: 2 * n - 1]):
        moved_on = _difference(y[2 * n :], want[2 * n - 1 :])
        return f"with the batch's rows moved one place, rows came out different: {moved_on}"
    return _difference(y[1:], want)


def probe_loss(problem: Problem, trace: Trace, grads: Gradients) -> Probe:
    """Probe the loss: forward writing into y or the target, forward determinism,
    backward repeatability and writes into its cache."""
    spec = problem.loss
    probe = Probe(LOSS, spec.type)
    y = trace.values[trace.output]
    target = loss_target(problem, y.dtype)

    def target_copy() -> np.ndarray | None:
        return None if target is None else target.copy()

    y1, t1 = y.copy(), target_copy()
    losses, cache = guarded_loss_forward(spec, y1, t1)
    first = losses.copy()
    saved = snapshot(cache)
    if not same(y1, y):
        probe.mutated_inputs.append(trace.output)
    if target is not None and not same(t1, target):
        probe.mutated_inputs.append("target")
    if not close(first, trace.losses):  # the analytic pass was the first call
        probe.nondeterministic = _difference(trace.losses, first)
        return probe
    kept_y = y1.copy()
    once = guarded_loss_backward(spec, cache, y).copy()
    probe.mutated_cache = changed(saved, cache)
    if not same(kept_y, y1) and trace.output not in probe.mutated_inputs:
        probe.mutated_inputs.append(trace.output)  # through a reference kept from forward
    twice = guarded_loss_backward(spec, cache, y).copy()
    if not close(once, twice):
        probe.not_repeatable["dy"] = max_difference(once, twice)
    elif not close(reduced_dy(spec, once), grads.deltas[trace.output]):
        probe.not_repeatable["dy"] = max_difference(
            reduced_dy(spec, once), grads.deltas[trace.output]
        )
    probe.mixes_rows = _loss_mixes_rows(spec, y, target, first)
    return probe


def _loss_mixes_rows(
    spec, y: np.ndarray, target: np.ndarray | None, losses: np.ndarray
) -> str | None:
    """For a loss that declares ``per_example`` (the default): how its losses moved when
    they should not have, or None. One call on two copies of the batch stacked, as the
    numeric side stacks perturbed copies, the first copy's row 0 replaced by another
    row of the same scale: every other row's loss must come out as the analytic pass's
    ``losses`` (N,) gave it, up to rounding. A batch-level loss (a ranking loss over the
    batch) that kept the default was differentiated with the other examples' losses
    taken from the unperturbed batch: numeric values of 0, false kinks, exit 3 (found by
    a hunt)."""
    if not getattr(spec.loss, "per_example", True):
        return None
    rng = np.random.default_rng(0)
    other = y[:1] + (1.0 + np.abs(y[:1])) * rng.standard_normal(y[:1].shape).astype(y.dtype)
    stacked = np.concatenate([other, y[1:], y])
    if target is not None and not tiles_target(spec.loss):
        target = np.concatenate([target, target])
    want = np.concatenate([losses[1:], losses])
    try:
        got = guarded_loss_forward(spec, stacked, None if target is None else target.copy())[0]
    except PluginError as e:  # it takes no other number of rows
        hint = ""
        if tiles_target(spec.loss):
            hint = " (it declares tiles_target = True: does it repeat the N-row target?)"
        return f"it raised on two copies of the batch stacked{hint}: {e.message}"
    if not close(got[1:], want):
        return _difference(got[1:], want)
    # the numeric side also hands it only the rows a perturbation reaches, in any order:
    # the batch's rows reversed, and its first row alone, must keep their losses
    t = None if target is None else target[: len(y)]  # the N rows (doubled above)
    for rows in (np.arange(len(y))[::-1], np.arange(1)):
        try:
            part = guarded_loss_forward(spec, y[rows], None if t is None else t[rows])[0]
        except PluginError as e:
            return f"it raised on {len(rows)} of the batch's rows: {e.message}"
        if not close(part, losses[rows]):
            return f"on {len(rows)} of the batch's rows: {_difference(part, losses[rows])}"
    return None


# --- the real network ------------------------------------------------------------------


@dataclass
class Sweep:
    """One backward sweep of the real network: every tensor's gradient, by name."""

    grads: dict[str, np.ndarray]


@dataclass
class RealRun:
    """The network run as training code runs it (``simulate``).

    loss: its loss; sweeps: the first and the second backward sweep over the same
    caches; corrupted_caches: node -> paths of its cache that changed after its forward
    returned (a saved activation another layer wrote into); corrupted_values: values
    that changed after they were produced, while other layers still read them;
    corrupted_params: parameters (``owner.name``) that changed during the run.
    """

    loss: float
    sweeps: tuple[Sweep, Sweep]
    corrupted_caches: dict[str, list[str]]
    corrupted_values: list[str]
    corrupted_params: list[str] = field(default_factory=list)


def simulate(problem: Problem, bare: Iterable[str], trace: Trace, grads: Gradients) -> RealRun:
    """The network as a user's training code runs it: forward once, then backward twice
    over the same caches (a second step's backward, as far as the caches go).

    bare: the nodes (and ``loss``) that get the very arrays, as in training code: the
    array the layer before returned, the parameter arrays the network holds, the cache
    its forward left. The others get gradcheck's defence: copies in and out, and, while
    what they read is what they read in the analytic pass (trace, grads), that pass's
    answer, so that state a layer keeps between calls cannot show through them. Every
    backward gets its own copy of dy: writing into dy is judged apart (a warning), since
    what it breaks depends on how training code shares delta arrays between branches.
    """
    bare = set(bare)
    network, spec = problem.network, problem.loss
    params = {o: copy_params(ps) for o, ps in problem_params(problem).items()}
    originals = {o: copy_params(ps) for o, ps in params.items()}
    values = {k: v.copy() for k, v in problem.inputs.items()}
    produced = {k: v.copy() for k, v in values.items()}
    caches: dict[str, Any] = {}
    saved: dict[str, dict[str, np.ndarray]] = {}
    memo: dict[str, Any] = {}  # a defended node's answer: (its dy, (dxs, grads))
    for node in network:
        raw = node.name in bare
        if not raw and all(same(values[v], trace.values[v]) for v in node.inputs):
            dxs = [grads.contributions[(node.name, s)] for s in range(len(node.inputs))]
            memo[node.name] = (grads.deltas[node.name], (dxs, grads.per_use[node.name]))
        xs = [values[v] if raw else values[v].copy() for v in node.inputs]
        ps = params[node.owner] if raw else copy_params(params[node.owner])
        y, caches[node.name] = guarded_forward(node, xs, ps)
        values[node.name] = y if raw else y.copy()
        produced[node.name] = y.copy()
        saved[node.name] = snapshot(caches[node.name])
    output = network.output
    raw = LOSS in bare
    if not raw and same(values[output], trace.values[output]):
        memo[LOSS] = grads.deltas[output]
    y = values[output] if raw else values[output].copy()
    target = loss_target(problem, y.dtype)
    target = None if target is None else target.copy()
    losses, loss_cache = guarded_loss_forward(spec, y, target if raw else copy_tree(target))
    loss = float(reduce_losses(losses, y.shape[0], spec.reduction)[0])
    corrupted_caches = {n: p for n, s in saved.items() if (p := changed(s, caches[n]))}
    corrupted_values = [  # a fork's value changed under one of its readers
        v for v in produced if len(network.readers(v)) > 1 and not same(produced[v], values[v])
    ]
    first = _sweep(problem, bare, values, params, caches, loss_cache, memo)
    for n, s in saved.items():  # written during backward, before its own backward ran
        for path in changed(s, caches[n]):
            corrupted_caches.setdefault(n, [])
            if path not in corrupted_caches[n]:
                corrupted_caches[n].append(path)
    second = _sweep(problem, bare, values, params, caches, loss_cache, memo)
    # a parameter changed, by its own layer or by another handed a view of it (a layer
    # that returns its parameter reshaped, the next one writing into its input)
    corrupted_params = [
        f"{o}.{k}" for o, ps in params.items() for k in ps if not same(ps[k], originals[o][k])
    ]
    return RealRun(loss, (first, second), corrupted_caches, corrupted_values, corrupted_params)


def _sweep(
    problem: Problem,
    bare: set[str],
    values: dict[str, np.ndarray],
    params: dict[str, Params],
    caches: dict[str, Any],
    loss_cache: Any,
    memo: dict[str, Any],
) -> Sweep:
    """One backward sweep of ``simulate``; memo holds the defended nodes' answers."""
    network, spec = problem.network, problem.loss
    output = network.output
    if LOSS in bare:
        deltas = {output: reduced_dy(spec, guarded_loss_backward(spec, loss_cache, values[output]))}
    else:
        if LOSS not in memo:
            dy = guarded_loss_backward(spec, copy_tree(loss_cache), values[output])
            memo[LOSS] = reduced_dy(spec, dy.copy())
        deltas = {output: memo[LOSS]}
    own: dict[str, Params] = {}
    for node in reversed(network.nodes):
        delta = deltas.get(node.name)
        if delta is None:
            delta = np.zeros_like(values[node.name])
        xs = [values[v] for v in node.inputs]  # only their shapes and dtypes are read
        raw = node.name in bare
        if not raw and node.name in memo and same(memo[node.name][0], delta):
            dxs, own[node.name] = memo[node.name][1]
        elif raw:
            dxs, own[node.name] = guarded_backward(
                node, delta.copy(), caches[node.name], params[node.owner], xs
            )
        else:
            out = guarded_backward(
                node,
                delta.copy(),
                copy_tree(caches[node.name]),
                copy_params(params[node.owner]),
                xs,
            )
            dxs, own[node.name] = [d.copy() for d in out[0]], copy_params(out[1])
            memo[node.name] = (delta.copy(), (dxs, own[node.name]))
        for value, dx in zip(node.inputs, dxs, strict=True):
            deltas[value] = dx if value not in deltas else deltas[value] + dx
    grads = {
        v: np.array(deltas[v] if v in deltas else np.zeros_like(values[v]), copy=True)
        for v in network.input_names
    }
    for node in network:
        for p, g in own[node.name].items():
            name = f"{node.owner}.{p}"
            grads[name] = g.copy() if name not in grads else grads[name] + g
    return Sweep(grads)


# --- verdicts --------------------------------------------------------------------------


@dataclass
class Purity:
    """What the probes found and what it means for the report.

    problems: layer name (nodes in order, then ``loss``) -> its problems; corrupted:
    tensor -> (the layer to blame, why its gradient fails); types: layer -> type.
    """

    problems: dict[str, list[LayerProblem]]
    corrupted: dict[str, tuple[str, str]]
    types: dict[str, str]

    @property
    def warnings(self) -> list[str]:
        """Every warning-only problem as a line of ``report.warnings``."""
        return [
            f"layer {name!r}: {p.message}"
            for name, problems in self.problems.items()
            for p in problems
            if not p.failure
        ]

    def apply(self, report: Report) -> None:
        """Write the verdicts into a report: each layer's problems (a failing one fails
        the layer, and says why in its diagnosis), and each corrupted tensor's failure,
        reason and blamed layer. Layers the isolation did not judge (``--fast``) get a
        verdict of their own when they have problems."""
        verdicts = {v.name: v for v in report.layers}
        for name, problems in self.problems.items():
            if not problems:
                continue
            verdict = verdicts.get(name)
            if verdict is None:
                verdict = LayerVerdict(name, self.types[name], True, 0.0, 0.0, 0)
                report.layers.append(verdict)
            verdict.problems.extend(problems)
            failures = [p.message for p in problems if p.failure]
            if failures:
                verdict.passed = False
                verdict.diagnosis = "; ".join([*filter(None, [verdict.diagnosis]), *failures])
        for check in report.checks:
            if check.name not in self.corrupted:
                continue
            culprit, reason = self.corrupted[check.name]
            check.corrupted_by = culprit
            check.diagnosis = "; ".join([*filter(None, [check.diagnosis]), reason])
            if check.layer != culprit and check.consequence_of is None:
                check.consequence_of = culprit


def probe(problem: Problem, trace: Trace, grads: Gradients, everything: bool = False) -> Purity:
    """Probe every node and the loss that runs user code (``everything``: gradcheck's
    own too, as its tests do), judge what was found, and mark the nodes the numeric
    side must defend. Raises NondeterministicError (exit 3) for a forward that gives
    different outputs for the same input, PluginError (exit 2) for a protocol error met
    on the way. Gradcheck's own layers and losses are not called again: their probes
    would find nothing and cost a tenth to a fifth of a short check (the batch-8 CNN's
    ``--fast``: convolutions run forward once and backward twice more)."""
    network = problem.network
    params = problem_params(problem)
    probes: dict[str, Probe] = {}
    with np.errstate(all="ignore"):
        for node in network:
            if not everything and own_code(node.layer):
                probes[node.name] = Probe(node.name, node.type)
                continue
            analytic = {
                ("dx" if len(node.inputs) == 1 else f"dx[{s}]"): grads.contributions[(node.name, s)]
                for s in range(len(node.inputs))
            }
            analytic.update(grads.per_use[node.name])
            probes[node.name] = probe_node(
                node,
                trace.inputs_of(node),
                node_params(params, node),
                grads.deltas[node.name],
                trace.values[node.name],
                analytic,
                trace.returned.get(node.name),
            )
            _refuse_nondeterminism(probes[node.name])
        if everything or not own_code(problem.loss.loss):
            probes[LOSS] = probe_loss(problem, trace, grads)
            _refuse_nondeterminism(probes[LOSS])
        else:
            probes[LOSS] = Probe(LOSS, problem.loss.type)
        for node in network:
            node.defended = probes[node.name].writes_what_it_is_handed
            node.mixes_rows = probes[node.name].mixes_rows is not None
        problem.loss.defended = probes[LOSS].writes_what_it_is_handed
        problem.loss.mixes_rows = probes[LOSS].mixes_rows is not None
        purity = judge(problem, trace, grads, probes)
        for node in network:  # after mixes_rows: forward_local is probed where it is used
            differs = probe_fast_paths(
                node, trace.inputs_of(node), trace.values[node.name], node_params(params, node)
            )
            node.fast_paths = not differs
            purity.problems.setdefault(node.name, []).extend(
                LayerProblem(Kind.FAST_PATH_DIFFERS.value, f"{what}; {FAST_PATH_FALLBACK}")
                for what in differs
            )
        return purity


#: What a fast path that disagrees with forward means for the check (engine/fastpaths.py).
FAST_PATH_FALLBACK = (
    "the protocol asks that it give what forward gives, so gradcheck runs forward for this "
    "layer instead (slower, and the numeric values are forward's)"
)


def _refuse_nondeterminism(p: Probe) -> None:
    if p.nondeterministic is None:
        return
    what = "forward" if p.name != LOSS else f"{p.type} forward"
    raise NondeterministicError(
        p.name,
        f"{what} gives different outputs for the same input ({p.nondeterministic}); "
        f"finite differences of a function that changes between calls measure nothing. "
        f"{SEEDING[0].upper()}{SEEDING[1:]}.",
    )


def _reference(trace: Trace, grads: Gradients, problem: Problem) -> dict[str, np.ndarray]:
    """gradcheck's defended analytic gradients, by tensor name."""
    ref = {v: grads.deltas[v] for v in problem.network.input_names}
    for owner, g in grads.params.items():
        ref.update({f"{owner}.{p}": a for p, a in g.items()})
    return ref


def _damage(
    real: RealRun, ref: dict[str, np.ndarray], trace: Trace, probes: dict[str, Probe]
) -> dict[tuple[str, str], float]:
    """What differs in one run of the real network from gradcheck's defended pass, as
    items: (``grad``, tensor) wrong after the first backward sweep, (``again``, tensor)
    wrong only after the second, (``loss``, "") the loss itself, (``saved``, what)
    another layer's saved activation or a value another reader still reads, written
    into. Each with its largest difference (NaN for ``saved``)."""
    out: dict[tuple[str, str], float] = {}
    for t, r in ref.items():
        if not close(real.sweeps[0].grads[t], r):
            out[("grad", t)] = max_difference(real.sweeps[0].grads[t], r)
        elif not close(real.sweeps[1].grads[t], r):
            out[("again", t)] = max_difference(real.sweeps[1].grads[t], r)
    if not close(np.float64(real.loss), np.float64(trace.loss)):
        out[("loss", "")] = abs(real.loss - trace.loss)
    for n, paths in real.corrupted_caches.items():
        if not probes[n].mutated_cache:  # its own backward's writes are judged apart
            out[("saved", f"the saved activation of layer {n!r} ({', '.join(paths)})")] = float(
                "nan"
            )
    for v in real.corrupted_values:
        out[("saved", f"the value {v!r}, which another layer reads too")] = float("nan")
    for t in real.corrupted_params:  # however its gradient came out: the optimizer's array
        out[("param", t)] = float("nan")
    return out


def judge(problem: Problem, trace: Trace, grads: Gradients, probes: dict[str, Probe]) -> Purity:
    """The verdicts (module docstring): compare the real network with the defended
    analytic pass, attribute every difference to the layer that causes it, and turn
    each probe's findings into LayerProblems."""
    network = problem.network
    everyone = [n.name for n in network] + [LOSS]
    types = {n.name: n.type for n in network} | {LOSS: problem.loss.type}
    suspects = [n for n in everyone if probes[n].suspect]
    if not suspects:
        # The real network can differ from gradcheck's copies only where a layer writes
        # into an array it was handed or answers differently when called again; the
        # probes compared every such array and found none, so it is not run.
        return Purity({n: _problems(probes[n], [], False) for n in everyone}, {}, types)
    ref = _reference(trace, grads, problem)
    damage = _damage(simulate(problem, everyone, trace, grads), ref, trace, probes)
    culprits: dict[tuple[str, str], list[str]] = {item: [] for item in damage}
    if damage and len(suspects) > 1:
        for s in suspects:  # the real network again, with this suspect defended
            spared = (
                damage.keys()
                - _damage(
                    simulate(problem, [n for n in everyone if n != s], trace, grads),
                    ref,
                    trace,
                    probes,
                ).keys()
            )
            for item in spared:
                culprits[item].append(s)
    for item in culprits:
        culprits[item] = culprits[item] or list(suspects)

    def victims(name: str) -> list[str]:
        return [
            what if kind == "saved" else f"the parameter {what}"
            for (kind, what), names in culprits.items()
            if kind in ("saved", "param") and name in names
        ]

    corrupting = {n for (kind, _), names in culprits.items() if kind != "again" for n in names}
    problems = {n: _problems(probes[n], victims(n), n in corrupting) for n in everyone}
    corrupted: dict[str, tuple[str, str]] = {}

    def fail(tensor: str, culprit: str, reason: str) -> None:
        if tensor in ref and tensor not in corrupted:
            corrupted[tensor] = (culprit, reason)

    for (kind, t), names in culprits.items():
        if kind == "param" and not any(probes[n].mutated_params for n in names):
            fail(  # a parameter written into through a view another layer was handed
                t,
                names[0],
                f"layer {names[0]!r} wrote into it through the array it was handed as its "
                "input, a view of it: in a real network each forward changes the parameter",
            )
            continue
        if kind not in ("grad", "again"):
            continue
        d = damage[(kind, t)]
        if kind == "grad" and any(
            probes[n].mutated_inputs or probes[n].mutated_params for n in names
        ):
            hit = sorted({v for n in names for v in victims(n)})
            fail(t, names[0], _corruption_reason(names, probes, hit, d))
        else:  # a second call, or a backward whose state carried over from earlier calls
            fail(t, names[0], _repeat_reason(names, probes, d))
    for name in everyone:
        p = probes[name]
        if name == LOSS:
            continue
        owner = network.node(name).owner
        for param, where in p.mutated_params.items():
            fail(
                f"{owner}.{param}",
                name,
                f"layer {name!r} changes this parameter in place in its {' and '.join(where)}",
            )
        for label, d in p.not_repeatable.items():
            if not label.startswith("dx"):
                fail(f"{owner}.{label}", name, _repeat_reason([name], probes, d))
    return Purity(problems, corrupted, types)


def _what_it_did(p: Probe) -> str:
    """A short account of a suspect's findings, for the reasons of corrupted tensors."""
    parts = []
    if p.mutated_inputs:
        parts.append(f"it writes into its input ({', '.join(p.mutated_inputs)}) in place")
    for param, where in p.mutated_params.items():
        parts.append(f"its {' and '.join(where)} writes into its parameter {param}")
    if p.mutated_cache:
        parts.append(f"its backward writes into its cache ({', '.join(p.mutated_cache)})")
    if p.not_repeatable:
        parts.append(
            f"its backward answers differently when called again ({', '.join(p.not_repeatable)})"
        )
    if p.reuses_output and not parts:
        parts.append(
            "it returns memory that a later call overwrites (an output buffer shared "
            "between calls or layers)"
        )
    return "; ".join(parts) or "it behaves differently without gradcheck's copies"


def _corruption_reason(names: list[str], probes: dict[str, Probe], hit: list[str], d: float) -> str:
    culprits = "; ".join(f"layer {n!r}: {_what_it_did(probes[n])}" for n in names)
    which = f", which corrupts {', '.join(hit)}" if hit else ""
    return (
        f"wrong in a real network, where each layer gets the very arrays the one before "
        f"returned (off by up to {d:.3g}): {culprits}{which}; gradcheck's own copies hide "
        "it from the numeric check"
    )


def _repeat_reason(names: list[str], probes: dict[str, Probe], d: float) -> str:
    culprits = "; ".join(f"layer {n!r}: {_what_it_did(probes[n])}" for n in names)
    return (
        f"changes when backward is called again with the same dy and cache (by up to "
        f"{d:.3g}): {culprits}; only the first call is right (the one gradcheck's numeric "
        "check compares)"
    )


def _problems(p: Probe, victims: list[str], corrupts: bool) -> list[LayerProblem]:
    """One probe's findings as LayerProblems, failing where the verdicts say so.
    victims: what its writes corrupt in the real network; corrupts: they corrupt
    something (a gradient, the loss, another layer's saved array)."""
    out = []
    if p.mutated_inputs:
        what = ", ".join(p.mutated_inputs)
        if corrupts:
            tail = (
                f"in a real network this corrupts {', '.join(victims)}"
                if victims
                else "in a real network this makes the gradients wrong"
            )
        else:
            tail = (
                "harmless in this network, where no other layer keeps or reads that array, "
                "but it corrupts the saved activation of a layer before it that keeps its "
                "output (sigmoid, tanh, softmax), and what any other reader of the value sees"
            )
        out.append(
            LayerProblem(
                Kind.MUTATES_INPUT.value,
                f"writes into its input ({what}) in place; {tail}; {FIX_INPLACE}",
                failure=corrupts,
            )
        )
    if p.reuses_output and corrupts and not p.mutated_inputs:
        what = ", ".join(victims) if victims else "the gradients"
        out.append(
            LayerProblem(
                Kind.OVERWRITES_OUTPUT.value,
                "forward returns memory that a later call overwrites (an output buffer "
                f"shared between calls or layers); in a real network this corrupts {what}, "
                "kept by a layer after it; return a new array from every call "
                "(y = np.tanh(x), not np.tanh(x, out=self.buf))",
                failure=True,
            )
        )
    if p.mutated_params:
        where = ", ".join(f"{k} (in {' and '.join(w)})" for k, w in p.mutated_params.items())
        out.append(
            LayerProblem(
                Kind.MUTATES_PARAMS.value,
                f"changes its parameters in place: {where}; parameters are the optimizer's to "
                "change, so every call moves the network's weights; "
                "compute into new arrays instead",
                failure=True,
            )
        )
    if p.mutated_dy:
        out.append(
            LayerProblem(
                Kind.MUTATES_DY.value,
                "backward writes into dy, the gradient it is handed (e.g. dout[x <= 0] = 0); "
                "gradcheck hands it a copy, and a plain stack is unaffected, but it bites when "
                "that array is used again after this backward: when a layer's output is read "
                "by two layers (a fork, a residual connection) and the training code sends one "
                "array down both branches; compute into a new array "
                "(dx = np.where(x > 0, dout, 0))",
            )
        )
    if p.mutated_cache:
        out.append(
            LayerProblem(
                Kind.MUTATES_CACHE.value,
                f"backward writes into its cache ({', '.join(p.mutated_cache)}); "
                + (
                    "a second backward on that cache then answers differently"
                    if p.not_repeatable
                    else "harmless here (a second backward still answers the same), but "
                    "a cache is the forward's record: leave it as it is"
                ),
            )
        )
    if p.not_repeatable:
        changes = ", ".join(f"{k} by up to {d:.3g}" for k, d in p.not_repeatable.items())
        if p.mutated_cache:
            cause = "it writes into its cache"
        elif any("backward" in w for w in p.mutated_params.values()):
            cause = "it writes into its parameters"
        else:
            cause = (
                "a gradient buffer that is never zeroed (self.dw += ... or a module-level "
                "accumulator)? return new arrays from every call"
            )
        out.append(
            LayerProblem(
                Kind.BACKWARD_NOT_REPEATABLE.value,
                f"backward gives another answer when called again with the same dy and cache "
                f"({changes}); {cause}",
                failure=True,
            )
        )
    if p.mixes_rows and p.name == LOSS:
        out.append(
            LayerProblem(
                Kind.NOT_PER_EXAMPLE.value,
                f"declares per_example = True (the default), but an example's loss depends "
                f"on other rows: with row 0 of the batch changed, or two copies of the batch "
                f"stacked, the other rows' losses came out different ({p.mixes_rows}); a loss "
                "over the whole batch? gradcheck called it on one copy of the batch at a "
                "time instead (slower, correct); declare per_example = False in the class",
            )
        )
    elif p.mixes_rows:
        out.append(
            LayerProblem(
                Kind.NOT_BATCH_INDEPENDENT.value,
                f"declares batch_independent = True, but a row of its output depends on "
                f"more than the same row of its input: with row 0 of the batch changed, or "
                f"two copies of the batch stacked, rows came out different ({p.mixes_rows}); batch "
                "statistics, or a result that depends on the row's position or the batch "
                "size (a mask drawn for x.shape, a mask per example)? gradcheck checked it "
                "one copy at a time instead (slower, correct); remove batch_independent from "
                "the class (from the config, for a layer of type functions), or, for a "
                "result that depends on the example (row r mod N) only, declare "
                "example_dependent = True beside it",
            )
        )
    return out


__all__ = [
    "Kind",
    "Probe",
    "Purity",
    "RealRun",
    "judge",
    "probe",
    "probe_loss",
    "probe_node",
    "simulate",
]
