"""gelu: the Gaussian error linear unit in its exact form, x * Phi(x), with the error
function it needs (numpy has none, and runtime dependencies stop at numpy).

``erf`` and ``erfc`` are W. J. Cody's rational Chebyshev approximations ("Rational
Chebyshev approximations for the error function", Math. Comp. 23 (1969) 631-637; the
coefficients of his CALERF in netlib's specfun), evaluated on whole arrays, since the
numeric check runs gelu on stacks of thousands of perturbed copies at once. Their
relative error is within a few units in the last place of float64 on every range,
tails included; tests/test_gelu.py holds them to math.erf and math.erfc.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..protocol import ElementWise, Layer, Params, register_layer


def _table(numerator: tuple[float, ...], denominator: tuple[float, ...]) -> np.ndarray:
    """Numerator and denominator coefficients, highest power first, as one (degree + 1,
    2, 1) array: both polynomials are evaluated in one pass of Horner's rule."""
    return np.array([numerator, denominator], dtype=np.float64).T[:, :, None]


# |x| <= 0.46875: erf(x) = x * P(x^2) / Q(x^2).
_SMALL_PQ = _table(
    (
        1.85777706184603153e-1,
        3.16112374387056560e00,
        1.13864154151050156e02,
        3.77485237685302021e02,
        3.20937758913846947e03,
    ),
    (
        1.0,
        2.36012909523441209e01,
        2.44024637934444173e02,
        1.28261652607737228e03,
        2.84423683343917062e03,
    ),
)
# 0.46875 < y <= 4: erfc(y) = exp(-y^2) * P(y) / Q(y).
_MID_PQ = _table(
    (
        2.15311535474403846e-8,
        5.64188496988670089e-1,
        8.88314979438837594e00,
        6.61191906371416295e01,
        2.98635138197400131e02,
        8.81952221241769090e02,
        1.71204761263407058e03,
        2.05107837782607147e03,
        1.23033935479799725e03,
    ),
    (
        1.0,
        1.57449261107098347e01,
        1.17693950891312499e02,
        5.37181101862009858e02,
        1.62138957456669019e03,
        3.29079923573345963e03,
        4.36261909014324716e03,
        3.43936767414372164e03,
        1.23033935480374942e03,
    ),
)
# y > 4: erfc(y) = exp(-y^2) / y * (1/sqrt(pi) - z P(z) / Q(z)), z = 1 / y^2.
_BIG_PQ = _table(
    (
        1.63153871373020978e-2,
        3.05326634961232344e-1,
        3.60344899949804439e-1,
        1.25781726111229246e-1,
        1.60837851487422766e-2,
        6.58749161529837803e-4,
    ),
    (
        1.0,
        2.56852019228982242e00,
        1.87295284992346047e00,
        5.27905102951428412e-1,
        6.05183413124413191e-2,
        2.33520497626869185e-3,
    ),
)
_SMALL = 0.46875
_RSQRT_PI = 0.56418958354775628695  # 1 / sqrt(pi)
_SQRT1_2 = math.sqrt(0.5)
_RSQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: erfc(y) is below the smallest subnormal from here on; larger y (inf too) is clipped.
_ERFC_ZERO = 27.3


def _rational(z: np.ndarray, table: np.ndarray) -> np.ndarray:
    """P(z) / Q(z) for a flat z, the coefficients of P and Q stacked in ``table``.

    Horner's rule, in place on one (2, n) array: numpy spends its time per call here (the
    numeric check runs this on every stack of copies), so P and Q share every call.
    """
    out = table[0] * z
    out += table[1]
    for c in table[2:]:
        out *= z
        out += c
    return out[0] / out[1]


def _erf_small(x: np.ndarray) -> np.ndarray:
    """erf(x) for |x| <= 0.46875 (relative to x, so tiny x keep their accuracy)."""
    out = _rational(x * x, _SMALL_PQ)
    out *= x
    return out


def _ratio_mid(y: np.ndarray) -> np.ndarray:
    """erfc(y) * exp(y^2) for 0.46875 < y <= 4."""
    return _rational(y, _MID_PQ)


def _ratio_big(y: np.ndarray) -> np.ndarray:
    """erfc(y) * exp(y^2) for y > 4."""
    z = 1.0 / (y * y)
    out = _rational(z, _BIG_PQ)
    out *= -z
    out += _RSQRT_PI
    out /= y
    return out


def _erfc_tail(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y >= 0.46875, with full relative accuracy down to its underflow.

    Other y are computed as if they were 0.46875 (the callers discard them): every element
    takes the same path, which is faster in numpy than splitting the array by a mask.
    """
    y = np.clip(y, _SMALL, _ERFC_ZERO)
    big = y > 4.0
    if big.any():  # |x| > 4: rare in a network, worth its masked copies
        out = _ratio_mid(np.minimum(y, 4.0))
        out[big] = _ratio_big(y[big])
    else:
        out = _ratio_mid(y)
    # exp(-y^2) without the rounding of y^2, which exp would magnify by 2 y^2: y = s + t
    # with s a multiple of 1/16 (s^2 is exact) and y^2 - s^2 = (y - s)(y + s), small.
    s = y * 16.0
    np.trunc(s, out=s)
    s /= 16.0
    rest = y - s
    rest *= y + s
    out *= np.exp(-(s * s))
    out *= np.exp(-rest)
    return out


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, element-wise: 2 / sqrt(pi) * integral from 0 to x of exp(-t^2)."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1)  # the tail's masked assignment needs at least one axis
    size = np.abs(flat)
    near_0 = _erf_small(np.clip(flat, -_SMALL, _SMALL))
    far = np.copysign((0.5 - _erfc_tail(size)) + 0.5, flat)
    return np.where(size <= _SMALL, near_0, far).reshape(x.shape)


def erfc(x: np.ndarray) -> np.ndarray:
    """The complementary error function 1 - erf(x), element-wise, accurate where erf(x) is
    near 1 (large x) too."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1)
    size = np.abs(flat)
    near_0 = 1.0 - _erf_small(np.clip(flat, -_SMALL, _SMALL))
    tail = _erfc_tail(size)
    far = np.where(flat < 0, 2.0 - tail, tail)
    return np.where(size <= _SMALL, near_0, far).reshape(x.shape)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) = (1 + erf(x / sqrt(2))) / 2, written with erfc so that the left tail keeps
    its relative accuracy (1 + erf(x / sqrt(2)) cancels to 0 there)."""
    return 0.5 * erfc(-x * _SQRT1_2)


class GeluCache(NamedTuple):
    x: np.ndarray  # (N, *shape), the layer's input
    cdf: np.ndarray  # (N, *shape), Phi(x)


@register_layer("gelu")
class Gelu(Layer):
    """y = x * Phi(x), Phi the standard normal CDF (torch.nn.GELU(approximate="none")).

    x: (N, *shape) -> y: (N, *shape), element by element, with

        Phi(x) = (1 + erf(x / sqrt(2))) / 2,   dy/dx = Phi(x) + x * phi(x),
        phi(x) = exp(-x^2 / 2) / sqrt(2 pi)   (the standard normal density).

    Not the tanh approximation. Phi is computed through erfc, so y keeps its relative
    accuracy in the left tail, where it is tiny; PyTorch's 1 + erf(...) rounds to 0 there
    (both agree to within 1e-16 absolute).
    """

    summary = "Gaussian error linear unit x * Phi(x), exact erf form (not the tanh one)"
    kinks = ""  # none: smooth everywhere
    derivation = ElementWise("f'(x) = Phi(x) + x phi(x), Phi and phi the normal CDF and density")
    batch_independent = True

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, GeluCache]:
        # Phi in float64, then in x's dtype: a float32 network stays float32 throughout.
        cdf = normal_cdf(x).astype(x.dtype, copy=False)
        return x * cdf, GeluCache(x, cdf)

    def backward(
        self, dy: np.ndarray, cache: GeluCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        x = cache.x
        pdf = _RSQRT_2PI * np.exp(-0.5 * x * x)
        return dy * (cache.cdf + x * pdf), {}
