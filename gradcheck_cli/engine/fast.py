"""``--fast``: random-direction checks, then element-wise checks of what disagrees.

A direction u (a random unit vector over several tensors at once) turns all their
gradients into one number: the slope of t -> f(v + t u) at t = 0 is g.u. Comparing it
with a finite-difference slope costs a handful of forward passes, whatever the size of
the network.

Tolerance. Scaling it with the direction's sums (atol + rtol * sum|g_i u_i|) lets a
wrong element through whenever its share of the sum is small, as it is in any large
tensor. Here the tolerance is the finite-difference noise measured along the direction,
which does not grow with the number of elements:

- slope error at step t, with s(t) = fl(v + t u) - v the displacement the forward
  really saw: err(t) = [f(v + s(t)) - f(v + s(-t)) - g.(s(t) - s(-t))] / 2t;
- truncation: err(L) - err(2L) cancels a wrong gradient's constant e.u exactly and
  leaves the curvature terms; the error compared is Richardson's
  err(L) + (err(L) - err(2L)) / 3;
- rounding: at tiny steps +-tau every real term of f(v + s(tau)) - f(v) - g.s(tau) is
  negligible and what is left is the forward's own rounding noise rho (larger than
  eps * |f| when the loss sums terms that cancel); the slope's rounding error is about
  2 rho / L, never taken below FLOOR_ULPS float64 epsilons of |f| / L (of the terms f
  sums, its ``magnitude``, for one layer alone) (nor below
  float64's subnormal grid, numeric.SUBNORMAL_FLOOR);
- tolerance = SAFETY * (|err(L) - err(2L)| + rounding), plus the analytic side's own
  rounding: ANALYTIC_ULPS units in the last place of the problem's dtype on
  sum|g_i u_i| (negligible in float64; it is what float32 gradients can resolve).

A wrong element i moves g.u by e_i u_i with |u_i| about 1/sqrt(n). On LeNet-5 (45,210
elements, loss about 2.2) the measured noise is about 1e-12, so a single element wrong
by 1e-7 is seen, while a sum-scaled tolerance of rtol = 1e-5 would pass an element
wrong by about 2e-2.

Steps: L = STEP_FACTOR * eps * ||v||, ||v|| the norm of the values moved (a tensor of
zeros: sqrt(n)), so that eps is relative to the values' magnitude as it is element-wise.
When err(L) - err(2L) stands more than SMOOTH_RATIO times above the rounding noise (a
kink crossed between the steps, or strong curvature), L is divided by 10, at most
STEP_TRIES times; a direction never smooth says nothing and is replaced by a fresh
random one, at most DRAWS times; one still never smooth is inconclusive and counts as
failed: it is localised, never trusted.

Localisation: when one of the DIRECTIONS whole-problem directions fails, each tensor gets
a direction of its own, and the tensors whose direction fails are checked element by
element (every element, by the element rule of engine/verdict.py). A tensor that passed
its directional test has no element checked (numeric NaN, checked_mask False); its
``extra["directional"]`` says how it was checked. If no tensor's own direction fails
although a whole-problem direction did, every tensor is checked element-wise.

Layers in isolation (``isolation.directional_verdict``): the same test on each layer's own
objective, sum(delta * layer(x)), over its input and parameters; element-wise only for
the tensors whose own direction fails. A max-pool fed by a ReLU has exact ties (windows
of zeros) at the point itself, where no direction is smooth, so its input is always
checked element-wise. check.isolation_mode decides when this runs instead of the
element-wise isolation, and when --fast skips the isolation altogether.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..how_checked import HowChecked
from ..problem import Problem
from . import domain, numeric
from .elements import check_tensor, unchecked
from .numeric import EPS64
from .objective import LayerObjective, LossObjective
from .verdict import smallest_subnormal

#: Random directions over all checked tensors together (the network, and each layer).
DIRECTIONS = 3
#: The first step along a unit direction, in units of the problem's eps.
STEP_FACTOR = 100.0
#: Steps tried (L, L/10, L/100) before a direction is called inconclusive.
STEP_TRIES = 3
#: Random directions drawn, one after another, while each crosses a kink at every step:
#: a direction with no smooth step says nothing about the gradient (it neither agrees
#: nor disagrees), so a fresh one takes its place; only when all of them cross a kink
#: does the direction count as failed. A kink at the point itself (a ReLU input at
#: exactly 0) makes every direction unsmooth, and is still localised.
DRAWS = 3
#: The rounding probe's step, relative to L.
PROBE_FACTOR = 1e-6
#: Tolerance = SAFETY x the measured noise (+ the analytic floor).
SAFETY = 10.0
#: A step is smooth when the truncation estimate is at most this many times the rounding.
SMOOTH_RATIO = 100.0
#: Least rounding assumed for f, in float64 epsilons of |f|.
FLOOR_ULPS = 4.0
#: Rounding allowed to each analytic element, in epsilons of the problem's dtype.
ANALYTIC_ULPS = 16.0


ISOLATION_SKIPPED = (
    "fast: every gradient agreed, so no layer's own backward was checked in isolation "
    "(a full check gives per-layer verdicts)"
)


@dataclass
class Direction:
    """One random-direction test, in slope units (df/dt along a unit direction).

    analytic: g.u; error: numeric slope minus g.u (Richardson-extrapolated); tolerance:
    from the noise measured along the direction; step: the L used; smooth: False when
    no step gave a trustworthy slope (the direction then counts as failed).
    """

    tensors: tuple[str, ...]
    analytic: float
    error: float
    tolerance: float
    step: float
    smooth: bool
    #: directions drawn before this one and dropped, each with no smooth step
    replaced: int = 0
    #: each tensor's part of ``analytic``, g_t . u_t, by name
    shares: dict[str, float] | None = None

    def covers(self, tensor: str) -> bool:
        """It passed, and it would have seen ``tensor``'s whole gradient wrong: the
        tensor's part of g.u stands above the tolerance (a tensor whose part is within
        the noise, a zero or a tensor of 1e-6 beside others of 1, is not checked by it)."""
        share = (self.shares or {}).get(tensor, 0.0)
        return self.passed and abs(share) > self.tolerance

    @property
    def resolved(self) -> bool:
        """It passed above its own noise: |g.u| beyond the tolerance."""
        return self.passed and abs(self.analytic) > self.tolerance

    @property
    def passed(self) -> bool:
        return self.smooth and abs(self.error) <= self.tolerance

    def as_dict(self) -> dict:
        return {
            "analytic": self.analytic,
            "error": self.error,
            "tolerance": self.tolerance,
            "step": self.step,
            "smooth": self.smooth,
            "passed": self.passed,
            "replaced": self.replaced,
        }


def analytic_eps(problem: Problem) -> float:
    """Machine epsilon of the dtype the analytic gradients were computed in."""
    return float(np.finfo(np.dtype(problem.dtype)).eps)


def random_direction(values: dict[str, np.ndarray], rng: np.random.Generator):
    """A Gaussian direction of unit norm over all the given tensors together."""
    u = {t: rng.standard_normal(v.shape) for t, v in values.items()}
    norm = math.sqrt(sum(_dot(a, a) for a in u.values()))
    return {t: a / norm for t, a in u.items()}


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # np.dot on flat views: np.vdot on n-d arrays is 100x slower here (OpenBLAS 0.3.31)
    return float(np.dot(a.reshape(-1), b.reshape(-1)))


class _Line:
    """The objective along v + t u, for one direction u over some of its tensors."""

    def __init__(self, objective, u: dict[str, np.ndarray]):
        self.objective, self.names = objective, list(u)
        values = objective.tensors()
        self.shapes = [values[t].shape for t in self.names]
        self.base = np.concatenate([values[t].reshape(-1) for t in self.names]).astype(np.float64)
        self.g = np.concatenate(
            [np.asarray(objective.analytic[t], dtype=np.float64).reshape(-1) for t in self.names]
        )
        self.u = np.concatenate([u[t].reshape(-1) for t in self.names])
        self.bounds = np.cumsum([0] + [int(np.prod(s)) for s in self.shapes])
        self.f0 = float(objective.f0)
        #: what an evaluation rounds: for one layer (or the loss) alone, the terms its
        #: energy sums, however much they cancel in f0 (engine/numeric.py); for the
        #: network, |f0| (its magnitude also counts every node's |dE/dv * v|, a floor
        #: that hid a wrong tanh from --fast)
        self.magnitude = abs(self.f0)
        if isinstance(objective, (LayerObjective, LossObjective)):
            self.magnitude = max(self.magnitude, numeric.magnitude(objective))
        self.analytic = _dot(self.g, self.u)
        #: each tensor's part of g.u
        self.shares = {}
        for i, t in enumerate(self.names):
            part = slice(self.bounds[i], self.bounds[i + 1])
            self.shares[t] = _dot(self.g[part], self.u[part])
        norm = math.sqrt(_dot(self.base, self.base))
        #: the step's unit: the values' norm (a tensor of zeros: one per element)
        self.scale = norm if norm > 0 and math.isfinite(norm) else math.sqrt(len(self.base))
        self.analytic_spread = float(np.abs(self.g * self.u).sum())
        self.reach = float(np.abs(self.u).sum())  # sum |u|: one subnormal step per element
        self.taken: np.ndarray | None = None  # residual's buffer for s

    def residual(self, step: float) -> float:
        """f(v + s) - f(v) - g.s, with s = fl(v + step u) - v the displacement really taken.
        (The step and the displacement are computed in a buffer kept across calls: on
        the 267,394 values of the MLP 784-300-100-10 new arrays cost more than its
        forward.)"""
        if self.taken is None:
            self.taken = np.empty_like(self.base)
        np.multiply(self.u, step, out=self.taken)
        moved = self.base + self.taken  # a new array: a layer may keep what it was given
        tensors = {
            t: moved[self.bounds[i] : self.bounds[i + 1]].reshape(self.shapes[i])
            for i, t in enumerate(self.names)
        }
        f = domain.loss_at(self.objective, tensors)  # NaN past the forward's domain
        np.subtract(moved, self.base, out=self.taken)
        return f - self.f0 - _dot(self.g, self.taken)

    def rounding(self, step: float, probe_steps: tuple[float, ...]) -> float:
        """The forward's rounding noise, measured at tiny steps, in slope units at ``step``;
        at least FLOOR_ULPS epsilons of the terms the objective sums (``magnitude``), as
        the element-wise noise is (engine/numeric.py): a step that moves no value enough
        to change a rounding shows no noise at its probes, and at a step of 2e-17 along
        ReLU inputs of 1e-13 an isolated layer measured a slope of 0, its rounding, where
        the analytic one was 1.5, and failed a right backward (found by a property test)."""
        rho = max(abs(self.residual(tau)) for tau in probe_steps)
        return max(rho, FLOOR_ULPS * EPS64 * self.magnitude, numeric.SUBNORMAL_FLOOR) / step


def directional_test(
    objective, u: dict[str, np.ndarray], eps: float, a_eps: float, start: float | None = None
) -> Direction:
    """Compare g.u with the central finite-difference slope along u (module docstring).

    objective: anything with ``tensors()``, ``analytic``, ``f0`` and ``loss_at``.
    The slope error at step t is (r(t) - r(-t)) / 2t with r the residual of ``_Line``.
    start: the first step, when below L (``run_directions``).
    """
    line = _Line(objective, u)
    analytic_floor = ANALYTIC_ULPS * (
        a_eps * line.analytic_spread + smallest_subnormal(a_eps) * line.reach
    )

    def slope_error(step: float) -> float:
        return (line.residual(step) - line.residual(-step)) / (2 * step)

    step = STEP_FACTOR * eps * line.scale
    if start is not None:
        step = min(step, start)
    for _ in range(STEP_TRIES):
        tau = PROBE_FACTOR * step
        rounding = 2 * line.rounding(step, (tau, -tau))
        e1, e2 = slope_error(step), slope_error(2 * step)
        truncation = abs(e1 - e2)
        if truncation <= SMOOTH_RATIO * rounding:
            tolerance = SAFETY * (truncation + rounding) + analytic_floor
            return Direction(
                tuple(u),
                line.analytic,
                e1 + (e1 - e2) / 3,
                tolerance,
                step,
                True,
                shares=line.shares,
            )
        step /= 10
    return Direction(
        tuple(u), line.analytic, e1 + (e1 - e2) / 3, math.inf, step * 10, False, shares=line.shares
    )


def support_direction(g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A unit direction that moves every element with a nonzero analytic gradient up and
    every other element down (random magnitudes). g: one tensor's analytic gradient."""
    u = (0.5 + np.abs(rng.standard_normal(g.shape))) * np.where(g != 0, 1.0, -1.0)
    return u / math.sqrt(_dot(u, u))


def one_sided_test(objective, u: dict[str, np.ndarray], eps: float, a_eps: float) -> Direction:
    """Compare g.u with the one-sided slope along +u, for a point that sits on ties.

    At a tie (a max-pool window of equal values, a ReLU input at exactly 0) no direction
    is smooth in both senses, but along a ``support_direction`` the element the
    analytic gradient picked rises and its tied rivals fall, so f is smooth for t > 0
    whenever the analytic gradient is a valid (one-sided) choice. e(t) = r(t) / t;
    E(t) = 2 e(t) - e(2t) removes the first-order truncation, and E(L) - E(2L) cancels a
    wrong gradient's e.u exactly, leaving the truncation estimate; tolerance as for the
    central test.
    """
    line = _Line(objective, u)
    analytic_floor = ANALYTIC_ULPS * (
        a_eps * line.analytic_spread + smallest_subnormal(a_eps) * line.reach
    )

    def extrapolated(step: float) -> float:
        return 2 * line.residual(step) / step - line.residual(2 * step) / (2 * step)

    step = STEP_FACTOR * eps * line.scale
    for _ in range(STEP_TRIES):
        tau = PROBE_FACTOR * step
        rounding = 3 * line.rounding(step, (tau, 2 * tau))
        e1, e2 = extrapolated(step), extrapolated(2 * step)
        truncation = abs(e1 - e2)
        if truncation <= SMOOTH_RATIO * rounding:
            tolerance = SAFETY * (truncation + rounding) + analytic_floor
            return Direction(tuple(u), line.analytic, e1, tolerance, step, True, shares=line.shares)
        step /= 10
    return Direction(tuple(u), line.analytic, e1, math.inf, step * 10, False, shares=line.shares)


def run_directions(
    objective, names: list[str], count: int, rng: np.random.Generator, eps: float, a_eps: float
) -> list[Direction]:
    """``count`` independent directions over the tensors ``names`` together, each drawn
    up to DRAWS times while it has no smooth step.

    Every direction after the first begins its steps ten-fold above the step the one
    before ended at (never above L): where kinks made the first direction go down to
    L/100, the next ones skip L, which crosses them as surely (the batch-8 CNN of
    benchmarks/sweep.py: 72 forward passes -> 54 under --fast). A smooth objective ends
    its first direction at L, and every direction begins there, as before."""
    values = {t: objective.tensors()[t] for t in names}
    found: list[Direction] = []
    start: float | None = None
    for _ in range(count):
        d = directional_test(objective, random_direction(values, rng), eps, a_eps, start)
        start = 10 * d.step
        while not d.smooth and d.replaced < DRAWS - 1:
            replaced = d.replaced + 1
            d = directional_test(objective, random_direction(values, rng), eps, a_eps, start)
            d.replaced = replaced
            start = 10 * d.step
        found.append(d)
    return found


def suspects(
    objective, names: list[str], rng: np.random.Generator, eps: float, a_eps: float
) -> tuple[list[str], dict[str, Direction]]:
    """After a failed whole-problem direction: one direction per tensor.

    Returns the tensors to check element-wise (those whose own direction failed, or all
    of them when none did) and each tensor's direction.
    """
    own = {t: run_directions(objective, [t], 1, rng, eps, a_eps)[0] for t in names}
    failing = [t for t in names if not own[t].passed]
    return (failing or list(names)), own


def hidden(
    objective,
    names: list[str],
    whole: list[Direction],
    rng: np.random.Generator,
    eps: float,
    a_eps: float,
) -> tuple[list[str], dict[str, Direction]]:
    """After passing whole-problem directions: the tensors none of them covers (``covers``)
    each get a direction of their own, and those whose own direction does not pass
    above its noise (``resolved``) are to be checked element-wise. Returns them and the
    own directions. With inputs of 1e6 and weights of 1e-6, a step sized for the inputs
    moved the weights by 8, through a saturated tanh whose curvature gave a tolerance of
    11 against a g.u of 1.2, and a dW of zeros passed (found by a hunt): no tensor's part
    stood above that tolerance, and each one's own direction failed the dW.
    (Scaling each tensor's part of the directions by its size instead lost 1e-4 bugs on
    tensors of 1e-6 that these directions catch: a second hunt.)"""
    unseen = [t for t in names if not any(d.covers(t) for d in whole)]
    own = {t: run_directions(objective, [t], 1, rng, eps, a_eps)[0] for t in unseen}
    return [t for t in unseen if not own[t].resolved], own


def fast_checks(problem: Problem, objective, names: list[str], tol, rng, tracker):
    """The network's tensors under ``--fast``: (TensorChecks in ``names`` order, notes).
    ``tracker`` (engine/progress.py) is told of each tensor as it is judged."""
    if not names:
        return [], []
    a_eps = analytic_eps(problem)
    whole = run_directions(objective, names, DIRECTIONS, rng, tol.eps, a_eps)
    own: dict[str, Direction] = {}
    localise: list[str] = []
    if not all(d.passed for d in whole):
        localise, own = suspects(objective, names, rng, tol.eps, a_eps)
    else:
        localise, own = hidden(objective, names, whole, rng, tol.eps, a_eps)
    checks = []
    for t in names:
        size = objective.tensors()[t].size
        tracker.begin(t)
        if t in localise:
            c = check_tensor(problem, objective, t, np.arange(size), tol, tracker.tick)
            c.mode, c.localised = HowChecked.FAST, True
        else:
            c = unchecked(problem, objective, t, HowChecked.FAST)
            tracker.tick(size)
        c.extra["directional"] = {
            "whole": [d.as_dict() for d in whole],
            **({"own": own[t].as_dict()} if t in own else {}),
        }
        checks.append(c)
    return checks, [fast_note(whole, localise, objective)]


def fast_note(whole: list[Direction], localised: list[str], objective) -> str:
    n = len(whole)
    if not localised:
        return (
            f"fast: {n} random directions over all checked tensors agreed with the analytic "
            "gradient; no element was checked one by one"
        )
    elements = sum(objective.tensors()[t].size for t in localised)
    failed = sum(not d.passed for d in whole)
    if not failed:
        return (
            f"fast: {n} random directions over all checked tensors agreed with the analytic "
            f"gradient, but {', '.join(localised)} stood within their noise there and along "
            f"a direction of its own ({elements:,} elements checked one by one)"
        )
    return (
        f"fast: {failed} of {n} random directions disagreed; localised to "
        f"{', '.join(localised)} ({elements:,} elements checked one by one)"
    )
