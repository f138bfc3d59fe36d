"""Perturbed copies against the network run on its own: state hidden outside the arrays.

The numeric side evaluates perturbed copies of the network many at a time
(engine/objective.py): stacked into one batch, or as the rows a perturbation reaches.
That gives the network's own losses only while every layer's output depends on nothing
but its inputs and parameters. A layer that keeps state outside them breaks it without
any per-layer probe noticing (engine/purity.py calls each layer alone): one that writes
a module-level value from its input, read by a later layer as a constant, computes it
over all the copies of a call, not over one network's batch, and both sides of the check
then miss the dependency; the hunt that found it (a mean published by one layer, a
factor read by the next) passed with the real gradient 16.5% off.

So, for a network with user code (a plugin layer, a function pair or a plugin loss)
downstream of a checked tensor, before the check: up to PROBE_ELEMENTS of the tensor's
elements (``probed_elements``: its first, middle and last, then others drawn; all of a
smaller tensor: a leak may come from one feature or one parameter element alone, which
hunt 16 found passing while only the first and middle were moved) are each moved by
+-PROBE_STEP of their magnitude (at least of the tensor's RMS). Their copies are
evaluated together the way the check evaluates copies, again an element's two copies a
call (a copy whose loss depends on the others a call holds, their mean or the last one
run, changes with them), and the first ANCHORS elements' copies by a plain forward of
the network with that one tensor replaced (``NetworkObjective.loss_at``). All must agree
up to rounding: within AGREE times the change the move makes plus NOISES epsilons of f,
or, where that does not cover the gap, NOISES times the tensor's measured noise of f
(the check's own ``tensor_noise``, measured only then: it costs more than the probe,
and ``--fast`` needs it nowhere else). They differ by a fraction of that change where
state leaks between copies, by rounding where the copies only take other code paths
(local recomputation, another BLAS kernel for another batch size). AGREE is below the
smallest relative error the check must catch (1e-6). The probe evaluates each probed
element's copies three or four times: on the cs231n example (naive loops, function
pairs run one copy at a time) it takes 0.10-0.12 s, the full check 0.6-0.7 s and
``--fast`` 0.21 s with it.

A disagreement makes the check impossible (NondeterministicError, exit 3), naming the
first layer with user code downstream of the tensor: finite differences of copies that
interfere measure another function than the network's. Networks of built-in layers
only are not probed: their copies are row consistent by construction
(tests/test_local.py)."""

from __future__ import annotations

import zlib

import numpy as np

from ..errors import NondeterministicError, PluginError
from ..problem import Problem
from .blame import LOSS
from .own import own_code
from .passes import OutOfTime
from .verdict import tensor_noise

#: Each probed element moves by this much of its magnitude (at least of the tensor's RMS):
#: large beside rounding, so that a leak of a small part of the change shows.
PROBE_STEP = 1e-2
#: ... or this many times less, where user code raised at those moves.
SMALLER = 1e-3
#: Elements probed per tensor (all of a smaller one), their copies evaluated together
#: and two a call; the first ANCHORS also run as the plain network.
PROBE_ELEMENTS = 16
ANCHORS = 2
#: Copies together and the network alone agree within this part of the change in f ...
AGREE = 1e-7
#: ... plus this many times the tensor's noise of f (and as many epsilons of f).
NOISES = 64.0

#: Under a time budget, the probe may take this share of it (engine/check.py).
PROBE_SHARE = 0.25


def probe_copies(
    problem: Problem, objective, tensors: list[str], eps: float, max_memory: int
) -> list[str]:
    """Raise NondeterministicError when perturbed copies of the network evaluated together
    give other losses than the network run on its own (module docstring). tensors: the
    checked tensors; eps: the check's step factor (for the noise, as the check measures
    it); max_memory: its memory budget. Returns notes for the report: the tensors left
    unprobed when a call would start past ``Calls.deadline`` (OutOfTime: a time
    budget), and those whose user code raised at the probe's moves (PluginError, also at
    moves SMALLER times as large: a layer defined on a narrow domain; the check's own
    steps are smaller still, and meet the error themselves if it is theirs too)."""
    network = problem.network
    user_loss = not own_code(problem.loss.loss)
    users = {n.name for n in network if not own_code(n.layer)}
    if not users and not user_loss:
        return []
    reaching = []  # (tensor, the nodes with user code downstream of it)
    for tensor in tensors:
        below = [n.name for n in network.downstream(tensor) if n.name in users]
        if below or user_loss:
            reaching.append((tensor, below))
    notes = []
    for k, (tensor, below) in enumerate(reaching):
        try:
            try:
                _probe(objective, tensor, below, eps, max_memory, PROBE_STEP)
            except PluginError:
                _probe(objective, tensor, below, eps, max_memory, PROBE_STEP * SMALLER)
        except OutOfTime:
            return [*notes, _unprobed_note([t for t, _ in reaching[k:]])]
        except PluginError as e:
            notes.append(
                f"perturbed copies were not compared with the network run alone for "
                f"{tensor}: {e}; state a layer keeps outside its arrays would go unnoticed "
                f"there"
            )
    return notes


def _unprobed_note(tensors: list[str]) -> str:
    """The report's note for tensors the time budget left unprobed."""
    return (
        f"the time budget left no time to compare perturbed copies with the network run "
        f"alone for {len(tensors)} tensor(s) ({', '.join(tensors[:5])}"
        f"{', ...' if len(tensors) > 5 else ''}): state a layer keeps outside its arrays "
        f"would go unnoticed there"
    )


def _probe(
    objective, tensor: str, below: list[str], eps: float, max_memory: int, step: float
) -> None:
    """Probe ``tensor`` (module docstring) with moves of ``step`` times each element's
    magnitude; below: the nodes with user code downstream."""
    flat = objective.tensors()[tensor].reshape(-1)
    if not flat.size:
        return
    at = probed_elements(flat.size, tensor)
    with np.errstate(all="ignore"):
        rms = float(np.sqrt(np.mean(np.square(flat.astype(np.float64)))))
        size = np.maximum(np.abs(flat[at].astype(np.float64)), rms)
    size[~np.isfinite(size) | (size == 0)] = 1.0
    index = np.repeat(at, 2)
    delta = (step * size[:, None] * np.array([1.0, -1.0])).reshape(-1)
    anchored = 2 * min(ANCHORS, len(at))  # the copies also run as the plain network
    with np.errstate(all="ignore"):
        together = np.asarray(objective.losses(tensor, index, delta), dtype=np.float64)
        # the same copies again, an element's two a call: a copy whose loss depends on
        # the other copies a call holds (their mean, the last one run) changes with them
        paired = np.empty(len(index))
        for pair in np.arange(len(index)).reshape(-1, 2):
            paired[pair] = objective.losses(tensor, index[pair], delta[pair])
        plain = np.full(len(index), np.nan)
        plain[:anchored] = [
            _alone(objective, tensor, i, d)
            for i, d in zip(index[:anchored], delta[:anchored], strict=True)
        ]
    f0 = float(objective.f0)
    pairs = [
        (together, paired, "together", "two a call"),
        (together, plain, "together", "the network run alone"),
        (paired, plain, "two a call", "the network run alone"),
    ]

    def apart(noise: float) -> list[np.ndarray]:
        out = []
        with np.errstate(all="ignore"):
            for got, want, _, _ in pairs:
                allowed = AGREE * np.abs(want - f0) + NOISES * (
                    noise + np.finfo(np.float64).eps * (abs(f0) + np.abs(want))
                )
                finite = np.isfinite(got) & np.isfinite(want)
                out.append(finite & (np.abs(got - want) > allowed))
        return out

    # the tensor's noise is measured only where epsilons of f do not cover the gap: the
    # measurement costs more than the probe (--fast never needs it otherwise)
    if not any(a.any() for a in apart(0.0)):
        return
    for (got, want, how, other), bad in zip(
        pairs, apart(tensor_noise(objective, tensor, eps, max_memory)), strict=True
    ):
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise NondeterministicError(
                below[0] if below else LOSS,
                _message(tensor, index[k], delta[k], (how, got[k]), (other, want[k]), below),
            )


def probed_elements(size: int, tensor: str) -> np.ndarray:
    """The flat positions probed in a tensor of ``size`` elements: its first, middle and
    last, then others drawn (the same for a tensor of the same name and size in every
    run) up to PROBE_ELEMENTS, or all of them in a small tensor; the first ANCHORS
    are also run as the plain network."""
    fixed = list(dict.fromkeys([0, size // 2, size - 1]))
    if size <= PROBE_ELEMENTS:
        rest = [i for i in range(size) if i not in fixed]
    else:
        rng = np.random.default_rng(zlib.crc32(f"{tensor}:{size}".encode()))
        drawn = rng.choice(size, PROBE_ELEMENTS, replace=False).tolist()
        rest = [i for i in drawn if i not in fixed][: PROBE_ELEMENTS - len(fixed)]
    return np.array(fixed + rest, dtype=np.intp)


def _alone(objective, tensor: str, i: int, d: float) -> float:
    """The loss of the network run on its own with element i of ``tensor`` moved by d."""
    moved = objective.tensors()[tensor].copy()
    moved.reshape(-1)[i] += d
    return float(objective.loss_at({tensor: moved}))


def _message(
    tensor: str,
    i: int,
    d: float,
    got: tuple[str, float],
    want: tuple[str, float],
    below: list[str],
) -> str:
    who = ", ".join(repr(n) for n in below) if below else "the loss"
    return (
        f"perturbed copies of the network evaluated as the check evaluates them give "
        f"another loss than the network run on its own ({tensor} element {i} moved by "
        f"{d:.3g}: {float(got[1])!r} {got[0]}, {float(want[1])!r} {want[0]}), so finite "
        f"differences would measure another function than the network's. A layer keeps "
        f"state outside its inputs, parameters and cache (a module-level variable one "
        f"layer writes and another reads, a result kept between calls); user code "
        f"downstream of {tensor}: {who}. Pass every value a forward uses in through its "
        f"inputs or parameters."
    )
