"""Compound kinks: where several non-differentiable points meet at one element.

The element rule (engine/verdict.py) proves a kink at an element when its one-sided
slopes keep a steady gap, and accepts an analytic value between them. That bracket
holds every valid subgradient when ONE kink is crossed, but not when several meet,
because moving a single element explores only one line through the point:

- max pooling with overlapping windows: x ties with a in window 1 (a comes first, so a
  gets the gradient) and with b in window 2 (x comes first). With upstream gradients
  g1 = 1/3 and g2 = -2/3, the analytic dx = g2 = -2/3 is the gradient of the region
  a > x > b, a valid limiting gradient. But moving x up wins both windows,
  d+ = g1 + g2 = -1/3, and moving it down loses both, d- = 0: -2/3 is outside [-1/3, 0];
- several ReLUs at exactly 0 that read the same input element (a block of zeros through
  a convolution without bias): relu'(0) = 0 for each, while d+ and d- each switch on a
  different subset of them.

Two facts settle these elements without a rule for every layer, and without ever
excusing a wrong backward:

1. A layer's VJP, analytic and numeric alike, is linear in the upstream gradient, and
   with a one-signed upstream gradient every max-like tie IS bracketed (with g >= 0,
   moving x up can only add windows and moving it down only remove them). So an element
   of an isolated layer that fails is re-checked with the upstream gradient split into
   its positive and its negative part
   (``split_upstream``); it is a kink when both halves pass. A wrong value is wrong in
   at least one half. The halves' analytic values come from the layer's own backward
   in the problem's dtype (a float32 layer is judged as float32), on a fresh forward of
   its real inputs.
2. The network gradient of a tensor is the chain of the VJPs on its way to the loss.
   When every one of those backwards (and the loss's) passes its isolated check, a
   network-level failure comes from kinks composed through the chain rule, not from a
   wrong backward, provided a kink is in evidence: proven at the element, or met (and
   proven) by the isolated checks on that way. It is then a kink
   (``settle_compound_kinks``); without any kink it stays a failure. "Passes" means
   every element checked one by one and none inconclusive: a sampled or directional
   isolation, or an inconclusive one, vouches for nothing (a failure stays one, or is
   inconclusive where a kink is in evidence at the element). The same holds
   for a ``--method taylor`` verdict: a random direction crosses every kink at x at
   once, so the remainder is first-order even for a valid subgradient.

An analytic value at a single kink outside the bracket still fails, in the isolated
check of its layer, which then also keeps the network-level failures below it.

3. When every backward on the way passes in isolation and no kink is in evidence, the
   chain rule makes the network gradient right; a network-level disagreement is then the
   network-level numerics' own. It happens where the gradient holds only in a region
   narrower than any step the rounding of the loss lets through: a bias at 0 feeding
   ReLUs whose inputs are 1e-10, behind a layernorm that cancels any shift common to
   its features, changes the loss by 4e-12 per unit of bias only while every ReLU input
   stays on its side, that is by 4e-22 at most, below one rounding of a loss of 7e-6;
   past that region the loss does not move. In a float32 check the likelier cause is the
   float32 analytic side: a normalisation of values that differ in their last float32
   digits gives a float32 gradient a few percent from the float64 reference. Such
   elements are inconclusive (exit 3, ``UNRESOLVED_NOTE``), never a pass: they were not
   verified where they are, and never a failure: nothing on the way is wrong.
"""

from __future__ import annotations

import numpy as np

from ..errors import NumericalError
from ..problem import Problem
from ..report import Report
from .blame import partly_checked, path_ok, unverified_readers
from .compare import ElementVerdict, Tolerances
from .elements import JUMP_KEY, check_elements
from .objective import LayerObjective, labelled, layer_energy
from .passes import node_backward, node_forward

#: How far the analytic values of the upstream gradient's two halves may add up away
#: from the whole's, in epsilons of the problem's dtype times their magnitudes (a sum
#: routed through overlapping windows rounds a little differently in parts).
LINEAR_ULPS = 1024

TAYLOR_KINK_NOTE = (
    "Taylor: first-order remainder from kinks at this point (the direction crosses several "
    "at once); every backward on the path passes its isolated check, kinks included"
)


UNRESOLVED_NOTE = (
    "inconclusive, not failed: every backward on the way to the loss passes its own check "
    "(so the chain rule makes this gradient right), but the network-level difference "
    "cannot resolve it: its effect on the loss is below the loss's rounding except over "
    "a region narrower than any usable step (values at the scale of their kinks, or a "
    "layer that cancels the change)"
)
#: ... where a backward on the way was itself inconclusive in isolation
UNVERIFIED_NOTE = (
    "inconclusive, not failed: kinks are in evidence, but the chain rule cannot vouch for "
    "this gradient, since the isolated check of {} on the way to the loss was itself "
    "inconclusive or did not take every element"
)
#: ... in float32, with no kink in evidence: float32's rounding may be all of it
UNVERIFIED_FLOAT32_NOTE = (
    "inconclusive, not failed: no backward on the way to the loss fails its own check, but "
    "the isolated check of {} was itself inconclusive, so the chain rule cannot vouch for "
    "this gradient; in float32 the analytic side's rounding may be all of the difference: "
    "run the check with dtype: float64 to verify the code itself"
)
#: ... in a float32 check, where the float32 analytic side is the likelier cause
UNRESOLVED_FLOAT32_NOTE = (
    "inconclusive, not failed: every backward on the way to the loss passes its own check "
    "(so the chain rule makes this gradient right), but the float32 network gradient "
    "differs from the float64 reference by more than float32 rounding explains in a "
    "well-conditioned network (a forward that cancels, such as a normalisation of values "
    "that differ in their last float32 digits, or a saturated softmax, amplifies it); "
    "run the check with dtype: float64 to verify the code itself"
)


def split_upstream(
    obj: LayerObjective,
    tensor: str,
    index: np.ndarray,
    v: ElementVerdict,
    tol: Tolerances,
    max_memory: int,
    dtype: np.dtype | str = "float64",
) -> ElementVerdict:
    """Re-check an isolated layer's failed elements (and inconclusive ones with a kink in
    evidence) with the upstream gradient split by sign; those that pass both halves
    become kinks (still failures under ``tol.strict_kinks``). Returns the updated
    verdict.

    index: (K,) flat indices of the checked elements, v: their verdict; dtype: the
    problem's, in which the halves' analytic values are computed.
    """
    retry = v.failed | (v.inconclusive & v.jump)
    if not retry.any():
        return v
    sub_index = index[retry]
    node = obj.node
    dtype = np.dtype(dtype)
    xs = [x.astype(dtype) for x in obj.xs]
    params = {p: a.astype(dtype) for p, a in obj.params.items()}
    with np.errstate(all="ignore"):
        y64, _ = node_forward(node, obj.xs, obj.params)
        _, cache = node_forward(node, xs, params)  # fresh: no cache user code could change
    passed = np.ones(len(sub_index), dtype=bool)
    halves = np.zeros(len(sub_index))  # the halves' analytic values, summed
    spread = np.zeros(len(sub_index))
    for part in (np.maximum(obj.delta, 0.0), np.minimum(obj.delta, 0.0)):
        if not part.any():
            continue
        with np.errstate(all="ignore"):
            dxs, grads = node_backward(node, part.astype(dtype), cache, params, xs)
        analytic = labelled(node, dxs, grads)
        half = LayerObjective(node, obj.xs, obj.params, part, layer_energy(y64, part), analytic)
        w = check_elements(half, tensor, sub_index, tol, max_memory)
        passed &= ~(w.failed | w.inconclusive)
        value = np.asarray(analytic[tensor], dtype=np.float64).reshape(-1)[sub_index]
        halves += value
        spread += np.abs(value)
    # fact 1 holds only for a backward linear in the upstream gradient, as every VJP is:
    # one whose halves do not add up to its whole (a clip, a place chosen by the
    # gradient's values) is wrong, and the split proves nothing for it
    whole = np.asarray(obj.analytic[tensor], dtype=np.float64).reshape(-1)[sub_index]
    allowed = LINEAR_ULPS * np.finfo(dtype).eps * (spread + np.abs(whole))
    with np.errstate(invalid="ignore"):
        passed &= np.abs(halves - whole) <= allowed
    settled = np.zeros_like(retry)
    settled[np.flatnonzero(retry)[passed]] = True
    return _settled(v, settled, tol)


def _settled(v: ElementVerdict, settled: np.ndarray, tol: Tolerances) -> ElementVerdict:
    """``v`` with the elements ``settled`` (K,) bool made kinks: no longer failed (still
    failed under ``tol.strict_kinks``) nor inconclusive."""
    return ElementVerdict(
        numeric=v.numeric,
        abs_error=v.abs_error,
        rel_error=v.rel_error,
        failed=v.failed if tol.strict_kinks else v.failed & ~settled,
        kink=v.kink | settled,
        jump=v.jump,
        inconclusive=v.inconclusive & ~settled,
        bound=v.bound,
    )


#: A failed element tied in value with more elements than this (of its example) is
#: not re-checked at broken ties (``break_ties``): too many orderings to vouch for it.
MAX_PARTNERS = 8
#: ... whose partners are moved apart by at most this fraction of their size.
TIE_SPREAD = 1e-2


def break_ties(
    obj: LayerObjective,
    tensor: str,
    index: np.ndarray,
    v: ElementVerdict,
    tol: Tolerances,
    max_memory: int,
) -> ElementVerdict:
    """Re-check an isolated layer's failed elements that tie in value with others of their
    tensor (and example), with the ties broken; those whose analytic value is the
    gradient of a piece active at the tie become kinks (still failures under
    ``tol.strict_kinks``). Returns the updated verdict.

    At a tie of three or more, an element moved alone explores only its highest and its
    lowest place in the tie: a sort's middle slot, or a k-th largest whose tie spans
    ranks k-1 to k+1 (moved alone, the element changes nothing: both slopes 0), is a
    valid place for it that no single move reaches, so a right backward failed. Here
    the element's M partners are moved apart by small distinct amounts (less than half
    the gap to the nearest other value, so that no other order changes), r of them up
    and the rest down, for every r in 0..M: the element then holds every place in its
    tie once, and at each such point its check is an ordinary one. The element is a kink
    when its analytic value passes there for some r, or lies between the values found
    (a convex combination of the pieces' gradients, as a split of the delta is).
    Whether the tie's values sum right is the shift test's to say (engine/shift.py)."""
    retry = np.flatnonzero(v.failed)
    values = obj.tensors().get(tensor)
    if not len(retry) or values is None:
        return v
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    rows = _example_size(obj, tensor, flat.size)
    analytic = np.asarray(obj.analytic[tensor], dtype=np.float64).reshape(-1)
    settled = np.zeros(len(v.failed), dtype=bool)
    for p in retry:
        element = int(index[p])
        start = element - element % rows
        row = flat[start : start + rows]
        partners = start + np.flatnonzero(row == flat[element])
        partners = partners[partners != element]
        if not 0 < len(partners) <= MAX_PARTNERS or not np.isfinite(flat[element]):
            continue
        found = _at_broken_ties(obj, tensor, element, partners, row, tol, max_memory)
        if found is None:
            continue
        passed, numeric, room = found
        a = analytic[element]
        if passed or numeric.min() - room <= a <= numeric.max() + room:
            settled[p] = True
    if not settled.any():
        return v
    return _settled(v, settled, tol)


def _example_size(obj: LayerObjective, tensor: str, size: int) -> int:
    """Elements per example of ``tensor`` when it is an input of a layer that treats
    its examples apart (ties across examples change nothing), else the whole tensor."""
    if tensor in obj.slots() and getattr(obj.node.layer, "batch_independent", False):
        n = len(obj.xs[0])
        if n and size % n == 0:
            return size // n
    return size


def _at_broken_ties(
    obj: LayerObjective,
    tensor: str,
    element: int,
    partners: np.ndarray,
    row: np.ndarray,
    tol: Tolerances,
    max_memory: int,
) -> tuple[bool, np.ndarray, float] | None:
    """(passed at some ordering, the numeric values found (M + 1,), their room): the
    check of the flat element ``element`` of ``tensor`` with its partners (M,) flat
    positions, moved apart, r of them up, for r = 0..M; ``row`` (R,): the float64 values
    of its example, which hold the element's value at ``element`` mod R. None when a
    check there is not conclusive."""
    flat_value = row[element % len(row)]
    others = np.unique(row[row != flat_value])
    m = len(partners)
    # distinct moves, all below half the gap to the nearest other value (no partner
    # crosses another value or another partner) and TIE_SPREAD of the values' size (a
    # log's input of 1e-5 stays in its domain)
    size = abs(flat_value) or float(np.sqrt(np.mean(row * row))) or 1.0
    spacing = TIE_SPREAD * size / (m + 1)
    if len(others):
        spacing = min(spacing, 0.5 * float(np.min(np.abs(others - flat_value))) / (m + 1))
    moves = spacing * np.arange(1, m + 1)
    order = np.random.default_rng(element).permutation(m)  # which partners go up first
    passed, numeric, rooms = False, [], []
    for r in range(m + 1):
        up = np.zeros(m, dtype=bool)
        up[order[:r]] = True
        found = []
        # at the moves and at half of them: a tie's pieces give the same slope at both
        # (the element's place in the tie decides it), a smooth layer that couples its
        # elements (a norm) one that follows the moves, which proves no tie: without
        # this, the spread of such slopes could be read as a tie's range
        for scale in (1.0, 0.5):
            try:
                moved = _moved(obj, tensor, partners, scale * np.where(up, moves, -moves))
                w = check_elements(moved, tensor, np.array([element]), tol, max_memory)
            except (NumericalError, ArithmeticError):  # out of the forward's domain there
                return None
            if w.inconclusive[0] or w.kink[0] or w.jump[0] or not np.isfinite(w.numeric[0]):
                # a kink of the element's own (a ReLU at 0 among other zeros), or another
                # within the steps there: the ties were not what made it fail
                return None
            bound = float(w.bound[0]) if np.isfinite(w.bound[0]) else 0.0
            room = tol.atol + tol.rtol * abs(float(w.numeric[0])) + bound
            found.append((not w.failed[0], float(w.numeric[0]), room))
        (ok, value, room), (_, half, half_room) = found
        if abs(value - half) > 2 * max(room, half_room):
            return None
        passed = passed or ok
        numeric.append(value)
        rooms.append(room)
    return passed, np.array(numeric), max(rooms)


def _moved(obj: LayerObjective, tensor: str, partners: np.ndarray, by: np.ndarray):
    """The isolated objective with the elements ``partners`` of ``tensor`` moved ``by``,
    its analytic values unchanged (those of the original point)."""
    xs, params = list(obj.xs), dict(obj.params)
    slots = obj.slots()
    if tensor in slots:
        new = xs[slots[tensor]].astype(np.float64, copy=True)
        xs[slots[tensor]] = new
    else:
        name = tensor.rpartition(".")[2]
        new = params[name].astype(np.float64, copy=True)
        params[name] = new
    new.reshape(-1)[partners] += by
    with np.errstate(all="ignore"):
        y, _ = node_forward(obj.node, xs, params)
    return LayerObjective(obj.node, xs, params, obj.delta, layer_energy(y, obj.delta), obj.analytic)


def settle_compound_kinks(report: Report, problem: Problem, tol: Tolerances) -> None:
    """Turn a tensor's failures (and inconclusive elements) into kinks when every
    backward on its way to the loss passes in isolation and a kink is in evidence
    (module docstring).

    Needs ``report.layers`` (the isolated verdicts). Under ``strict_kinks`` the
    elements are marked as kinks but stay failures.
    """
    strict = tol.strict_kinks
    verdicts = {v.name: v for v in report.layers}
    if not verdicts:
        return
    for c in report.checks:
        evidence = c.extra.get(JUMP_KEY)
        taylor = c.taylor_passed is False
        unsettled = c.failed_mask | c.inconclusive_mask
        if not unsettled.any() and not taylor:
            continue
        ok, path_kinks = path_ok(problem, verdicts, c.name)
        if not ok:
            continue
        partial = partly_checked(problem, verdicts, c.name)
        unverified = sorted({*unverified_readers(problem, verdicts, c.name), *partial})
        if taylor:
            # A random direction crosses every kink at x at once: the Taylor test cannot
            # decide there, the isolated element-wise checks can.
            if path_kinks > 0 and not strict and not unverified:
                c.taylor_passed = True
                c.diagnosis = TAYLOR_KINK_NOTE
            continue
        if evidence is None:  # no element-wise record of the steps (a sampled layer)
            evidence = np.zeros_like(unsettled)
        settled = unsettled & (evidence | (path_kinks > 0))
        if unverified:  # fact 2 needs every backward on the way verified: not a kink;
            # a failure with a kink in evidence at the element itself is inconclusive; so
            # is one whose way met kinks in isolated checks that took every element, one
            # of them inconclusive (ties in two stacked max pools before a layer norm of
            # values of 1e-6: found by the slow property run); any other stays a failure
            # (a check of a sample of a layer's elements vouches for nothing: a wrong
            # layer may hide in the rest)
            met = (path_kinks > 0) and not partial
            doubtful = unsettled & (evidence | met) & c.failed_mask
            note = UNVERIFIED_NOTE
            if problem.dtype != "float64" and not partial and not doubtful.any():
                # float32, and nothing on the way fails its own check (every element
                # checked): float32's rounding, which the inconclusive layer could not
                # resolve either, may be all of it (batch norm over 2 examples of values
                # 3000 and 0.001: found by the slow property run)
                doubtful = unsettled & c.failed_mask
                note = UNVERIFIED_FLOAT32_NOTE
            c.failed_mask = c.failed_mask & ~doubtful
            c.inconclusive_mask = c.inconclusive_mask | doubtful
            if doubtful.any():
                c.diagnosis = note.format(", ".join(unverified))
            continue
        c.kink_mask = c.kink_mask | settled
        c.inconclusive_mask = c.inconclusive_mask & ~settled
        # under --strict-kinks a kink is a failure, one that was inconclusive too
        c.failed_mask = c.failed_mask | settled if strict else c.failed_mask & ~settled
        unresolved = c.failed_mask & ~settled  # fact 3 of the module docstring
        if unresolved.any():
            c.failed_mask = c.failed_mask & ~unresolved
            c.inconclusive_mask = c.inconclusive_mask | unresolved
            float32 = problem.dtype != "float64"
            c.diagnosis = UNRESOLVED_FLOAT32_NOTE if float32 else UNRESOLVED_NOTE
