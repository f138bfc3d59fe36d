"""The element rule: every numeric value comes with an estimate of its own error.

For an element with analytic value a, gradcheck computes a numeric value n and a bound
b on n's error, and the element

- passes when |a - n| <= b + allowance + atol + rtol * max(|a|, |n|);
- is a kink when a non-differentiable point is proven at it (below) and a lies between
  the one-sided slopes (a failure under ``strict_kinks``);
- fails when no step agrees with a and the numerics are consistent enough to say so;
- is inconclusive when no step resolves it (never a pass).

``b = SAFETY * (truncation + rounding) + kink allowance``:

- rounding: rho / h, rho the forward's measured noise (engine/numeric.py), at least
  FLOOR_ULPS epsilons of the values differenced, h the element's (relative) step;
- truncation: from differences at h, 2h and 4h. For a smooth f the central difference
  is C(h) = g + c h^2 + O(h^4), so C(h) - C(2h) and C(2h) - C(4h) stand in the ratio
  1:4; Richardson's N(h) = C(h) + (C(h) - C(2h)) / 3 removes the h^2 term, and
  |N(h) - N(2h)| / 15 estimates what is left;
- kink allowance: (|r| + |q|) / 4 (``_kink_signature``), at least what one kink within
  4h that the smoothness tests let through can add to N(h).

``allowance`` is the analytic side's own rounding: ANALYTIC_ULPS epsilons of its dtype
times (|a| + the largest term the backward passes combined into the tensor's gradient:
its own gradient, every delta on its way to the loss, the loss's target;
``gradient_scale``). Negligible in float64; in float32
it is what a correct float32 backward can resolve. atol and rtol are the user's explicit
widenings (0 by default).

Stages, so that the extra steps cost only where they are needed:

1. the central difference at h (two evaluations); the element passes when |a - C(h)|
   is within SAFETY * rounding (its truncation is far below its rounding for any
   smooth layer at the default step);
2. otherwise C(2h) and C(4h) too. When f is smooth at this scale (below), the element
   passes when a agrees with Richardson's value, and fails when it disagrees at two
   scales ten times apart;
3. otherwise (a kink within 4h, or curvature too strong for h) the step shrinks ten-fold,
   up to SHRINK_TRIES times, and stage 2 is repeated; an element still open shrinks on,
   up to MAX_SHRINKS times, while its rounding at the next step stays below its analytic
   value (a 0 among values of 1e9 starts with a step of 1e3, beyond the curvature of a
   sigmoid: the step that resolves it lies many decades lower).

4. the precision stage: an element that passed at the screening steps of 1-3 is judged
   again at H = PRECISION_EPS times its magnitude (1e-3, a thousand times the default
   step), where a smooth f gives Richardson's value with a thousandth of the rounding:
   the screening steps' bound, about 1e-8 |f| / |v|, misses a relative 1e-6 in an
   element whose |g v| is below 1% of |f|; at H it is seen down to about 1e-10 |f| / |v|.
   Its verdict is used when f is smooth at H, the two values agree within their bounds,
   the analytic values are float64 (a float32 backward's own rounding is far above
   that), and no node between the tensor and the loss declares a kink: two kinks a
   little way apart (near ties) make a narrow region whose slope differs from its
   surroundings, which no step reaching past it can see when its width times the jump
   is below the rounding of f. Nor is it used where N(H) is not above its bound: f flat
   within its rounding at every step passes the smoothness tests trivially.
5. a kink proven at an element may lie a little way off it, nearer than every step: each
   is judged again at 1e-3 and 1e-6 of its steps, and at an eighth of the kink's
   distance where its first steps resolve one (``_kink_distance``, ``_off_the_kink``);
   a settled, resolved verdict there replaces the kink.
6. the growth stage: an element that passed only because its bound was wider than both
   its values (neither a nor n above it, and the bound above ZERO_RESOLUTION of the
   tensor's gradient scale) was not resolved: steps relative to values of 1e-6 moved a
   loss of 5 by 1e-18, below its rounding, and a dW of 0 passed against a true 5e-6
   (found by a hunt). Its steps grow ten-fold, up to MAX_GROWS times, while f stays
   smooth, and it is judged again at the largest step that resolves it (``_grow``): a
   disagreement there fails it. One that no larger smooth step resolves keeps the
   earlier stages' verdict: a kink or a curvature within the larger steps, where those
   stages decided (made inconclusive instead, 15 correct networks of the test suite
   near kinks and saturated losses were).

A first step that gives NaN or Inf (past the edge of the forward's domain) is made
ten-fold smaller, up to DOMAIN_SHRINKS times, before the check gives up (exit 3).

Smooth means the ratios of a smooth f hold: C(h) - C(2h) : C(2h) - C(4h) = 1:4; the
one-sided slopes' gap, s f'', doubles with the step s (a kink crossed between two steps
breaks it even where the central differences happen to fall on a parabola); and the
even part G(s) = f(v + s) + f(v - s) - 2 f(v), which holds only even powers of s, has
no other: r = G(4h)/4h - 10 G(2h)/2h + 16 G(h)/h within its noise (R_NOISE roundings).
The first two are relative to the curvature, which at a large step can hide a kink
whose jump is far above the rounding; r is not.

A kink is proven when the one-sided slopes R(s) = (f(v + s) - f(v)) / s and
L(s) = (f(v) - f(v - s)) / s keep a gap well above their noise that changes by at most
STEADY of itself (a smooth f has a gap of s f'' that doubles with s), and stay bounded
(each slope moves by at most STEADY of the gap), over the smallest steps taken, across
a range KINK_SPAN wide (two scales): a kink a little way off the element shows a steady
gap only while the steps reach past it. Then a is judged against [min, max] of the two
slopes extrapolated to s -> 0. A random or
corrupted forward gives slopes that wander with s: no kink is proven, and the element
is inconclusive (or fails when a lies outside every numeric estimate taken).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import NumericalError
from . import numeric
from .compare import ElementVerdict, Tolerances, rel_error

#: The bound is this many times the estimated truncation and rounding.
SAFETY = 10.0
#: Ten-fold smaller steps tried when a scale is not smooth.
SHRINK_TRIES = 3
SHRINK = 10.0
#: Ten-fold smaller first steps tried for an element whose first steps give NaN or Inf.
DOMAIN_SHRINKS = 4
#: ... and at most this many for an element whose next step can still resolve its value.
MAX_SHRINKS = 9
#: The analytic side's rounding allowance, in epsilons of its dtype.
ANALYTIC_ULPS = 64.0
#: A proven kink's gap changes by at most this fraction of itself over h, 2h, 4h, and
#: its slopes move by at most this fraction of the gap.
STEADY = 0.25
#: Smooth: the ratios of a smooth f (1:4 and 1:2:4) hold to this fraction, plus noise.
#: Their next-order terms are of order (h / the scale f varies on)^2, far below this
#: at any step that resolves f; a kink crossed between steps breaks them.
SMOOTH_TOL = 0.1
#: A kink's gap must exceed its noise (2 rho / s) this many times.
GAP_NOISE = 10.0
#: A kink is proven over steps spanning at least this ratio (two scales apart).
KINK_SPAN = 10.0
#: The precision stage's step, relative to each element's magnitude (as eps is).
PRECISION_EPS = 1e-3
#: A passed element is resolved when its numeric value is above its bound, or when its
#: bound is below ``_zero_resolution`` and the analytic value within it (a zero resolved
#: as one): ZERO_RESOLUTION of the tensor's gradient scale, and at most ZERO_OF_TENSOR
#: of its largest analytic gradient. Only whether the growth stage starts depends on
#: them (it ends at the largest smooth step): the sweep networks' exact zeros (dead
#: units) have bounds of at most 3.9e-5 of their scale and 3.5e-4 of their tensor's
#: largest gradient (with 1e-5, LeNet-5 at batch 8 grew 9,485 elements and took 2.2x
#: as long); a dense layer on inputs and weights of 1e-6 had 0.04 and 7.
ZERO_RESOLUTION = 1e-4
ZERO_OF_TENSOR = 1e-3
#: Ten-fold larger steps tried, in turn, for a passed element its steps did not resolve.
MAX_GROWS = 12
GROW = 10.0
#: r (``_kink_signature``) within this many roundings is noise: the sum of the absolute
#: weights r gives the evaluations it is made of.
R_NOISE = 65.0


@dataclass
class _Scale:
    """Central differences and one-sided slopes at s = h, 2h, 4h: each (K, 3)."""

    central: np.ndarray
    right: np.ndarray
    left: np.ndarray
    rounding: np.ndarray  # (K,) rounding of C(h): rho / h
    f: np.ndarray  # (K, 6) all values, for the finite check
    #: (K,) rounding of the one-sided slopes' gap G(s) / s at h: rounding, or more where
    #: the element's own evaluations show f0 rounded apart (``_own_noise``); central
    #: differences never use f0, so only the gap's tests read it
    gap_rounding: np.ndarray

    @property
    def richardson(self) -> np.ndarray:
        c = self.central
        return c[:, :2] + (c[:, :2] - c[:, 1:]) / 3  # N(h), N(2h)


def _scale(objective, tensor, index, h, rho, max_memory: int, fresh) -> _Scale:
    """Evaluate at ±h, ±2h, ±4h (reusing ``fresh``, the ±h values, when given)."""
    mult = [2.0, -2.0, 4.0, -4.0] if fresh is not None else [1.0, -1.0, 2.0, -2.0, 4.0, -4.0]
    offsets = h[:, None] * np.array(mult)
    with np.errstate(all="ignore"):
        e = numeric.evaluate(objective, tensor, index, offsets, max_memory)
    f, taken = e.f, e.offsets
    if fresh is not None:
        f = np.concatenate([fresh[0], f], axis=1)
        taken = np.concatenate([fresh[1], taken], axis=1)
    plus, minus = f[:, 0::2], f[:, 1::2]
    hp, hm = taken[:, 0::2], -taken[:, 1::2]
    with np.errstate(all="ignore"):
        central = (plus - minus) / (hp + hm)
        right = (plus - e.f0) / hp
        left = (e.f0 - minus) / hm
    at = np.abs(objective.tensors()[tensor].reshape(-1)[index]).astype(np.float64)
    own = _rounding(_own_noise(rho, f, e.f0, at, central), f, h)
    return _Scale(central, right, left, _rounding(rho, f, h), f, own)


def _own_noise(
    rho: float, f: np.ndarray, f0: float, at: np.ndarray, central: np.ndarray
) -> np.ndarray:
    """(K,): rho, or more where an element's own evaluations show f0 rounded apart from
    its neighbours by its own grid: the noise of the one-sided slopes' tests, which use
    f0 (central differences do not, and keep rho: an element whose central differences
    wander in its steps' noise stays unresolved). f: (K, 6) at +-h, +-2h, +-4h,
    interleaved; at: the elements' |values| (K,); central: their central differences
    (K, 3).

    The even part G(t) = f(v + t) + f(v - t) - 2 f0 of a smooth f grows like t^2, and
    by a kink like t. One that stays the same, within a factor of two and of one sign,
    at t = h, 2h, 4h is f0's own rounding, 2 (f(v) - fl f(v)), which the noise probes (a
    few elements) need not meet: a layer norm of two features near -30 with a spread of
    1e-3 rounds each example's mean on the grid of 30, and f0 sat 7e-13 below both
    neighbours of one element at every step from 1e-12 to 1e-10, while the probes read
    2e-16 (a fresh draw of tests/test_offset_inputs.py left its right gradient
    inconclusive). No smooth f of two terms, a t^2 + b t^4, keeps G within a factor of
    two over t, 2t, 4t; steps far past the scale f varies on can (a batch norm saturated
    by steps of 0.3 beside a spread of 1e-3), so G is taken for rounding only up to
    OWN_GRID_ULPS epsilons of |v df/dv|, the most that rounding the element's value
    moves f by."""
    g = f[:, 0::2] + f[:, 1::2] - 2 * f0  # (K, 3)
    big, small = np.max(np.abs(g), axis=1), np.min(np.abs(g), axis=1)
    flat = (big <= 2 * small) & (np.all(g > 0, axis=1) | np.all(g < 0, axis=1))
    with np.errstate(all="ignore"):  # an overflowed step's central difference: no grid
        grid = OWN_GRID_ULPS * numeric.EPS64 * at * np.max(np.abs(central), axis=1)
    own = flat & np.isfinite(grid) & (big / 2 <= grid)
    return np.where(own, np.maximum(rho, big / 2), rho)


def _rounding(rho: float, f: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Rounding of a central difference at step h: rho / h, rho (a number, or one per
    element, (K,)) at least a few epsilons of the values differenced (f: (K, m))."""
    floor = numeric.FLOOR_ULPS * numeric.EPS64 * np.max(np.abs(f), axis=1)
    floor = np.maximum(floor, numeric.SUBNORMAL_FLOOR)
    return np.maximum(rho, floor) / h


def _smooth(s: _Scale) -> np.ndarray:
    """f is smooth over [v - 4h, v + 4h], as far as the steps can tell: C(h) - C(2h) and
    C(2h) - C(4h) stand in the ratio 1:4 (the h^2 term), and the gap between the
    one-sided slopes, s f'' for a smooth f, doubles with the step (a kink crossed
    between two steps breaks both, however the central differences happen to fall),
    each within SMOOTH_TOL of itself plus its noise."""
    c = s.central
    d1, d2 = c[:, 0] - c[:, 1], c[:, 1] - c[:, 2]
    ratio = np.abs(d2 - 4 * d1) <= SMOOTH_TOL * np.abs(4 * d1) + 8.0 * s.rounding
    gap = s.right - s.left
    noise = 12.0 * s.gap_rounding
    linear = (np.abs(gap[:, 1] - 2 * gap[:, 0]) <= SMOOTH_TOL * np.abs(2 * gap[:, 0]) + noise) & (
        np.abs(gap[:, 2] - 4 * gap[:, 0]) <= SMOOTH_TOL * np.abs(4 * gap[:, 0]) + noise
    )
    r, _ = _kink_signature(s)
    even = np.abs(r) <= R_NOISE * s.gap_rounding
    return ratio & linear & even


def _kink(
    right: np.ndarray, left: np.ndarray, steps: np.ndarray, rho: float, finite: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(proven, lo, hi): a kink at the element, and the bracket of its one-sided slopes
    extrapolated to s -> 0 (module docstring).

    right, left, steps: (n, m) one-sided slopes at the steps taken so far, smallest
    first. The kink is proven when, from the smallest step a gap stands out of its noise
    at, the gap stays within STEADY of itself and each slope within STEADY of the gap
    over a range of steps KINK_SPAN wide: a kink a little way off the element shows a
    steady gap only while the steps reach past it, a smooth f a gap growing with s."""
    n, m = right.shape
    proven = np.zeros(n, dtype=bool)
    lo, hi = np.full(n, np.nan), np.full(n, np.nan)
    gap = right - left
    noise = GAP_NOISE * 2 * rho / steps
    for start in range(0, m - 2, 3):  # from the smallest step of each scale
        g0, r0, l0 = gap[:, start], right[:, start], left[:, start]
        room = STEADY * np.abs(g0)[:, None] + noise[:, start:]
        ok = (
            (np.abs(gap[:, start:] - g0[:, None]) <= room)
            & (np.abs(right[:, start:] - r0[:, None]) <= room)
            & (np.abs(left[:, start:] - l0[:, None]) <= room)
        )
        held = np.cumprod(ok, axis=1).sum(axis=1)  # steps from ``start`` that hold
        span = steps[np.arange(n), start + np.maximum(held, 1) - 1] / steps[:, start]
        now = ~proven & finite & (np.abs(g0) > noise[:, start]) & (held >= 3) & (span >= KINK_SPAN)
        # one-sided slopes are first order in s: extrapolate the two smallest to s -> 0
        r_lim = 2 * r0 - right[:, start + 1]
        l_lim = 2 * l0 - left[:, start + 1]
        moved = np.maximum(np.abs(right[:, start + 1] - r0), np.abs(left[:, start + 1] - l0))
        slack = SAFETY * (moved + 2 * rho / steps[:, start])
        lo = np.where(now, np.minimum(r_lim, l_lim) - slack, lo)
        hi = np.where(now, np.maximum(r_lim, l_lim) + slack, hi)
        proven |= now
    return proven, lo, hi


def _richardson(s: _Scale) -> tuple[np.ndarray, np.ndarray]:
    """(N(h), its bound), each (K,): SAFETY times the estimated truncation and rounding,
    plus the most that one kink within 4h, unseen by ``_smooth``, can add."""
    rich = s.richardson
    truncation = np.abs(rich[:, 0] - rich[:, 1]) / 15
    r, q = _kink_signature(s)
    return rich[:, 0], SAFETY * (truncation + 1.5 * s.rounding) + (np.abs(r) + np.abs(q)) / 4


def _settles(a, value, bound, allow, objective, tensor: str, analytic_eps: float) -> np.ndarray:
    """(K,): the numeric values (K,) with their bounds (K,) resolve the elements of
    analytic values ``a`` (K,) and rounding allowances ``allow`` (K,): a value above its
    bound, or a bound below ``_zero_resolution`` with a within it and its allowance (a
    zero resolved as one)."""
    with np.errstate(invalid="ignore"):
        zero = bound <= _zero_resolution(objective, tensor, analytic_eps)
        zero &= np.abs(a) <= bound + allow
        return (np.abs(value) > bound) | zero


def _zero_resolution(objective, tensor: str, analytic_eps: float) -> float:
    """The widest bound at which an element whose analytic and numeric values are both
    within it counts as a resolved zero (``_settles``): ZERO_RESOLUTION of the tensor's
    gradient scale, and at most ZERO_OF_TENSOR of its largest analytic gradient when
    that is above the analytic side's rounding of the scale (a tensor of gradients of
    1e-6 beside deltas of 1 is not resolved by a bound of 1e-5: a dx computed without
    its transpose passed so); 0 for a tensor whose analytic gradient is 0 everywhere."""
    cache = getattr(objective, "_zero_resolutions", None)
    if cache is None:
        cache = objective._zero_resolutions = {}
    key = (tensor, analytic_eps)
    if key not in cache:
        scale = gradient_scale(objective, tensor)
        limit = ZERO_RESOLUTION * scale
        g = np.abs(np.asarray(objective.analytic[tensor], dtype=np.float64))
        top = float(g.max()) if g.size and np.all(np.isfinite(g)) else 0.0
        # a tensor whose gradients are all within the analytic side's rounding of its
        # scale (a bias before a batch norm) has no size of its own to resolve zeros by;
        # one whose gradients are all exactly 0 claims no size at all: its zeros are
        # grown as far as f stays smooth (a dWq of zeros passed beside a true 1.8e-18,
        # with projections of 1e-6 in an attention: found by a hunt)
        if top == 0.0:
            limit = 0.0
        elif top > ANALYTIC_ULPS * analytic_eps * scale:
            limit = min(limit, ZERO_OF_TENSOR * top)
        cache[key] = limit
    return cache[key]


def _grow(objective, tensor, index, h, rho, max_memory, a, allow, analytic_eps: float):
    """The growth stage (module docstring) for the elements ``index`` (K,) of first steps
    ``h`` (K,) and analytic values ``a`` (K,): (value, bound, settled), each (K,), the
    Richardson value and bound at the largest step that resolves each element
    (``_settles``), where f is finite and smooth at it and at every smaller step tried:
    the first step that resolves an element may leave a bound of half its value, in
    which a dW 1e-4 too large passes. An element whose f is not smooth at a step before
    one resolves it stays unsettled: a larger step would reach past what decides its
    slope."""
    k = len(index)
    value, bound = np.full(k, np.nan), np.full(k, np.inf)
    settled, going = np.zeros(k, dtype=bool), np.ones(k, dtype=bool)
    step = h.astype(np.float64)
    for _ in range(MAX_GROWS):
        step = step * GROW
        todo = np.flatnonzero(going)
        if not len(todo):
            break
        with np.errstate(all="ignore"):
            sub = _scale(objective, tensor, index[todo], step[todo], rho, max_memory, None)
            rich, b = _richardson(sub)
            smooth = _smooth(sub) & np.all(np.isfinite(sub.f), axis=1)
        done = smooth & _settles(a[todo], rich, b, allow[todo], objective, tensor, analytic_eps)
        value[todo[done]], bound[todo[done]] = rich[done], b[done]
        settled[todo[done]] = True
        going[todo[~smooth]] = False
    return value, bound, settled


def _precise(objective, tensor: str, settings: Tolerances) -> bool:
    """The precision stage applies: float64 analytic values (a float32 backward's own
    rounding is far above what it resolves), and no kink declared on the way from the
    tensor to the objective's value (``kink_free``; an objective that cannot tell is
    taken as smooth). Two kinks a little way apart, near ties of a max pool, make a
    narrow region whose slope differs from its surroundings; when its width times the
    slope's jump is below the rounding of f, no step can see it, and the steps that
    reach past it measure the surroundings' slope."""
    if settings.analytic_eps > numeric.EPS64:
        return False
    kink_free = getattr(objective, "kink_free", None)
    return kink_free is None or bool(kink_free(tensor))


def _refine(objective, tensor, index, big, rho, max_memory, screened, noise):
    """The precision stage (module docstring) for the elements ``index`` (K,) at steps
    ``big`` (K,): (N(H), its bound, usable), each (K,). Usable: finite, smooth at H,
    resolved (|N(H)| above its bound), and within the two estimates' errors of
    ``screened``, the value from the screening steps (noise: its rounding bound).

    Resolved, because f flat within its rounding at every step H, 2H, 4H passes the
    smoothness tests trivially and says only that the slope averaged over 8H is small:
    a batch norm of a feature constant over a batch of two (its scale sqrt(eps), 3e-3)
    moved by H = 15 saturates, and N(H) = 4e-30 with a bound of 5e-28 failed a right
    dx of 6e-27 (found by the slow property test)."""
    sub = _scale(objective, tensor, index, big, rho, max_memory, None)
    with np.errstate(all="ignore"):  # a large step may overflow: such copies are unusable
        value, bound = _richardson(sub)
        finite = np.all(np.isfinite(sub.f), axis=1)
        consistent = np.abs(value - screened) <= 1.5 * noise + bound
        resolved = np.abs(value) > bound
        return value, bound, _smooth(sub) & finite & consistent & resolved


#: The most an element's own evaluations may show as f0's rounding (``_own_noise``), in
#: float64 epsilons of |v df/dv|.
OWN_GRID_ULPS = 64.0

#: An element proven a kink is judged again at steps this many times smaller than its
#: first ones, in turn, while it stays a kink ...
KINK_RETRIES = (1e-3, 1e-6)
#: ... and that verdict stands only where its bound is this many times below the spread
#: of the estimates the first steps gave (for a kink, its jump).
RESOLVES = 4.0


def _off_the_kink(objective, tensor, index, a, settings, max_memory, state) -> None:
    """Elements proven kinks, judged again at far smaller steps (state: the verdict's
    kink, failed, evidence, numeric_value and bound arrays, updated in place, and the
    spread of each element's estimates at its first steps).

    A kink is proven when the one-sided slopes keep their gap over the steps taken; a
    kink a little way off the element, nearer than every step, shows the same. A value
    of 5e-9 among values of 0.3 steps by 3e-7 (its step floored at its tensor's scale),
    so a ReLU's kink at 0 is crossed although the function is smooth at the element (its
    slope 1 there); a max of two values 1e-8 apart steps by 5e-7 across the tie. An
    analytic value between the one-sided slopes passed as a kink where it was wrong at
    the element (found by hunts: a ReLU backward masking x <= 1e-6, a max routing its
    gradient to the smaller value). Each proven kink is judged again at KINK_RETRIES
    times its steps (no precision stage, whose step would cross it again): where that
    settles it, smooth or failed, its verdict stands; where it stays a kink after the
    last (a kink at the element), or rounding hides the slope there, the kink stays."""

    def retry(again: np.ndarray, factor) -> ElementVerdict:
        w = judge_elements(
            objective, tensor, index[again], a[again], settings, max_memory, step_factor=factor
        )
        # settled, and resolved: its bound well within the one-sided slopes' spread at
        # the first steps (at steps 1e-6 as small, rounding can make a ReLU at exactly 0
        # look smooth, its bound wider than the jump)
        settled = ~(w.kink | w.inconclusive) & (RESOLVES * w.bound < state["spread"][again])
        at = again[settled]
        state["kink"][at] = False
        state["failed"][at] = w.failed[settled]
        state["evidence"][at] = w.jump[settled]
        state["numeric_value"][at] = w.numeric[settled]
        state["bound"][at] = w.bound[settled]
        return w

    for factor in KINK_RETRIES:
        again = np.flatnonzero(state["kink"])
        if not len(again):
            return
        w = retry(again, factor)
        if not (w.kink & ~w.inconclusive).any():  # none still a kink: no smaller steps
            break
    # a kink its first steps place at a distance d from the element (a ReLU input of
    # -1e-11 stepped by 3e-7): steps of d / 8 stay short of it, where the fixed
    # retries either still cross it or are too small to resolve the slope
    distance = state["distance"]
    again = np.flatnonzero(state["kink"] & (distance > 0) & np.isfinite(distance))
    if len(again):
        retry(again, distance[again] / 8)


def _kink_distances(kink, right, left, steps, rho: float, usual: np.ndarray) -> np.ndarray:
    """``_kink_distance`` of the elements that are kinks (kink: (K,) bool), in units of
    their usual steps (K,), 0 elsewhere."""
    distance = np.zeros(len(kink))
    if kink.any():
        found = _kink_distance(right[kink], left[kink], steps[kink], rho)
        distance[kink] = found / usual[kink]
    return distance


def _kink_distance(
    right: np.ndarray, left: np.ndarray, steps: np.ndarray, rho: float
) -> np.ndarray:
    """How far from each element a kink its smallest steps crossed lies: (K,), 0 where
    none is resolved (a kink at the element, or no gap out of its noise).

    right, left, steps: (K, m) one-sided slopes and their steps, smallest first, NaN
    where not taken (``judge_elements``' history). One kink of jump J at distance d < s
    on one side gives a gap R(s) - L(s) = J (1 - d / s), so s gap(s) = J s - J d is
    linear in s: J from the two larger of the smallest three steps (s, 2s, 4s, both
    past d whenever d < 2s), then d = 2s - 2s gap(2s) / J. s gap(s) carries noise of
    about 2 rho, so J d must stand GAP_NOISE times above it."""
    k = len(right)
    taken = np.isfinite(steps)
    first = np.where(taken.any(axis=1), taken.argmax(axis=1), 0)
    rows = np.arange(k)
    distance = np.zeros(k)
    if steps.shape[1] < 3 or not k:
        return distance
    cols = np.minimum(first[:, None] + np.arange(3), steps.shape[1] - 1)
    s = steps[rows[:, None], cols]
    y = s * (right[rows[:, None], cols] - left[rows[:, None], cols])
    with np.errstate(all="ignore"):
        jump = (y[:, 2] - y[:, 1]) / (s[:, 2] - s[:, 1])
        jd = jump * s[:, 1] - y[:, 1]
        d = jd / jump
    ok = np.isfinite(d) & (np.abs(jd) > GAP_NOISE * 2 * rho) & (d > 0)
    distance[ok] = np.minimum(d[ok], s[ok, 1])
    return distance


def _kink_signature(s: _Scale) -> tuple[np.ndarray, np.ndarray]:
    """(r, q), each (K,): zero for a smooth f up to O(h^5) and O(h^4), and together at
    least 4 |N(h) - g| for one kink of any jump at any distance d < 4h.

    The even part G(t) = f(v + t) + f(v - t) - 2 f(v) of a smooth f holds only even
    powers of t, so with gap(t) = G(t) / t, r = gap(4h) - 10 gap(2h) + 16 gap(h) cancels
    its t^2 and t^4 terms; a kink adds J (t - d) to G for t > d, which no even power
    absorbs. q = (C(2h) - C(4h)) - 4 (C(h) - C(2h)) = 3 (N(2h) - N(h)) sees the kink
    in the central differences. |r| + |q| >= 4 |N(h) - g| was checked for every d in
    (0, 4h) (tests/test_verdict.py); the ratio tests of ``_smooth``, relative to the
    curvature, miss a kink whose jump is small beside t f'', which at a large step
    can still be far above the rounding.
    """
    gap = s.right - s.left
    r = gap[:, 2] - 10 * gap[:, 1] + 16 * gap[:, 0]
    c = s.central
    q = (c[:, 1] - c[:, 2]) - 4 * (c[:, 0] - c[:, 1])
    return r, q


def gradient_scale(objective, tensor: str) -> float:
    """The largest term the backward passes combined into ``tensor``'s gradient: its own
    analytic gradient, every delta on its way to the loss (a network's dE/d of each value
    downstream of it, a layer's upstream delta) and the loss's target. A backward's
    rounding scales with the terms it combines, even where its result cancels to far
    less: a softmax's dx is y (dy - y . dy), and a saturated cross-entropy's dE/dy = p - t
    is 1 - 1 + 1e-40.

    Only the terms on the tensor's own way count: a dense layer's dW = x^T dy of 1e-6
    (inputs of 1e-6) beside its dx = dy W^T of 2e6 (weights of 1e6) was allowed
    ANALYTIC_ULPS epsilons of 2e6, and a dW 1e-4 too large passed (found by a hunt);
    dx is never a term of dW."""
    cache = getattr(objective, "_gradient_scales", None)
    if cache is None:
        cache = objective._gradient_scales = {}
    if tensor not in cache:
        arrays = [objective.analytic[tensor], *_deltas(objective, tensor)]
        sizes = [np.abs(np.asarray(g, dtype=np.float64)) for g in arrays]
        cache[tensor] = max(
            (float(g.max()) for g in sizes if g.size and np.all(np.isfinite(g))), default=0.0
        )
    return cache[tensor]


def _noise(objective, tensor: str, h: np.ndarray, eps: float, max_memory: int) -> float:
    """The objective's noise when ``tensor`` moves (numeric.noise), measured once per
    tensor and step: it depends on the whole tensor, not on which of its elements are
    judged, so the blocks of one tensor (engine/elements.py) share it."""
    cache = getattr(objective, "_noise_cache", None)
    if cache is None:
        cache = objective._noise_cache = {}
    key = (tensor, eps)
    if key not in cache:
        cache[key] = numeric.noise(objective, tensor, h, max_memory)
    return cache[key]


def tensor_noise(objective, tensor: str, eps: float, max_memory: int) -> float:
    """The noise ``judge_elements`` uses for ``tensor`` (``_noise``, cached): measured here
    once, it can be handed to another process judging other elements of the tensor
    (``known``), so that every process judges with the same rho."""
    flat = objective.tensors()[tensor].reshape(-1).astype(np.float64)
    h_all = numeric.element_steps(flat, numeric.step_scale(flat), eps)
    with np.errstate(all="ignore"):
        return _noise(objective, tensor, h_all, eps, max_memory)


def known(objective, noises: dict[tuple[str, float], float], scales: dict[str, float]) -> None:
    """Give ``objective`` the noises (by (tensor, eps)) and the gradient scales (by
    tensor, ``gradient_scale``) another process measured on the same objective, instead
    of measuring them again."""
    cache = getattr(objective, "_noise_cache", None)
    if cache is None:
        cache = objective._noise_cache = {}
    cache.update(noises)
    scale_cache = getattr(objective, "_gradient_scales", None)
    if scale_cache is None:
        scale_cache = objective._gradient_scales = {}
    scale_cache.update(scales)


def _deltas(objective, tensor: str) -> list[np.ndarray]:
    """The deltas an objective knows of, ``deltas`` (a network's, by value: for
    ``tensor``, those of the values downstream of it) or ``delta`` (a layer's upstream
    gradient), and its loss's ``target`` (a float array, or for class indices the 1 of
    their one-hot rows)."""
    deltas = getattr(objective, "deltas", None)
    out = []
    if isinstance(deltas, dict):
        below = _downstream_values(objective, tensor)
        out = [d for value, d in deltas.items() if below is None or value in below]
    delta = getattr(objective, "delta", None)
    target = getattr(objective, "target", None)
    for extra in (delta, target):
        if isinstance(extra, np.ndarray) and np.issubdtype(extra.dtype, np.floating):
            out.append(extra)
    if isinstance(target, np.ndarray) and np.issubdtype(target.dtype, np.integer):
        out.append(np.ones(1))  # class indices: a one-hot target of 1s (p - y sums them)
    return out


def _downstream_values(objective, tensor: str) -> set[str] | None:
    """The values of a network objective that change when ``tensor`` moves (itself, for
    a network input, and every node's output downstream); None (every value) without a
    network or a tensor it knows."""
    network = getattr(getattr(objective, "problem", None), "network", None)
    if network is None:
        return None
    try:
        below = {node.name for node in network.downstream(tensor)}
    except KeyError:
        return None
    if network.is_input(tensor):
        below.add(tensor)
    return below


@functools.lru_cache(maxsize=8)
def smallest_subnormal(eps: float) -> float:
    """The absolute grid below the smallest normal number of the float type whose epsilon
    is ``eps`` (2^-149 for float32): a float32 backward of gradients of 4.6e-44 (a
    softmax saturated by 100) computes them in steps of 1.4e-45, 3% of themselves, which
    no allowance relative to |a| covers (found by the slow property test: a correct
    dense layer blamed). 0 for a type numpy does not know."""
    for kind in (np.float16, np.float32, np.float64):
        info = np.finfo(kind)
        if float(info.eps) == eps:
            return float(info.smallest_subnormal)
    return 0.0


def _require_steps(objective, tensor: str, index: np.ndarray, d: numeric.Differences, eps):
    """NumericalError (exit 3) when a step is lost to rounding or the first evaluations
    are not finite: no difference can be taken, which says nothing of the gradient."""
    stuck = (d.h_plus <= 0) | (d.h_minus <= 0) | ~np.isfinite(d.h_plus + d.h_minus)
    if np.any(stuck):
        i = int(index[np.argmax(stuck)])
        value = float(objective.tensors()[tensor].reshape(-1)[i])
        raise NumericalError(
            f"{tensor} has the value {value:g} at flat index {i}, where a step of eps={eps:g} "
            "times its magnitude is lost to rounding, so no finite difference can be taken"
        )
    lost = ~np.isfinite(d.f_plus) | ~np.isfinite(d.f_minus)
    if np.any(lost):
        i = int(index[np.argmax(lost)])
        value = float(objective.tensors()[tensor].reshape(-1)[i])
        raise NumericalError(
            f"a perturbed forward pass for {tensor} (flat index {i}, value {value:g}) gave "
            f"NaN or Inf, at steps {SHRINK**DOMAIN_SHRINKS:g} times smaller too; the check "
            "cannot be carried out (try a smaller eps)"
        )


def judge_elements(
    objective,
    tensor: str,
    index: np.ndarray,
    analytic: np.ndarray,
    settings: Tolerances,
    max_memory: int,
    progress=None,
    step_factor: float | np.ndarray = 1.0,
) -> ElementVerdict:
    """The verdict on the elements ``index`` (K,) of ``tensor``; analytic: their analytic
    values (K,). See the module docstring. ``step_factor`` (a number, or one per element,
    (K,)): first steps that many times the usual ones, and no precision stage
    (``_off_the_kink``'s retries)."""
    values = objective.tensors()[tensor]
    flat = values.reshape(-1).astype(np.float64)
    usual = numeric.element_steps(flat, numeric.step_scale(flat), settings.eps)
    retry = np.ndim(step_factor) > 0 or step_factor != 1.0
    a = np.asarray(analytic, dtype=np.float64).reshape(-1)
    k = len(index)
    allowance = ANALYTIC_ULPS * (
        settings.analytic_eps * (np.abs(a) + gradient_scale(objective, tensor))
        + smallest_subnormal(settings.analytic_eps)
    )

    def within(a: np.ndarray, n: np.ndarray, bound: np.ndarray, allow: np.ndarray):
        # a numeric value of inf (an overflowed step) times an rtol of 0 is NaN: never within
        with np.errstate(invalid="ignore", over="ignore"):
            widening = settings.atol + settings.rtol * np.maximum(np.abs(a), np.abs(n))
            return np.abs(a - n) <= bound + allow + widening

    h = usual[index] * step_factor
    with np.errstate(all="ignore"):
        rho = _noise(objective, tensor, usual, settings.eps, max_memory) if k else 0.0
        first = numeric.evaluate(
            objective,
            tensor,
            index,
            np.stack([h, -h], axis=1),
            max_memory,
            progress,
        )
        # a step past the edge of the forward's domain (a probability of 1.5e-7 moved by
        # 3e-7 into a log, its step floored at the tensor's scale): smaller steps there
        for _ in range(DOMAIN_SHRINKS):
            lost = np.flatnonzero(~np.all(np.isfinite(first.f), axis=1))
            if not len(lost):
                break
            h[lost] /= SHRINK
            again = numeric.evaluate(
                objective, tensor, index[lost], np.stack([h[lost], -h[lost]], axis=1), max_memory
            )
            first.f[lost], first.offsets[lost] = again.f, again.offsets
        d = numeric.Differences.of(first)
        central = d.central
    _require_steps(objective, tensor, index, d, settings.eps)
    rounding = _rounding(rho, first.f, h)

    numeric_value = central.copy()
    bound = SAFETY * rounding
    passed = within(a, central, bound, allowance)
    failed = np.zeros(k, dtype=bool)
    kink = np.zeros(k, dtype=bool)
    evidence = np.zeros(k, dtype=bool)
    open_ = ~passed
    # the hull of every numeric estimate taken, per element, for the final call
    lo_all, hi_all = central.copy(), central.copy()
    widest = bound.copy()

    step = h.copy()
    fresh: tuple[np.ndarray, np.ndarray] | None = (first.f, first.offsets)
    # every one-sided slope taken, per element, smallest steps first (filled per scale)
    width = 3 * (MAX_SHRINKS + 1)
    hist_r, hist_l = np.full((k, width), np.nan), np.full((k, width), np.nan)
    hist_s = np.full((k, width), np.nan)
    # smooth at the previous scale with a outside the bound there: its value and bound
    disagreed = np.zeros(k, dtype=bool)
    was_value, was_bound = np.zeros(k), np.zeros(k)
    # non-finite evaluations (a step into overflow) are masked out, not warned about
    with np.errstate(all="ignore"):
        for scale in range(MAX_SHRINKS + 1):
            going = open_.copy()
            if scale > SHRINK_TRIES:  # beyond the usual tries: only what a step still resolves
                going &= SAFETY * 1.5 * rho / step < np.abs(a)
            todo = np.flatnonzero(going)
            if not len(todo):
                break
            a_of = a[todo]
            sub = _scale(
                objective,
                tensor,
                index[todo],
                step[todo],
                rho,
                max_memory,
                None if fresh is None else (fresh[0][todo], fresh[1][todo]),
            )
            fresh = None
            finite = np.all(np.isfinite(sub.f), axis=1)
            rich, b = _richardson(sub)
            allow = allowance[todo]
            smooth = _smooth(sub) & finite
            agrees = within(a_of, rich, b, allow)
            # this scale's steps go before the larger ones (columns from the end)
            col = width - 3 * (scale + 1)
            hist_r[todo, col : col + 3] = sub.right
            hist_l[todo, col : col + 3] = sub.left
            hist_s[todo, col : col + 3] = step[todo, None] * np.array([1.0, 2.0, 4.0])
            proven, lo, hi = _kink(
                hist_r[todo, col:], hist_l[todo, col:], hist_s[todo, col:], rho, finite
            )
            bracketed = (a_of >= lo - allow) & (a_of <= hi + allow)
            estimates = np.concatenate([sub.central, sub.right, sub.left], axis=1)
            lo_all[todo] = np.fmin(lo_all[todo], np.nanmin(estimates, axis=1))
            hi_all[todo] = np.fmax(hi_all[todo], np.nanmax(estimates, axis=1))
            widest[todo] = np.maximum(widest[todo], SAFETY * sub.rounding)

            # smooth at this scale: a pass, or a failure once a smaller scale confirms it
            # (a few kinks crossed at h, 2h, 4h may fall on the ratios by chance; not at
            # two scales ten times apart)
            wrong = smooth & ~agrees & ~proven
            # the smaller scale agrees with the larger one's value: the failure judged
            # there, at its (tighter) bound, is confirmed
            old_value, old_bound = was_value[todo], was_bound[todo]
            same = np.abs(rich - old_value) <= b + old_bound
            confirmed = disagreed[todo] & smooth & same
            settle_smooth = (smooth & agrees & ~confirmed) | confirmed
            disagreed[todo] = wrong & ~confirmed
            was_value[todo], was_bound[todo] = rich, b
            rich = np.where(confirmed, old_value, rich)
            b = np.where(confirmed, old_bound, b)
            agrees = agrees & ~confirmed
            # a kink at the element, proven over the steps so far: a between the one-sided
            # slopes, or a failure with evidence
            settle_kink = proven & ~(smooth & agrees)
            for mask in (settle_smooth, settle_kink):
                ix = todo[mask]
                if not len(ix):
                    continue
                numeric_value[ix] = np.where(np.isfinite(rich[mask]), rich[mask], numeric_value[ix])
                bound[ix] = b[mask]
            passed[todo[settle_smooth & agrees]] = True
            failed[todo[settle_smooth & ~agrees]] = True
            kink[todo[settle_kink & bracketed]] = True
            failed[todo[settle_kink & ~bracketed]] = True
            evidence[todo[settle_kink]] = True
            open_[todo[settle_smooth | settle_kink]] = False
            step[todo] = step[todo] / SHRINK

    # the precision stage: what passed at the screening steps, again at H
    big = numeric.element_steps(flat[index], numeric.step_scale(flat), PRECISION_EPS)
    refine = np.flatnonzero(passed & (big > 4 * h))
    if len(refine) and not retry and _precise(objective, tensor, settings):
        value, b, usable = _refine(
            objective,
            tensor,
            index[refine],
            big[refine],
            rho,
            max_memory,
            numeric_value[refine],
            widest[refine],
        )
        wrong = usable & ~within(a[refine], value, b, allowance[refine])
        tighter = usable & (wrong | (b < bound[refine]))
        numeric_value[refine[tighter]] = value[tighter]
        bound[refine[tighter]] = b[tighter]
        passed[refine[wrong]] = False
        failed[refine[wrong]] = True
    # the growth stage: what passed without being resolved, again at larger steps
    eps_a = settings.analytic_eps
    resolved = _settles(a, numeric_value, bound, allowance, objective, tensor, eps_a)
    vague = np.flatnonzero(passed & ~resolved)
    if len(vague) and not retry:
        at = index[vague]
        value, b, settled = _grow(
            objective, tensor, at, h[vague], rho, max_memory, a[vague], allowance[vague], eps_a
        )
        judged = vague[settled]
        numeric_value[judged], bound[judged] = value[settled], b[settled]
        wrong = ~within(a[judged], value[settled], b[settled], allowance[judged])
        passed[judged[wrong]] = False
        failed[judged[wrong]] = True
    # what no step resolved: a failure when a lies outside every numeric estimate taken
    # (widened by the largest rounding met), otherwise inconclusive
    rest = np.flatnonzero(open_)
    outside = (a[rest] < lo_all[rest] - widest[rest] - allowance[rest]) | (
        a[rest] > hi_all[rest] + widest[rest] + allowance[rest]
    )
    failed[rest[outside]] = True
    inconclusive = np.zeros(k, dtype=bool)
    inconclusive[rest[~outside]] = True
    # not smooth at any scale: a non-differentiable point within the step, in evidence for
    # compound kinks (engine/kinks.py) though not proven at the element
    evidence[rest] = True
    bound[rest] = np.maximum(bound[rest], (hi_all[rest] - lo_all[rest]) / 2)
    if not retry:
        state = {
            "kink": kink,
            "failed": failed,
            "evidence": evidence,
            "numeric_value": numeric_value,
            "bound": bound,
            "spread": hi_all - lo_all,
            # in units of each element's usual step, as ``step_factor`` is; read only at
            # kinks, so worked out only there (this runs on every chunk)
            "distance": _kink_distances(kink, hist_r, hist_l, hist_s, rho, usual[index]),
        }
        _off_the_kink(objective, tensor, index, a, settings, max_memory, state)
    if settings.strict_kinks:
        failed |= kink
    return ElementVerdict(
        numeric=numeric_value,
        abs_error=np.abs(a - numeric_value),
        rel_error=rel_error(a, numeric_value),
        failed=failed,
        kink=kink,
        jump=evidence,
        inconclusive=inconclusive,
        bound=bound,
    )
