"""A float32 layer whose own backward disagrees in isolation: the code, or float32?

In a float32 check the analytic side runs in float32 and the numeric reference in
float64 (contract section 5), each analytic element allowed ANALYTIC_ULPS float32
epsilons of rounding. A correct layer can still miss that by far where its forward is
ill-conditioned: batch norm over a batch whose values are equal up to their last float32
digits normalises the rounding of the mean (x_hat of 2e-5 where float64 has 4e-14), and
its dgamma comes out 5e-5 against a true 1e-13. Its isolated check then fails, and with
it every network-level element whose way passes through it, blaming the layer.

So in a float32 check, a layer whose own backward fails in isolation is looked at
again, on the same inputs, parameters and upstream gradient (cast up). A failed tensor
is float32's, not the code's, when

- its float32 forward cached nothing less precise than float32 (a float16 activation
  cache is the code's choice, and its error);
- its backward, run in float64 on the cache its float32 forward made (every float32
  array in it cast up), agrees with the float32 backward within ILL_ULPS float32
  epsilons of the gradient's scale plus SPREAD times what moving dy and every cached
  array by one float32 epsilon of itself changes that float64 run by (PERTURBATIONS
  seeded moves): the backward's own float32 arithmetic is as good as its conditioning
  allows (batch norm's dx subtracts the mean of nearly equal upstream values: 1e-4
  relative in float32, and as much under one-epsilon moves), and the rest of the
  disagreement comes from what the float32 forward computed; and
- forward and backward run again in float64 pass the layer's checks the float32 ones
  failed (the element-wise check with its kink rules, and the tie tests: engine/
  isolation.py): the code is right.

Such a tensor becomes inconclusive in isolation (``tensors_ok`` None, listed in
``LayerVerdict.float32_only``), the layer is not blamed, and a network-level failure
whose way holds nothing else wrong becomes inconclusive with the float64 advice
(engine/kinks.py, fact 3). Every other failure stays the code's. The mutants that compute
in float16 when handed float32 (tests/mutants/dense_half_dw.py: a float16 product in
backward; sigmoid_half_cache.py: a float16 cache) take another path in float64 and
would pass there, but not the first two tests. Input perturbations cannot stand in for
the first test: the float32 mean of equal values rounds every centred value alike (all
of one sign), which no rounding of the inputs reproduces.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..problem import Problem
from ..report import LayerVerdict
from .compare import Tolerances
from .copies import arrays_in, copy_tree
from .isolation import _Fold, check_layer_tensor
from .objective import LayerObjective, NetworkObjective, labelled, layer_energy
from .passes import Gradients, Trace, node_backward, node_forward

#: The float32 backward and its float64 run on the same (cast up) cache agree within
#: this many float32 epsilons of the gradient's largest magnitude (engine/verdict.py
#: allows the analytic side as many).
ILL_ULPS = 64.0
#: ... plus this many times the most that one-float32-epsilon moves of dy and of every
#: cached float32 array change the float64 backward (float32 rounds at every operation,
#: not only its inputs), over this many seeded moves.
SPREAD = 16.0
PERTURBATIONS = 4
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
    problem64 = dataclasses.replace(problem, dtype="float64")
    nodes = {node.name: node for node in problem.network}
    eps32 = float(np.finfo(np.dtype(problem.dtype)).eps)
    for v in verdicts:
        node, failed = nodes.get(v.name), v.failed_tensors
        if node is None or not failed:
            continue
        delta = grads.deltas[node.name].astype(np.float64)
        xs = [trace.values[x].astype(np.float64) for x in node.inputs]
        params = net.params[node.owner]
        slots = [grads.contributions[(node.name, s)] for s in range(len(node.inputs))]
        analytic32 = labelled(node, slots, grads.per_use[node.name])
        try:
            with np.errstate(all="ignore"):
                cache32 = node_forward(
                    node,
                    [trace.values[x] for x in node.inputs],
                    {k: a.astype(problem.dtype) for k, a in params.items()},
                )[1]
                if any(a.dtype.kind == "f" and a.itemsize < 4 for _, a in arrays_in(cache32)):
                    continue  # a float16 cache: the code's choice, and its error
                cache = copy_tree(cache32, array=_float32_up)
                on_cache = labelled(node, *node_backward(node, delta, cache, params, xs))
                spread = _spread(node, cache32, delta, params, xs, on_cache, eps32)
                y, analytic = _run64(node, xs, params, delta)
        except Exception:  # a layer that refuses a mixed cache: nothing excuses it
            continue
        obj = LayerObjective(node, xs, params, delta, layer_energy(y, delta), analytic)
        only = []
        # the ties' own tests run again in float64 too: a tie routed wrong fails them
        # there as in float32 (a learned clip bound tied with its input, the delta sent
        # to both, passed as float32's when only the element checks were run again)
        fold = _Fold(v.name, v.type, list(obj.tensors()))
        for t in failed:
            a32 = np.asarray(analytic32[t], dtype=np.float64)
            scale = float(np.max(np.abs(on_cache[t]), initial=0.0))
            allowed = ILL_ULPS * eps32 * scale + SPREAD * spread[t]
            if not np.all(np.abs(a32 - on_cache[t]) <= allowed):
                continue  # its backward's own float32 arithmetic strays: the code's
            index = np.arange(obj.tensors()[t].size)
            w = check_layer_tensor(obj, t, index, problem64, tol64)
            fold.shifted(obj, t, w, problem64, tol64)
            if not w.failed.any():
                only.append(t)
        fold.joined(obj, problem64, tol64)
        only = [t for t in only if fold.verdict.tensors_ok.get(t) is not False]
        if not only:
            continue
        for t in only:
            v.tensors_ok[t] = None
        v.float32_only = only
        note = FLOAT32_ONLY_NOTE.format(tensors=", ".join(only))
        v.diagnosis = f"{v.diagnosis}; {note}" if v.failed_tensors and v.diagnosis else note


def _float32_up(a: np.ndarray) -> np.ndarray:
    """A float64 copy of a float32 array; a copy of any other (indices stay integers)."""
    return a.astype(np.float64) if a.dtype == np.float32 else a.copy()


def _run64(node, xs, params, delta) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The node's float64 forward output and backward result by tensor label."""
    y, cache = node_forward(node, xs, params)
    return y, labelled(node, *node_backward(node, delta, cache, params, xs))


def _spread(node, cache32, delta, params, xs, base, eps32) -> dict[str, np.ndarray]:
    """By tensor label, the most each element of the float64 backward ``base`` (run on
    the cast-up float32 cache) moves when dy and every cached float32 array move by up
    to one float32 epsilon of themselves (PERTURBATIONS seeded moves)."""
    rng = np.random.default_rng(0)

    def moved(a: np.ndarray) -> np.ndarray:
        if a.dtype != np.float32:
            return a.copy()
        return a.astype(np.float64) * (1.0 + eps32 * rng.uniform(-1.0, 1.0, a.shape))

    out = {t: np.zeros(np.shape(g)) for t, g in base.items()}
    for _ in range(PERTURBATIONS):
        dy = delta * (1.0 + eps32 * rng.uniform(-1.0, 1.0, delta.shape))
        cache = copy_tree(cache32, array=moved)
        got = labelled(node, *node_backward(node, dy, cache, params, xs))
        for t in out:
            np.maximum(out[t], np.abs(got[t] - base[t]), out=out[t])
    return out
