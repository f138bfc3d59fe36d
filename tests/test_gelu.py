"""gelu and the error function it is built on: erf and erfc against the C library's
(math.erf, math.erfc) on a dense grid with both tails, gelu and its derivative against a
reference written with math.erfc everywhere and against PyTorch where PyTorch's own
formula is accurate, and the layer through the engine.

The generic tables (tests/test_layers.py, test_builtins_through_engine.py,
test_vs_torch.py, test_stacks_vs_torch.py) cover the layer too, as every built-in.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcheck_cli as gc
from gradcheck_cli.config import problem_from_dict
from gradcheck_cli.engine.explain import LocalDerivative, explain
from gradcheck_cli.layers.gelu import Gelu, erf, erfc, normal_cdf

SQRT1_2 = math.sqrt(0.5)
#: Below this a float64 is subnormal and has fewer significant bits than 1e-15 needs.
NORMAL = 2.3e-308


def rel_error(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|a - b| / max(|a|, |b|), 0 where both are 0."""
    scale = np.maximum(np.abs(ours), np.abs(ref))
    return np.abs(ours - ref) / np.where(scale == 0, 1.0, scale)


def grid() -> np.ndarray:
    """|x| up to 30 densely, tiny |x| down to 1e-300, and every range boundary +- 1 ulp."""
    dense = np.linspace(-30.0, 30.0, 120_001)
    tiny = np.geomspace(1e-300, 1.0, 1_000)
    edges = np.array([0.46875, 4.0, 6.0, 26.5, 27.2])
    edges = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, 100)])
    positive = np.concatenate([dense[dense > 0], tiny, edges])
    return np.concatenate([-positive, [0.0], positive])


def test_erf_matches_the_c_library_to_1e_15_relative():
    x = grid()
    ref = np.array([math.erf(v) for v in x])
    assert rel_error(erf(x), ref).max() <= 1e-15


def test_erfc_matches_the_c_library_to_2e_15_relative_down_to_its_underflow():
    x = grid()
    ref = np.array([math.erfc(v) for v in x])
    ours = erfc(x)
    normal = ref > NORMAL  # erfc(x) underflows past x = 26.5
    assert normal.sum() > 0.9 * x.size
    assert rel_error(ours[normal], ref[normal]).max() <= 2e-15
    assert np.abs(ours[~normal]).max() < 1e-300  # subnormal or 0, as erfc is there


def test_special_values_and_shapes():
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-320, -1e-320])
    np.testing.assert_array_equal(erf(special)[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(erf(special)[1]) and np.isnan(erf(special)[4])
    np.testing.assert_array_equal(erfc(special)[:4], [1.0, 1.0, 0.0, 2.0])
    assert np.isnan(erfc(special)[4])
    assert erf(special)[5] > 0 > erf(special)[6]  # subnormal x: erf keeps the sign
    assert erf(np.float64(0.5)).shape == () and erf(np.zeros((2, 0, 3))).shape == (2, 0, 3)
    assert erf(np.ones((2, 3))).shape == (2, 3) and erf([0.5]).dtype == np.float64
    np.testing.assert_allclose(erf(0.5), math.erf(0.5), rtol=1e-15)


def test_normal_cdf_keeps_its_relative_accuracy_in_the_left_tail():
    """Phi through erfc: 1 + erf(x / sqrt(2)) would round to 0 below x = -8.3."""
    x = np.array([-37.0, -20.0, -8.5, -3.0, 0.0, 3.0, 8.5])
    ref = np.array([0.5 * math.erfc(-v * SQRT1_2) for v in x])
    assert rel_error(normal_cdf(x), ref).max() <= 1e-15
    assert normal_cdf(np.array([-20.0]))[0] == pytest.approx(2.7536241186062336e-89, rel=1e-14)


def gelu_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x * Phi(x) and Phi(x) + x phi(x), element by element with the C library."""
    cdf = np.array([0.5 * math.erfc(-v * SQRT1_2) for v in x])
    pdf = np.array([math.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi) for v in x])
    return x * cdf, cdf + x * pdf


def gelu_and_derivative(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    layer = Gelu()
    y, cache = layer.forward(x[None], {})
    dx, grads = layer.backward(np.ones_like(y), cache, {})
    assert grads == {}
    return y[0], dx[0]


def test_gelu_and_its_derivative_match_the_reference_to_1e_15_in_both_tails():
    x = np.linspace(-38.0, 38.0, 7_601)
    y, dydx = gelu_and_derivative(x)
    ref_y, ref_d = gelu_reference(x)
    shown = np.abs(ref_y) > NORMAL
    assert rel_error(y[shown], ref_y[shown]).max() <= 1e-15
    # the derivative has a root near x = -0.7518, where any formula cancels
    away = (np.abs(ref_d) > NORMAL) & (np.abs(x + 0.75) > 0.25)
    assert rel_error(dydx[away], ref_d[away]).max() <= 2e-15
    np.testing.assert_allclose(dydx, ref_d, rtol=0, atol=1e-15)


def test_gelu_and_its_derivative_match_torch():
    """Where torch's 0.5 * (1 + erf(x / sqrt(2))) does not cancel (x > -3), to 1e-13
    relative; in the left tail, where it does, to 1e-16 absolute (our values are the
    accurate ones there: see the reference test above)."""
    torch = pytest.importorskip("torch")
    x = np.linspace(-12.0, 12.0, 4_801)
    y, dydx = gelu_and_derivative(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.gelu(xt, approximate="none")
    yt.sum().backward()
    yt, dt = yt.detach().numpy(), xt.grad.numpy()
    right = x > -3.0
    assert rel_error(y[right], yt[right]).max() <= 1e-13
    root = np.abs(x + 0.75) < 0.25
    assert rel_error(dydx[right & ~root], dt[right & ~root]).max() <= 1e-13
    np.testing.assert_allclose(y, yt, rtol=0, atol=2e-15)
    np.testing.assert_allclose(dydx, dt, rtol=0, atol=1e-15)


def test_a_float32_input_stays_float32():
    x = np.linspace(-3.0, 3.0, 13, dtype=np.float32)
    y, cache = Gelu().forward(x[None], {})
    dx, _ = Gelu().backward(np.ones_like(y), cache, {})
    assert y.dtype == dx.dtype == np.float32
    ref_y, ref_d = gelu_reference(x.astype(np.float64))
    np.testing.assert_allclose(y[0], ref_y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx[0], ref_d, rtol=1e-6, atol=1e-7)


def test_is_not_the_tanh_approximation():
    x = np.array([[1.0]])
    y, _ = Gelu().forward(x, {})
    tanh_form = 0.5 * (1 + np.tanh(math.sqrt(2 / math.pi) * (1 + 0.044715)))
    assert y[0, 0] == pytest.approx(0.8413447460685429, rel=1e-15)  # Phi(1)
    assert abs(y[0, 0] - tanh_form) > 1e-4


NETWORK = {
    "seed": 2,
    "input": {"shape": [3, 6], "batched": True},
    "layers": [
        {"type": "dense", "name": "fc1", "out_features": 5},
        {"type": "gelu", "name": "act"},
        {"type": "dense", "name": "fc2", "out_features": 3},
    ],
    "loss": {"type": "softmax_cross_entropy", "target": [0, 2, 1]},
}


def test_a_network_with_gelu_passes_and_explain_shows_its_derivative():
    report = gc.check(NETWORK)
    assert report.passed and all(v.passed for v in report.layers)
    problem = problem_from_dict(NETWORK)
    step = explain(problem).steps[1]
    (local,) = step.details
    assert isinstance(local, LocalDerivative)
    z = problem.layers[0].layer.forward(problem.x, problem.layers[0].params)[0][0]
    _, ref_d = gelu_reference(z)
    np.testing.assert_allclose(local.derivative, ref_d, rtol=1e-14)
