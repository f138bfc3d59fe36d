"""``--method taylor``: the Taylor-remainder test, a verdict without eps or tolerances.

For a tensor x with analytic gradient g, a random direction v (unit norm over the
tensor) and steps h, the remainder

    r(h) = |f(x + h v) - f(x) - h g.v|

shrinks like h^2 when g is right (the first-order terms cancel, the curvature is left)
and like h when it is wrong (an error e = (grad f - g).v leaves h e behind). The observed
order is the slope of log r against log h.

Steps: h_k = h0 * 2^-k, k = 0..STEPS-1, with h0 = 0.1 * the tensor's scale (its norm, or
0.01 per element when smaller), i.e. relative steps from 1e-1 down to about 1e-5. The
order is fitted by least squares over the FIT_POINTS smallest steps whose remainder
stands above the rounding floor: the asymptotic order lives at small h, while large
steps may cross a kink (ReLU) or feel third-order terms. Before a tensor fails, the
steps go on halving EXTRA_STEPS more times (to ~1e-13 relative), so that a kink closer
than 1e-5 (a near-tie, a ReLU input of 1e-7) is left behind.

Rounding floor: the larger of ``FLOOR_FACTOR`` float64 epsilons times the magnitudes
involved, and ``PROBE_FACTOR`` times the remainder measured at two tiny steps (about
1e-11 relative), where every real term is negligible and what is left is the forward's
own rounding noise (which the magnitudes alone underestimate when the loss sums terms
that cancel).

Verdict, per side (+v and -v): passed when the order is at least ORDER_THRESHOLD = 1.8
(an honest margin below 2 for residual noise and third-order terms, far above the 1 of a
wrong gradient), or when the remainder is at the rounding floor at the smallest steps:
the gradient is then exact to what float64 can measure (an objective linear in the
tensor, or piecewise linear, as a ReLU stack under an ``upstream`` loss), and the order
is reported as None.

A float32 backward carries ~1e-7 relative rounding, itself a first-order remainder; a
first-order coefficient |R(h)| / h within ROUNDING_FACTOR epsilons of g's dtype times
the largest gradient norm is that rounding, not a bug (``gradient_rounding``).

Both sides are measured because of kinks. A wrong gradient leaves h * e on BOTH sides,
with opposite signs; a kink within the steps (a ReLU input near 0, a max-pool near-tie)
makes at most the side that crosses it first-order, so one second-order side is enough
to pass. A kink exactly at x makes both sides first-order but with the same sign when
g.v lies between the one-sided slopes: passed and said so (``combine_sides``). Where
several kinks meet (ties, several ReLU inputs at exactly 0) a random direction crosses
them all at once and a valid g.v can fall outside that bracket; the Taylor test cannot
decide there. engine/kinks.py then attributes the failure to the kinks when every
backward on the path passes its isolated element-wise check and met kinks, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..how_checked import HowChecked
from ..report import TensorCheck
from . import domain
from .numeric import EPS64

#: Pass when the observed order is at least this (right: 2, wrong: 1).
ORDER_THRESHOLD = 1.8
#: Number of steps h0, h0/2, ..., h0/2^(STEPS-1).
STEPS = 14
#: First step, relative to the tensor's scale.
H0_RELATIVE = 0.1
#: Further halvings (down to ~1e-13 relative) tried before a failing verdict is final.
EXTRA_STEPS = 26
#: First-order remainders up to this many epsilons (of g's dtype) times the largest
#: gradient norm are the analytic gradient's own rounding: a float32 backward's limit.
ROUNDING_FACTOR = 100.0
#: A remainder this far above its floor that vanishes at the next halving left a kink.
DROP_FACTOR = 64.0
#: The order is fitted over at most this many of the smallest steps above the floor.
FIT_POINTS = 6
#: A remainder counts when it exceeds FLOOR_FACTOR * eps * (|f(x)| + |f(x+hv)| + |h g.v|).
FLOOR_FACTOR = 1e3
#: ... and PROBE_FACTOR times the rounding noise measured at tiny steps.
PROBE_FACTOR = 100.0
#: Tiny steps of the noise probe, relative to h0.
PROBE_RELATIVE = 1e-10
#: The remainder "vanishes" when this many of the smallest steps are at the floor.
EXACT_TAIL = 3


KINK_NOTE = (
    "Taylor: the loss has a kink along the test direction (first-order remainder on both "
    "sides, same sign): g.v lies between the one-sided slopes, as a subgradient's does"
)


@dataclass
class TaylorResult:
    """One tensor's Taylor-remainder test.

    steps, remainders, floors: (STEPS,) in decreasing h. order is None when the
    remainder is at the rounding floor (nothing left to fit: exact to float64).
    """

    order: float | None
    passed: bool
    steps: np.ndarray
    remainders: np.ndarray  # |R(h)| along +v
    floors: np.ndarray
    fitted: np.ndarray  # bool (STEPS,): the points the order was fitted on
    remainders_minus: np.ndarray | None = None  # |R(h)| along -v
    floors_minus: np.ndarray | None = None
    fitted_minus: np.ndarray | None = None
    kink: bool = False  # first order on both sides, g.v between the one-sided slopes

    @property
    def exact(self) -> bool:
        return self.order is None


def direction(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A random direction of unit norm (float64) over a tensor of ``shape``."""
    v = rng.standard_normal(shape)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def tensor_scale(x: np.ndarray) -> float:
    """The tensor's norm, but at least 0.01 per element (a zero bias still gets steps)."""
    return max(float(np.linalg.norm(x)), 0.01 * np.sqrt(x.size))


def fit_order(steps: np.ndarray, remainders: np.ndarray) -> float:
    """Least-squares slope of log r against log h."""
    return float(np.polyfit(np.log(steps), np.log(remainders), 1)[0])


#: A tensor whose nonzero magnitudes span more than this ratio is also tested along a
#: direction scaled by each element's magnitude (``scaled_direction``).
MIXED = 1e3


def scaled_direction(v: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """v scaled by each element's magnitude, of unit norm: along it every element moves by
    the same fraction of itself, as the element-wise steps do (None when x's nonzero
    magnitudes lie within MIXED of each other, where v already moves them alike).

    A unit direction moves a value of 1e-6 beside one of 3000 by as much as the large
    one: past its own curvature at every step, so that its remainders say nothing of its
    gradient (a sign(x) backward passed; found by a hunt). Elements at 0 stay put here;
    the unit direction tests them."""
    size = np.abs(x)
    nonzero = size[size > 0]
    if not len(nonzero) or float(nonzero.max()) <= MIXED * float(nonzero.min()):
        return None
    w = v * size
    norm = float(np.linalg.norm(w))
    return w / norm if norm > 0 and np.isfinite(norm) else None


def taylor_test(objective, tensor: str, rng: np.random.Generator) -> TaylorResult:
    """Run the Taylor-remainder test on one tensor of an objective, along +v and -v, and
    where its magnitudes are mixed along the magnitude-scaled v too (``scaled_direction``;
    the same random draw, so the generator moves alike): the tensor passes only when both
    pass, and the failing side's result is the one reported.

    objective: anything with ``tensors()``, ``analytic`` and ``loss_at({tensor: value})``
    (see engine/objective.py); all arithmetic in float64.
    """
    x = objective.tensors()[tensor].astype(np.float64)
    g_given = np.asarray(objective.analytic[tensor])
    g = g_given.astype(np.float64).reshape(x.shape)
    scale = max(
        float(np.linalg.norm(np.asarray(a, np.float64))) for a in objective.analytic.values()
    )
    rounding = gradient_rounding(g_given, scale)
    v = direction(x.shape, rng)
    result = _along(objective, tensor, x, g, v, rounding)
    scaled = scaled_direction(v, x)
    if result.passed and scaled is not None:
        other = _along(objective, tensor, x, g, scaled, rounding, scaled=True)
        if not other.passed:
            return other
    return result


def _along(
    objective,
    tensor: str,
    x: np.ndarray,
    g: np.ndarray,
    v: np.ndarray,
    rounding: float,
    scaled: bool = False,
) -> TaylorResult:
    """The Taylor test of ``tensor`` (x, its values; g, its analytic gradient, float64)
    along +v and -v (v: unit norm, x's shape; ``scaled``: ``scaled_direction``'s)."""
    slope = float(np.sum(g * v))  # g.v
    f0 = float(objective.loss_at({tensor: x}))
    h0 = H0_RELATIVE * tensor_scale(x)

    def remainder(h: float) -> tuple[float, float]:
        """The signed remainder f(x + h v) - f(x) - h g.v (h < 0: along -v) and f."""
        f = domain.loss_at(objective, {tensor: x + h * v})  # NaN past the forward's domain
        return f - f0 - h * slope, f

    noise = max(abs(remainder(s * PROBE_RELATIVE * h0)[0]) for s in (1.0, -1.0))

    def measure(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Signed remainders and their rounding floors at the (signed) steps."""
        signed, floors = np.empty(len(steps)), np.empty(len(steps))
        for k, h in enumerate(steps):
            signed[k], f = remainder(float(h))
            floors[k] = max(
                FLOOR_FACTOR * EPS64 * (abs(f0) + abs(f) + abs(h * slope)), PROBE_FACTOR * noise
            )
        return signed, floors

    steps = h0 * 2.0 ** -np.arange(STEPS)
    plus, minus = measure(steps), measure(-steps)
    result = combine_sides(steps, *plus, *minus, rounding=rounding)
    if scaled and _wrong_below(plus, minus, rounding, steps, f0):
        # along the scaled direction the small elements' wrong h * e is first order from
        # the first step and fades into the 1e3-epsilon floor by halving, which the
        # usual rule reads as a remainder vanishing: read it down to TAIL_ULPS instead
        tail = combine_sides(steps, *plus, *minus, allow_exact=False, rounding=rounding)
        return replace(tail, passed=False, kink=False)
    if result.passed and not result.kink:
        return result
    # A kink closer than the smallest step (a near-tie) is crossed by every step; smaller
    # steps leave it behind. A wrong gradient stays first-order however small h gets.
    # A kink is taken only if it is still one below the usual steps: a smooth function
    # curved on a scale far below them (sqrt(x^2 + 1e-12) at x = 1e-6, in a tensor whose
    # norm is 3000) is first order on both sides there, and a wrong g.v can lie between
    # its one-sided slopes (found by a hunt: a sign(x) backward passed as a kink).
    more = h0 * 2.0 ** -np.arange(STEPS, STEPS + EXTRA_STEPS)
    below = measure(more), measure(-more)
    if _wrong_below(below[0], below[1], rounding, more, f0):
        # first order with opposite signs where the smaller steps measure anything: a
        # wrong g.v, whatever the larger steps showed (a fit over both ranges blends a
        # first order above, a curvature between and a first order below into ~1.8)
        tail = combine_sides(more, *below[0], *below[1], allow_exact=False, rounding=rounding)
        return replace(tail, passed=False, kink=False)
    if result.passed:
        return result
    plus = tuple(np.concatenate(p) for p in zip(plus, below[0], strict=True))
    minus = tuple(np.concatenate(p) for p in zip(minus, below[1], strict=True))
    return combine_sides(
        np.concatenate([steps, more]), *plus, *minus, allow_exact=False, rounding=rounding
    )


#: The smallest steps' remainders are read down to this many epsilons of |f(x)| (far
#: above its rounding; the probe's noise can hold a wrong gradient's own h * e) ...
TAIL_ULPS = 64.0
#: ... and mark a wrong g.v when the smallest this many in a row are first order
#: (fitted between TAIL_ORDER and ORDER_THRESHOLD) with opposite signs.
TAIL_POINTS, TAIL_ORDER = 4, 0.7


def _wrong_below(plus, minus, rounding: float, steps: np.ndarray, f0: float) -> bool:
    """The mark of a wrong g.v at the smaller steps (decreasing ``steps``): the last
    TAIL_POINTS steps in a row at which both sides are read (above TAIL_ULPS epsilons of
    |f0|) with opposite signs, first order on both and above the gradient's own rounding.
    plus, minus: (signed remainders, floors) along +v and -v."""
    (r_plus, _), (r_minus, _) = plus, minus
    floor = TAIL_ULPS * EPS64 * abs(f0)
    run = (np.abs(r_plus) > floor) & (np.abs(r_minus) > floor)
    run &= np.sign(r_plus) == -np.sign(r_minus)
    seen = np.flatnonzero(run)
    if not len(seen):
        return False
    last = seen[-1]  # the smallest step read, and the TAIL_POINTS above it
    first = last - TAIL_POINTS + 1
    if first < 0 or not run[first : last + 1].all():
        return False
    tail = slice(first, last + 1)
    for r in (r_plus, r_minus):
        order = fit_order(steps[tail], np.abs(r[tail]))
        if not TAIL_ORDER <= order < ORDER_THRESHOLD:
            return False
    return float(np.min(np.abs(r_plus[tail]) / steps[tail])) > rounding


def gradient_rounding(g: np.ndarray, scale: float) -> float:
    """The first-order error the analytic gradient carries from its own rounding:
    ROUNDING_FACTOR * eps(g's dtype) * scale, scale = the largest gradient norm of the
    objective's tensors (a gradient that should be 0, a bias before a softmax, is
    rounding noise of the gradients it is computed from). float32: ~1e-5 relative."""
    kind = g.dtype if np.issubdtype(g.dtype, np.floating) else np.float64
    return ROUNDING_FACTOR * float(np.finfo(kind).eps) * scale


def combine_sides(
    steps: np.ndarray,
    r_plus: np.ndarray,
    floors_plus: np.ndarray,
    r_minus: np.ndarray,
    floors_minus: np.ndarray,
    allow_exact: bool = True,
    rounding: float = 0.0,
) -> TaylorResult:
    """The verdict from the signed remainders along +v and -v (module docstring).

    - either side of order ~2 (or exact): g.v is that side's derivative; a wrong g
      leaves h * e on both sides, so this passes only right gradients;
    - both sides of order ~1 with the SAME sign at the small steps: f has a kink along
      v and g.v lies between its one-sided slopes (R+ = h (d+ - g.v) and
      R- = h (g.v - d-) share the sign of d+ - d-), as every subgradient does: passed,
      flagged ``kink``;
    - otherwise (opposite signs, the mark of a wrong gradient): failed.

    ``allow_exact=False`` (the extended steps, down to ~1e-13) does not pass a side for
    reaching the rounding floor, since that low even a wrong gradient's h * e sinks below
    it, unless it gets there at once, from far above (``_drops``: a kink left behind).
    """
    plus = judge_remainders(steps, np.abs(r_plus), floors_plus, allow_exact, rounding)
    minus = judge_remainders(steps, np.abs(r_minus), floors_minus, allow_exact, rounding)
    parts = dict(
        steps=steps,
        remainders=np.abs(r_plus),
        floors=floors_plus,
        fitted=plus.fitted,
        remainders_minus=np.abs(r_minus),
        floors_minus=floors_minus,
        fitted_minus=minus.fitted,
    )
    passing = [r for r in (plus, minus) if r.passed]
    if passing:
        orders = [r.order for r in passing if r.order is not None]
        return TaylorResult(max(orders) if orders else None, True, **parts)
    orders = [r.order for r in (plus, minus) if r.order is not None]
    order = max(orders) if orders else None
    both = plus.fitted & minus.fitted
    if both.sum() >= 3 and np.all(np.sign(r_plus[both]) == np.sign(r_minus[both])):
        return TaylorResult(order, True, kink=True, **parts)
    return TaylorResult(order, False, **parts)


def judge_remainders(
    steps: np.ndarray,
    remainders: np.ndarray,
    floors: np.ndarray,
    allow_exact: bool = True,
    rounding: float = 0.0,
) -> TaylorResult:
    """The verdict of one side from |R(h)| (see the module docstring).

    allow_exact: pass when the remainder vanishes into the rounding floor at the
    smallest steps (only meaningful while the steps are large enough for a wrong
    gradient's h * e to stand above the floor). rounding: a first-order coefficient
    |R(h)| / h at or below this is the analytic gradient's own rounding (float32), not
    an error: exact.
    """
    above = remainders > floors
    fitted = np.zeros(len(steps), dtype=bool)
    fitted[np.flatnonzero(above)[-FIT_POINTS:]] = True
    vanishes = (allow_exact and not above[-EXACT_TAIL:].any()) or _drops(remainders, floors)
    if fitted.sum() < 3:
        # Fewer than three measurable remainders: no order to fit; exact when the
        # smallest steps are at the floor.
        return TaylorResult(None, vanishes, steps, remainders, floors, fitted)
    order = fit_order(steps[fitted], remainders[fitted])
    if order < ORDER_THRESHOLD and np.min(remainders[fitted] / steps[fitted]) <= rounding:
        return TaylorResult(None, True, steps, remainders, floors, fitted)
    if order >= ORDER_THRESHOLD:
        return TaylorResult(order, True, steps, remainders, floors, fitted)
    if vanishes:
        # Large steps left a remainder (a kink crossed, higher-order terms), but at small
        # steps it is at the rounding floor: no first-order error is measurable.
        return TaylorResult(None, True, steps, remainders, floors, fitted)
    return TaylorResult(order, False, steps, remainders, floors, fitted)


def _drops(remainders: np.ndarray, floors: np.ndarray) -> bool:
    """The remainder falls from DROP_FACTOR x its floor to below the floor in one halving
    and stays there: a kink the smaller steps no longer reach. A first-order remainder
    h * e only halves per halving, so a wrong gradient never drops like this."""
    above = remainders > floors
    last = np.flatnonzero(above)
    if len(last) == 0 or last[-1] >= len(above) - EXACT_TAIL:
        return False
    k = last[-1]
    return bool(remainders[k] > DROP_FACTOR * floors[k])


def taylor_check(
    objective, tensor: str, shape: tuple[int, ...], rng: np.random.Generator
) -> TensorCheck:
    """A TensorCheck whose verdict is the Taylor test's.

    No element gets a numeric value (checked_mask all False, numeric NaN), mode "taylor",
    ``taylor_passed`` holds the verdict and ``taylor_order`` the order (None: exact). A
    kink met along the direction is stated in ``diagnosis`` (no element can be named).
    The steps and remainders go to ``extra["taylor"]``.
    """
    result = taylor_test(objective, tensor, rng)
    return TensorCheck.unchecked(
        tensor,
        objective.analytic[tensor].reshape(shape),
        HowChecked.TAYLOR,
        taylor_order=result.order,
        taylor_passed=result.passed,
        diagnosis=KINK_NOTE if result.kink else None,
        extra={
            "taylor": {
                "kink": result.kink,
                "steps": result.steps.tolist(),
                "remainders": result.remainders.tolist(),
                "remainders_minus": _listed(result.remainders_minus),
                "floors": result.floors.tolist(),
                "fitted": result.fitted.tolist(),
            }
        },
    )


def _listed(a: np.ndarray | None) -> list[float] | None:
    return None if a is None else a.tolist()
