"""A float32 layer whose own backward disagrees in isolation: the code, or float32?

In a float32 check the analytic side runs in float32 and the numeric reference in
float64 (contract section 5), each analytic element allowed ANALYTIC_ULPS float32
epsilons of rounding. A correct layer can still miss that by far where its forward is
ill-conditioned: batch norm over a batch whose values are equal up to their last float32
digits normalises the rounding of the mean (x_hat of 2e-5 where float64 has 4e-14), and
its dgamma comes out 5e-5 against a true 1e-13. Its isolated check then fails, and with
it every network-level element whose way passes through it, blaming the layer.

So in a float32 check, a layer whose own backward fails in isolation and whose float32
forward is itself ill-conditioned at this point (its float32 output differs from the
float64 forward of the same inputs by more than ILL_ULPS float32 epsilons of the output:
the cancellation is there to see) has its backward run again in float64, on the same
inputs and upstream gradient (cast up), and its failed tensors judged again. A tensor
that passes there failed through float32 arithmetic, not through the code: it becomes
inconclusive in isolation (``tensors_ok`` None, listed in
``LayerVerdict.float32_only``), the layer is not blamed, and a network-level failure
whose way holds nothing else wrong becomes inconclusive with the float64 advice
(engine/kinks.py, fact 3). A tensor that fails in float64 as well is the code's: it
stays a failure, as before. So does every failure of a layer whose float32 forward is as
accurate as float32 allows: a backward that computes in float16 when handed float32
(tests/mutants/dense_half_dw.py) takes another path in float64 and would pass there, but
nothing in its forward cancels, so nothing excuses it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..problem import Problem
from ..report import LayerVerdict
from .compare import Tolerances
from .elements import check_elements
from .kinks import split_upstream
from .objective import LayerObjective, NetworkObjective, layer_energy
from .passes import Gradients, Trace, node_backward, node_forward

#: A float32 forward is ill-conditioned at the point when its output differs from the
#: float64 forward of the same inputs by more than this many float32 epsilons of the
#: largest output (engine/verdict.py allows the analytic side as many).
ILL_ULPS = 64.0
#: What the layer's diagnosis says of such tensors.
FLOAT32_ONLY_NOTE = (
    "{tensors}: the float32 backward differs from the numeric VJP by more than float32 "
    "rounding explains, but the same code run in float64 agrees: float32 arithmetic on "
    "ill-conditioned values (a normalisation of values equal up to their last float32 "
    "digits), not the code; inconclusive, not blamed (run with dtype: float64 to see it "
    "pass)"
)


def recheck_in_float64(
    problem: Problem,
    net: NetworkObjective,
    trace: Trace,
    grads: Gradients,
    tol: Tolerances,
    verdicts: list[LayerVerdict],
) -> None:
    """Judge again in float64 the failed tensors of every float32 layer whose own backward
    disagrees in isolation (module docstring); updates ``verdicts`` in place. Nothing to
    do in a float64 check, or for the loss (its isolated check is on y, in float64)."""
    if problem.dtype == "float64":
        return
    tol64 = dataclasses.replace(tol, analytic_eps=float(np.finfo(np.float64).eps))
    nodes = {node.name: node for node in problem.network}
    max_memory = problem.settings.max_memory
    for v in verdicts:
        node, failed = nodes.get(v.name), v.failed_tensors
        if node is None or not failed:
            continue
        delta = grads.deltas[node.name].astype(np.float64)
        xs = [trace.values[x].astype(np.float64) for x in node.inputs]
        params = net.params[node.owner]
        with np.errstate(all="ignore"):
            y, cache = node_forward(node, xs, params)
            if not _ill_conditioned(trace.values[node.name], y, problem.dtype):
                continue  # float32 computed this forward well: the failure is the code's
            dxs, dparams = node_backward(node, delta, cache, params, xs)
        analytic = {node.slot_name(s): dx for s, dx in enumerate(dxs)}
        analytic.update({f"{node.name}.{p}": g for p, g in dparams.items()})
        obj = LayerObjective(node, xs, params, delta, layer_energy(y, delta), analytic)
        only = []
        for t in failed:
            index = np.arange(obj.tensors()[t].size)
            w = check_elements(obj, t, index, tol64, max_memory)
            w = split_upstream(obj, t, index, w, tol64, max_memory, np.float64)
            if not w.failed.any():
                only.append(t)
        if not only:
            continue
        for t in only:
            v.tensors_ok[t] = None
        v.float32_only = only
        note = FLOAT32_ONLY_NOTE.format(tensors=", ".join(only))
        v.diagnosis = f"{v.diagnosis}; {note}" if v.failed_tensors and v.diagnosis else note


def _ill_conditioned(y32: np.ndarray, y64: np.ndarray, dtype: str) -> bool:
    """The float32 forward's output y32 differs from the float64 one, y64, by more than
    ILL_ULPS epsilons of the dtype times the largest |y64| (both of one shape)."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    worst = float(np.max(np.abs(y32.astype(np.float64) - y64), initial=0.0))
    return worst > ILL_ULPS * eps * float(np.max(np.abs(y64), initial=0.0))
