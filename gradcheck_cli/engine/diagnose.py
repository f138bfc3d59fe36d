"""Diagnosis: name the likely bug behind a failing tensor, in plain words.

``diagnose`` looks only at what the check already holds, the analytic gradient ``a`` and
the numeric one ``n`` on the checked elements, and tries these patterns in order:

1. every failure is a kink (only with ``--strict-kinks``);
2. ``a`` is 0 everywhere while ``n`` is not: the gradient is never propagated;
3. ``n`` is 0 everywhere while ``a`` is not: the loss does not depend on the tensor;
4. ``a = k * n`` for one constant k (least squares, then every element within 0.1 %):
   k = -1 a flipped sign, k = 2 a missing 1/2, k = 0.5 a factor 2 too few, k = N or 1/N
   (N the batch size) mean vs sum over the batch;
4b. small errors, fitted on the error ``e = a - n`` itself (the fits of 4 cannot tell 1 +
   1e-5 from 1): ``e = (k - 1) n`` (off by a factor k, "1.00001 (0.001%)"), or ``e = c``
   on every element (a small constant added), each within a tenth of the error plus
   twice the numeric value's error bound;
5. ``a`` equals ``n`` reversed along the last two axes (a kernel flip: convolution vs
   cross-correlation), reversed along one of them, or transposed (square last two axes);
6. ``a`` equals ``n`` shifted by one or two positions along the last two axes (an
   off-by-one window or padding offset);
7. where the failures are: only where the tensor's values are negative (or positive),
   only at its largest magnitudes where the numeric gradient is nearly 0 (saturated
   units), when the values are given (a blamed layer's dx: its input); only on the border
   of the last two axes (padding), or only in some slices along axis 0 or 1 (channels,
   examples); and what they are: a constant factor on the failing elements, zeros where
   the numeric gradient is not (never propagated), or gradient on elements that do not
   affect the loss (wrong routing).

A pattern is named only when every checked element fits it: errors that merely lean one
way are not called a pattern.

Kink elements are left out of every fit: their numeric value is the mean of two one-sided
slopes, which no pattern has to match. Nothing recognised gives None.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..report import TensorCheck

#: Two values "match" when |x - y| <= MATCH_RTOL * max(|x|, |y|) + MATCH_ATOL * scale,
#: scale being the largest gradient magnitude in the tensor. Loose enough for the
#: numeric side's truncation and rounding (and float32 analytic values), tight enough
#: that a factor, flip or shift that merely resembles the numeric gradient is not named.
MATCH_RTOL = 1e-3
MATCH_ATOL = 1e-6
#: Largest shift, in positions along each of the last two axes, that is tried.
MAX_SHIFT = 2
#: Widest border band (rows/columns from each edge) that "padding" may name.
MAX_BORDER = 2
#: A discrepancy is small when every |a - n| is below this fraction of the largest |n|:
#: then its shape is fitted on the error a - n itself.
SMALL = 1e-2
#: A fit on the error holds when each element's residual is within this fraction of its
#: error (plus twice the numeric value's bound).
FIT = 0.1
#: Failures this few are named element by element.
MAX_LISTED = 3
#: A one-number fit of the errors (a factor, a constant) needs this many elements whose
#: error stands out of the numeric noise.
MIN_FIT = 3
#: "Saturated": the failing elements' numeric gradient is at most this fraction of the
#: largest numeric gradient among the right ones.
SATURATED = 0.05
#: Where the failures are (a sign, the largest magnitudes) is named only when a random
#: choice of that many failing elements would fall there with at most this probability.
CHANCE = 0.05


def diagnose(
    check: TensorCheck, *, batch_size: int, values: np.ndarray | None = None
) -> str | None:
    """The likely bug behind a failing tensor, or None (passing, or no pattern found).

    check: a TensorCheck whose arrays have the tensor's (user) shape; batch_size: the
    number of examples N, to recognise mean-vs-sum factors; values: the tensor's own
    values in the same shape, when known (for a layer's dx, its input x), to tell errors
    only where the input is negative or saturated.
    """
    if check.passed or check.checked == 0:
        return None
    a = np.asarray(check.analytic, dtype=np.float64)
    n = np.asarray(check.numeric, dtype=np.float64)
    checked = np.asarray(check.checked_mask, dtype=bool)
    failed = np.asarray(check.failed_mask, dtype=bool) & checked
    kink = np.asarray(check.kink_mask, dtype=bool) & checked
    if failed.any() and not (failed & ~kink).any():
        return (
            f"every failing element ({int(failed.sum())}) sits at a non-differentiable point "
            "(kink) where the analytic value is a valid subgradient; "
            "strict kinks (strict_kinks) count these as failures"
        )
    use = checked & ~kink
    if not use.any():
        return None
    scale = float(max(np.max(np.abs(a[use])), np.max(np.abs(n[use]))))
    if scale == 0.0:
        return None
    tiny = MATCH_ATOL * scale
    bound = np.nan_to_num(np.asarray(check.error_bound, dtype=np.float64), nan=0.0)
    if values is not None:
        values = np.asarray(values, dtype=np.float64).reshape(a.shape)
    if _is_small(a[use] - n[use], n[use]):
        # a flip, shift or factor 2 is never this small, and the fits of a against n
        # cannot tell 1 + 1e-5 from 1: only fits of the error itself, or where it is
        return (
            _small(a[use], n[use], bound[use], batch_size)
            or _localised(check, a, n, use, failed & ~kink, tiny, bound, values)
            or _small_summary(a[failed], n[failed])
        )
    return (
        _whole_tensor(a[use], n[use], tiny, batch_size)
        or _rearranged(a, n, use, scale)
        or _localised(check, a, n, use, failed & ~kink, tiny, bound, values)
    )


# --- small errors, fitted on a - n ----------------------------------------------------------


def _small(a: np.ndarray, n: np.ndarray, bound: np.ndarray, batch_size: int) -> str | None:
    """A factor near 1 or a constant added, on every element (errors small beside n)."""
    e = a - n
    k = small_factor(e, n, bound)
    if k is not None:
        return describe_factor(k, batch_size)
    c = small_offset(e, bound)
    if c is not None:
        return (
            f"a small constant added: analytic = numeric {'+' if c > 0 else '-'} "
            f"{abs(c):.2g} on every element (an epsilon in the wrong place?)"
        )
    return None


def _small_summary(a: np.ndarray, n: np.ndarray) -> str | None:
    """What can be said of small errors that fit no pattern: their size."""
    scale = np.maximum(np.abs(a), np.abs(n))
    rel = np.abs(a - n)[scale > 0] / scale[scale > 0]
    if not rel.size:
        return None
    return (
        f"small errors, up to {rel.max():.2g} relative, on {int(a.size)} element(s); "
        "no single factor or added constant fits them"
    )


def _is_small(e: np.ndarray, n: np.ndarray) -> bool:
    top = float(np.max(np.abs(n))) if n.size else 0.0
    return top > 0 and bool(np.all(np.abs(e) <= SMALL * top)) and bool(np.any(e != 0))


def small_factor(e: np.ndarray, n: np.ndarray, bound: np.ndarray) -> float | None:
    """k with a - n = (k - 1) n on every element (e = a - n), or None; a fit of e, so a
    factor of 1 + 1e-5 is told from 1."""
    nn = float(np.dot(n, n))
    if nn == 0.0:
        return None
    m = float(np.dot(e, n) / nn)
    if m == 0.0 or not _fits(e, m * n, bound):
        return None
    return 1.0 + m


def small_offset(e: np.ndarray, bound: np.ndarray) -> float | None:
    """c with a - n = c on every element, or None."""
    c = float(np.median(e)) if e.size else 0.0
    if c == 0.0 or not _fits(e, np.full_like(e, c), bound):
        return None
    return c


def _fits(e: np.ndarray, model: np.ndarray, bound: np.ndarray) -> bool:
    """Each error matches the model within FIT of itself plus twice its bound, on at
    least MIN_FIT elements where the error stands out of twice the bound (with fewer, a
    one-number model fits by chance)."""
    residual = np.abs(e - model)
    ok = residual <= FIT * np.maximum(np.abs(e), np.abs(model)) + 2 * bound
    return bool(np.all(ok) and np.sum(np.abs(e) > 2 * bound) >= MIN_FIT)


# --- whole-tensor patterns -------------------------------------------------------------


def _whole_tensor(a: np.ndarray, n: np.ndarray, tiny: float, batch_size: int) -> str | None:
    """Patterns over every usable element (1-D arrays a, n)."""
    if np.all(np.abs(a) <= tiny):
        return (
            "the analytic gradient is 0 everywhere while the numeric one is not: "
            "the gradient is never propagated to this tensor"
        )
    if np.all(np.abs(n) <= tiny):
        return (
            "the numeric gradient is 0 everywhere (the loss does not depend on this tensor "
            "here) but the analytic one is not: gradient sent where none should go"
        )
    k = scale_factor(a, n, tiny)
    if k is not None:
        return describe_factor(k, batch_size)
    return None


def scale_factor(a: np.ndarray, n: np.ndarray, tiny: float) -> float | None:
    """The constant k with a = k * n on every element, or None.

    k is the least-squares fit sum(a n) / sum(n n); the fit must then hold element by
    element (within MATCH_RTOL), so a tensor that is only partly scaled gives None.
    """
    nn = float(np.dot(n, n))
    if nn == 0.0:
        return None
    k = float(np.dot(a, n) / nn)
    if k == 0.0 or not np.all(_close(a, k * n, tiny)):
        return None
    return k


def describe_factor(k: float, batch_size: int) -> str:
    """Plain words for analytic = k x numeric."""
    sign = "flipped sign: " if k < 0 else ""
    m = abs(k)
    if k < 0 and _near(m, 1.0):
        return "flipped sign: analytic = -1 x numeric (a minus sign too many or too few)"
    if k > 0 and abs(k - 1) < 0.1:
        factor, percent = _near_one(k)
        return f"off by a factor {factor} ({percent}): analytic = {factor} x numeric"
    head = f"{sign}analytic = {_number(k)} x numeric"
    hints = []
    if _near(m, 2.0):
        hints.append("a missing 1/2? (e.g. the derivative of x^2/2 taken as 2x)")
    if _near(m, 0.5):
        hints.append("a factor 2 too few")
    if batch_size > 1 and _near(m, float(batch_size)):
        hints.append(
            f"mean vs sum over the batch: the forward averages the {batch_size} examples "
            "but the backward sums them"
        )
    if batch_size > 1 and _near(m, 1.0 / batch_size):
        hints.append(
            f"mean vs sum over the batch: the backward divides by the batch size "
            f"{batch_size} but the forward sums"
        )
    if not hints:
        hints.append("one constant factor is wrong")
    return f"{head}: " + "; or ".join(hints)


# --- rearrangements: flip, transpose, shift ----------------------------------------------


def _rearranged(a: np.ndarray, n: np.ndarray, use: np.ndarray, scale: float) -> str | None:
    """a equals n flipped, transposed or shifted along the last two axes."""
    if a.ndim < 1:
        return None
    last2 = a.ndim >= 2
    candidates: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = []
    if last2 and a.shape[-2] > 1 and a.shape[-1] > 1:
        candidates.append(
            (
                "the analytic gradient is the numeric one flipped (reversed along the last "
                "two axes): kernel flip, convolution vs cross-correlation",
                lambda t: t[..., ::-1, ::-1],
            )
        )
    if last2 and a.shape[-2] > 1:
        candidates.append(
            (
                "the analytic gradient is the numeric one reversed along axis "
                f"{a.ndim - 2} (rows): a kernel flipped along one axis only",
                lambda t: t[..., ::-1, :],
            )
        )
    if a.shape[-1] > 1:
        axis = a.ndim - 1
        candidates.append(
            (
                f"the analytic gradient is the numeric one reversed along axis {axis}: "
                "elements taken in reverse order (a kernel flip along one axis?)",
                lambda t: t[..., ::-1],
            )
        )
    if last2 and a.shape[-2] == a.shape[-1] > 1:
        candidates.append(
            (
                "the analytic gradient is the numeric one transposed: a weight used as "
                "W^T where W was meant (or the outer product taken the wrong way round)",
                lambda t: np.swapaxes(t, -1, -2),
            )
        )
    for text, move in candidates:
        if _matches_moved(a, n, use, scale, move):
            return text
    return _shifted(a, n, use, scale)


def _matches_moved(a, n, use, scale, move) -> bool:
    """a == move(n) on every element where both sides were checked, and it is not
    trivially true (n unchanged by the move would mean a == n, which cannot fail)."""
    m_n, m_use = move(n), move(use)
    both = use & m_use
    if both.sum() < 2:
        return False
    tiny = MATCH_ATOL * scale
    if np.all(_close(n[both], m_n[both], tiny)):
        return False  # the move leaves n unchanged: nothing to tell apart
    signal = np.abs(m_n[both]) > tiny
    return bool(signal.any() and np.all(_close(a[both], m_n[both], tiny)))


def _shifted(a: np.ndarray, n: np.ndarray, use: np.ndarray, scale: float) -> str | None:
    """a[i, j] == n[i + di, j + dj] on the overlap, for a small nonzero (di, dj)."""
    if a.ndim == 0:
        return None
    two = a.ndim >= 2
    h = a.shape[-2] if two else 1
    w = a.shape[-1]
    tiny = MATCH_ATOL * scale
    found = []
    for di in range(-MAX_SHIFT, MAX_SHIFT + 1) if two else [0]:
        for dj in range(-MAX_SHIFT, MAX_SHIFT + 1):
            if (di, dj) == (0, 0) or abs(di) >= h or abs(dj) >= w:
                continue
            # the overlap must keep at least half of each axis it shifts
            if 2 * abs(di) > h or 2 * abs(dj) > w:
                continue
            sa = (..., slice(max(0, -di), h - max(0, di)), slice(max(0, -dj), w - max(0, dj)))
            sn = (..., slice(max(0, di), h + min(0, di)), slice(max(0, dj), w + min(0, dj)))
            if not two:
                sa, sn = sa[:1] + sa[2:], sn[:1] + sn[2:]
            both = use[sa] & use[sn]
            if both.sum() < 2:
                continue
            x, y = a[sa][both], n[sn][both]
            if np.sum(np.abs(y) > tiny) < 2 or np.all(_close(n[sa][both], y, tiny)):
                continue  # too little signal, or n is unchanged by this shift
            if np.all(_close(x, y, tiny)):
                found.append((abs(di) + abs(dj), di, dj))
    if not found:
        return None
    _, di, dj = min(found)
    moves = []
    if di:
        moves.append(f"{abs(di)} along axis {a.ndim - 2}")
    if dj:
        moves.append(f"{abs(dj)} along axis {a.ndim - 1}")
    formula = f"analytic[i, j] = numeric[{_offset('i', di)}, {_offset('j', dj)}]"
    if not two:
        formula = f"analytic[j] = numeric[{_offset('j', dj)}]"
    return (
        f"the analytic gradient is the numeric one shifted by {' and '.join(moves)} "
        f"({formula}): an off-by-one in the window, stride or padding offset"
    )


def _offset(name: str, d: int) -> str:
    return name if d == 0 else f"{name}{d:+d}"


# --- where the failures are, and what they are --------------------------------------------


def _localised(
    check: TensorCheck,
    a: np.ndarray,
    n: np.ndarray,
    use: np.ndarray,
    failing: np.ndarray,
    tiny: float,
    bound: np.ndarray,
    values: np.ndarray | None,
) -> str | None:
    """'<where>; <what>' for failures confined to part of the tensor. A factor on part
    of the tensor is not a batch-mean one: no batch hints here."""
    if not failing.any():
        return None
    where = _few(check, a, n, use, failing)
    if where:
        return where
    if values is not None and check.param is None:  # an input, or a layer's dx
        where = _by_sign(check, values, use, failing) or _saturated(check, values, n, use, failing)
    where = where or _border(a, use, failing) or _slices(check, use, failing, 1)
    what = _failing_values(a[failing], n[failing], tiny, bound[failing])
    if where and what:
        return f"{where}; there {what}"
    if what:
        return f"on the {int(failing.sum())} failing element(s) only: {what}"
    return where


def _few(
    check: TensorCheck, a: np.ndarray, n: np.ndarray, use: np.ndarray, failing: np.ndarray
) -> str | None:
    """At most MAX_LISTED failing elements among at least four times as many: named one
    by one, with their relative errors."""
    bad = np.argwhere(failing & use)
    if not 0 < len(bad) <= MAX_LISTED or int(use.sum()) < 4 * len(bad):
        return None
    parts = []
    for ix in map(tuple, bad):
        scale = max(abs(a[ix]), abs(n[ix]))
        rel = abs(a[ix] - n[ix]) / scale if scale else 0.0
        parts.append(f"{check.name}[{', '.join(map(str, ix))}] (relative error {rel:.2g})")
    return (
        f"only {len(bad)} of {int(use.sum())} elements wrong: "
        + ", ".join(parts)
        + "; every other one is right"
    )


def _by_sign(
    check: TensorCheck, values: np.ndarray, use: np.ndarray, failing: np.ndarray
) -> str | None:
    """Failures exactly where the input is negative (or positive): every element of that
    sign fails and no other, a split chance would give with probability <= CHANCE."""
    for side, word in ((values < 0, "negative"), (values > 0, "positive")):
        region, bad = use & side, failing & use
        if np.array_equal(region, bad) and _unlikely(int(use.sum()), int(bad.sum())):
            return (
                f"errors only where the {_input_word(check)} is {word}: all "
                f"{int(bad.sum())} {word} elements fail and the {int((use & ~side).sum())} "
                "others are right"
            )
    return None


def _saturated(
    check: TensorCheck, values: np.ndarray, n: np.ndarray, use: np.ndarray, failing: np.ndarray
) -> str | None:
    """Failures exactly at the largest |input|, where the numeric gradient is nearly 0
    beside the right elements': saturated units (sigmoid, tanh far from 0)."""
    right, bad = use & ~failing, use & failing
    if not right.any() or not _unlikely(int(use.sum()), int(bad.sum())):
        return None
    mag = np.abs(values)
    threshold = float(mag[bad].min())
    if threshold <= float(mag[right].max()):
        return None  # some right element lies further out than a failing one
    top = float(np.max(np.abs(n[right])))
    if top == 0.0 or float(np.max(np.abs(n[bad]))) > SATURATED * top:
        return None
    return (
        f"errors only where saturated: at the {int(bad.sum())} element(s) with "
        f"|{_input_word(check)}| >= {threshold:.3g}, every smaller one right, where the "
        f"numeric gradient is below {SATURATED:.0%} of its largest"
    )


def _unlikely(k: int, f: int) -> bool:
    """A given set of f among k elements is hit by a random choice of f with probability
    1 / C(k, f) <= CHANCE."""
    return 0 < f < k and math.comb(k, f) * CHANCE >= 1


def _input_word(check: TensorCheck) -> str:
    return "input" if check.param is None else check.param


def _border(a: np.ndarray, use: np.ndarray, failing: np.ndarray) -> str | None:
    """Failures only within a band of 1..MAX_BORDER rows/columns of the last two axes."""
    if a.ndim < 2:
        return None
    h, w = a.shape[-2:]
    for band in range(1, MAX_BORDER + 1):
        if h <= 2 * band or w <= 2 * band:
            break
        inner = np.zeros((h, w), dtype=bool)
        inner[band:-band, band:-band] = True
        inner = np.broadcast_to(inner, a.shape)
        if (failing & inner).any():
            continue
        if not (use & inner).any():
            return None  # the interior was not checked: nothing tells border from interior
        rows = "row/column" if band == 1 else f"{band} rows/columns"
        return (
            f"errors only on the border (outer {rows} of the last two axes) while the "
            "interior is right: padding / border handling"
        )
    return None


def _slices(
    check: TensorCheck, use: np.ndarray, failing: np.ndarray, batch_size: int
) -> str | None:
    """Failures only in some indices along axis 0 or 1 (3-D and up), the rest right.

    Only axes before the last two count: those are rows and columns, not channels.
    """
    if failing.ndim < 3:
        return None
    parts = []
    for axis in range(min(2, failing.ndim - 2)):
        other = tuple(i for i in range(failing.ndim) if i != axis)
        bad = np.flatnonzero(failing.any(axis=other))
        seen = np.flatnonzero(use.any(axis=other))
        if 0 < len(bad) < len(seen):
            label = _axis_label(check, axis, batch_size)
            idx = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
            parts.append(f"index {idx} of axis {axis} ({label})")
    if not parts:
        return None
    return "errors only in " + " and ".join(parts) + "; the other slices are right"


def _axis_label(check: TensorCheck, axis: int, batch_size: int) -> str:
    ndim = check.analytic.ndim
    if check.layer is None:  # a network input (input, input.x)
        batched = batch_size > 1 or ndim == 4
        return (["examples", "channels"] if batched else ["channels"])[axis]
    if check.param == "weight" and ndim == 4:
        return ["output channels", "input channels"][axis]
    return "channels" if axis == 0 else "axis 1"


def _failing_values(a: np.ndarray, n: np.ndarray, tiny: float, bound: np.ndarray) -> str | None:
    """What the failing elements look like: a factor, zeros, or misrouted gradient."""
    e = a - n
    k = small_factor(e, n, bound) if _is_small(e, n) else scale_factor(a, n, tiny)
    if k is not None:
        return describe_factor(k, 1)
    zero_a = (np.abs(a) <= tiny) & (np.abs(n) > tiny)
    zero_n = (np.abs(n) <= tiny) & (np.abs(a) > tiny)
    if zero_a.any() and zero_n.any():
        return (
            f"gradient routed to the wrong elements: 0 at {int(zero_a.sum())} element(s) "
            f"where the numeric gradient is not, nonzero at {int(zero_n.sum())} that do not "
            "affect the loss (e.g. a max pool passing it to the wrong window position)"
        )
    if zero_n.all():
        return (
            f"gradient sent to {int(zero_n.sum())} element(s) that do not affect the loss "
            "(numeric 0): routed too widely (e.g. a max pool passing it to the whole window)"
        )
    if zero_a.all():
        return (
            f"the analytic gradient is 0 at {int(zero_a.sum())} element(s) where the numeric "
            "one is not: gradient never propagated to these elements"
        )
    return None


# --- helpers -------------------------------------------------------------------------------


def _close(x: np.ndarray, y: np.ndarray, tiny: float) -> np.ndarray:
    return np.abs(x - y) <= MATCH_RTOL * np.maximum(np.abs(x), np.abs(y)) + tiny


def _near(x: float, target: float) -> bool:
    return abs(x - target) <= MATCH_RTOL * target


def _near_one(k: float) -> tuple[str, str]:
    """A factor near 1 and its deviation, each to two significant digits of the
    deviation: ("1.00001", "0.001%"), ("0.9997", "-0.03%")."""
    d = abs(k - 1)
    digits = max(3, int(np.ceil(-np.log10(d))) + 2) if d > 0 else 3
    percent = np.format_float_positional(
        (k - 1) * 100, precision=2, unique=False, fractional=False, trim="-"
    )
    return f"{k:.{digits}g}", f"{percent}%"


def _number(k: float) -> str:
    """k as a short number: 2, -1, 1/4, 3.7 (integers and unit fractions exactly)."""
    m = abs(k)
    sign = "-" if k < 0 else ""
    if m >= 1 and _near(m, round(m)):
        return f"{sign}{round(m)}"
    if m < 1 and _near(1 / m, round(1 / m)):
        return f"{sign}1/{round(1 / m)}"
    return f"{k:.4g}"
