"""What the loss rounds inside: the terms its value and gradient do not show.

The rounding floor of one evaluation is a few epsilons of the terms an evaluation rounds
(engine/numeric.py ``magnitude``): every example's |loss| and |dE/dv * v| over a layer's
output v. A loss can round more than both show. softmax cross-entropy on saturated
logits (the target's logit 30 above the others) is log(1 + 1e-13): a loss of 1e-13 with
gradients of 1e-13, computed as the log of a sum near 1, so it moves in steps of 2e-16.
A perturbation that moves it by less leaves it exactly where it was: the numeric
gradient reads 0, no noise probe sees any noise, and a floor of a few epsilons of 1e-13
fails a correct gradient ("gradient sent where none should go").

So the loss's own rounding is added to the terms, the larger of

- what the loss declares (``Loss.rounding_terms``: the built-in log-sum-exp declares its
  target's mass, an epsilon per example), and
- what is measured on the loss alone, for losses that declare nothing (a cs231n
  ``softmax_loss`` function pair, a plugin): the loss at y + s d for GRID_DIRECTIONS
  random directions d (each output moved in proportion to its magnitude) and steps s
  from GRID_STEPS, where the even part L(s) + L(-s) - 2 L(0) and the odd third
  difference (L(2s) - L(-2s)) - 2 (L(s) - L(-s)), which hold no gradient term, are read
  as rounding only where they do not grow with the step (a curvature grows as s^2, a
  kink as s, a cubic term as s^3; the grid of the loss's rounding does not), as
  engine/numeric.py reads the noise of the whole network. The steps double, so that
  the few steps where a saturated loss crosses its grid while its curvature stays
  below it are all tried.

Measured on the loss alone, never on a layer: a layer that quantizes its output is a
bug the check must see, while a loss has no reason to be a staircase beyond its own
rounding. Deterministic (a generator of its own): the check's random state is untouched.
"""

from __future__ import annotations

import numpy as np

from .numeric import element_steps, steady, step_scale
from .passes import loss_forward, loss_rounding_terms, reduce_losses, tiles_target

#: Random directions the loss's grid is read along.
GRID_DIRECTIONS = 4
#: Steps, relative to each output's magnitude, doubling from far below any rounding to
#: the precision stage's scale (engine/verdict.py PRECISION_EPS): 1e-12 * 2^j.
GRID_STEPS = tuple(1e-12 * 2.0**j for j in range(31))

#: A reading that grows more than this many times at two steps running is the loss's
#: own shape (4x for a curvature, 8x for a cubic term): no step beyond is read.
GROWS = 3.0


def loss_terms(spec, y: np.ndarray, target: np.ndarray | None) -> float:
    """The magnitude of what the loss rounds on y (N, *shape) beyond |losses| and
    |dE/dy * y|: the larger of its declared ``rounding_terms`` and the grid measured on
    it (``loss_grid``), in epsilons (a grid of q adds q / eps)."""
    declared = loss_rounding_terms(spec, y, target)
    return max(declared, loss_grid(spec, y, target) / np.finfo(np.float64).eps)


def loss_grid(spec, y: np.ndarray, target: np.ndarray | None) -> float:
    """q: the loss's own rounding step near y, 0 where no reading is steady (module
    docstring). y: (N, *shape) float64. Every moved copy of y goes to the loss in one
    call, as the element-wise check sends its copies (P*N rows, copy-major)."""
    n = y.shape[0]
    if not y.size or not n:
        return 0.0
    scale = element_steps(y, step_scale(y), 1.0)  # max(|y|, rms(y)), as steps are taken
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((GRID_DIRECTIONS, 1, *y.shape)) * scale
    signed = np.concatenate([GRID_STEPS, [-s for s in GRID_STEPS], [0.0]])
    copies = (y[None, None] + signed.reshape(1, -1, *([1] * y.ndim)) * directions).reshape(
        -1, *y.shape[1:]
    )  # (D * (2S + 1) * N, *shape): each direction's steps +s, then -s, then 0
    p = len(copies) // n
    if target is not None and not tiles_target(spec.loss):
        target = np.tile(target, (p,) + (1,) * (target.ndim - 1))
    with np.errstate(all="ignore"):
        losses, _ = loss_forward(spec, copies, target)
        f = reduce_losses(np.asarray(losses, dtype=np.float64), n, spec.reduction)
        f = f.reshape(GRID_DIRECTIONS, len(signed))
        readings = [0.0]
        for row in f:
            plus, minus, f0 = row[: len(GRID_STEPS)], row[len(GRID_STEPS) : -1], row[-1]
            finite = np.isfinite(plus) & np.isfinite(minus)
            reach = len(finite) if finite.all() else int(np.argmin(finite))  # the finite run
            if not np.isfinite(f0) or reach < 3:
                continue
            plus, minus = plus[:reach], minus[:reach]
            readings.extend(_steady(np.abs(plus + minus - 2 * f0)) / 2)
            odd = plus - minus  # f(s) - f(-s) = 2 g s + O(s^3)
            readings.extend(_steady(np.abs(odd[1:] - 2 * odd[:-1])) / 3)
    return float(max(readings))


def _steady(d: np.ndarray) -> np.ndarray:
    """The readings d[j] (one per step, the steps doubling) that the next step does not
    grow beyond (engine/numeric.py ``steady``): noise, where a curvature or a kink would
    grow. Only the steps before the loss's own shape takes over are read: from the
    first step where d grows more than GROWS-fold twice running (a curvature's
    fourfold, a cubic term's eightfold), larger steps see the function, whose bounded
    parts (a softmax whose winner changed) can level off like noise does."""
    grows = (d[:-1] > 0) & (d[1:] > GROWS * d[:-1])
    sustained = np.flatnonzero(grows[:-1] & grows[1:])
    if len(sustained):
        d = d[: sustained[0] + 1]
    return d[:-1][steady(np.stack([d[:-1], d[1:]], axis=1), 0.0)]
