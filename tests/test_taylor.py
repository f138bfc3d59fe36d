"""--method taylor: order ~2 for right gradients, ~1 for wrong ones, exact when linear."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from engine_toys import Affine, Relu, Tanh, make_problem

from gradcheck_cli.engine import run_check
from gradcheck_cli.engine.taylor import ORDER_THRESHOLD, combine_sides, judge_remainders
from gradcheck_cli.problem import LossSpec, Method
from gradcheck_cli.protocol import Loss


class Linear(Loss):
    """E = sum(grad * y): the objective is linear in a last affine layer's weights."""

    target_name = "grad"

    class Cache(NamedTuple):
        grad: np.ndarray

    def forward(self, y, target):
        grad = target[np.arange(len(y)) % len(target)]
        return (grad * y).reshape(len(y), -1).sum(1), self.Cache(grad)

    def backward(self, cache):
        return cache.grad


def _stack(act, last=None, x=None, **settings):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)) if x is None else x
    target = rng.standard_normal((3, 2))
    layers = [("fc1", Affine(5)), ("act", act), ("fc2", last or Affine(2))]
    return make_problem(layers, x, target, batched=True, method=Method.TAYLOR, **settings)


def orders(report):
    return {c.name: c.taylor_order for c in report.checks}


def test_correct_smooth_stack_has_order_two_everywhere():
    report = run_check(_stack(Tanh()))
    assert report.passed
    for name, order in orders(report).items():
        assert order == pytest.approx(2.0, abs=0.1), name
    c = report.check("fc1.weight")
    assert c.mode == "taylor" and c.checked == 0 and c.taylor_passed is True


def test_wrong_weight_gradient_has_order_one_and_fails_only_there():
    report = run_check(_stack(Tanh(), last=Affine(2, bug=2.0)))
    assert not report.passed
    assert [c.name for c in report.checks if not c.passed] == ["fc2.weight"]
    assert report.check("fc2.weight").taylor_order == pytest.approx(1.0, abs=0.1)
    assert report.check("fc2.bias").taylor_order == pytest.approx(2.0, abs=0.1)
    assert report.exit_code == 1


def test_small_relative_error_is_still_order_one():
    report = run_check(_stack(Tanh(), last=Affine(2, bug=1.001)))
    assert report.check("fc2.weight").taylor_order < 1.2
    assert not report.check("fc2.weight").passed


def test_wrong_dx_fails_every_tensor_below():
    report = run_check(_stack(Tanh(), last=Affine(2, dx_bug=-1.0)))
    failing = {c.name for c in report.checks if not c.passed}
    assert failing == {"input", "fc1.weight", "fc1.bias"}


def test_relu_network_away_from_kinks_has_order_two():
    p = _stack(Relu())
    # keep every pre-activation at least 0.3 away from the kink
    w, b = p.layers[0].params["weight"], p.layers[0].params["bias"]
    z = p.x @ w.T + b
    p.layers[0].params["bias"] = b + np.where(np.abs(z) < 0.3, 0.5, 0.0).max(axis=0)
    z = p.x @ w.T + p.layers[0].params["bias"]
    assert np.abs(z).min() > 0.05
    report = run_check(p)
    assert report.passed
    for name, order in orders(report).items():
        assert order is None or order >= ORDER_THRESHOLD, name


def test_relu_network_with_a_wrong_layer_is_order_one():
    report = run_check(_stack(Relu(), last=Affine(2, bug=0.5)))
    assert report.check("fc2.weight").taylor_order == pytest.approx(1.0, abs=0.1)
    assert not report.passed


def test_objective_linear_in_the_tensor_is_exact():
    p = _stack(Tanh())
    p.loss = LossSpec("linear", Linear(), np.random.default_rng(1).standard_normal((3, 2)))
    report = run_check(p)
    assert report.passed
    assert report.check("fc2.weight").taylor_order is None  # remainder at the rounding floor
    assert report.check("fc1.weight").taylor_order == pytest.approx(2.0, abs=0.1)


def test_linear_objective_with_a_wrong_gradient_still_fails():
    p = _stack(Tanh(), last=Affine(2, bug=-1.0))
    p.loss = LossSpec("linear", Linear(), np.random.default_rng(1).standard_normal((3, 2)))
    report = run_check(p)
    c = report.check("fc2.weight")
    assert not c.passed and c.taylor_order == pytest.approx(1.0, abs=0.05)


def test_json_report_carries_the_order_and_verdict():
    d = run_check(_stack(Tanh(), last=Affine(2, bug=2.0))).to_dict()
    entry = next(c for c in d["checks"] if c["name"] == "fc2.weight")
    assert entry["mode"] == "taylor" and entry["passed"] is False
    assert entry["taylor_passed"] is False and 0.8 < entry["taylor_order"] < 1.2
    assert d["settings"]["method"] == "taylor" and d["exit_code"] == 1


def test_directions_are_seeded():
    a = orders(run_check(_stack(Tanh(), seed=0)))
    b = orders(run_check(_stack(Tanh(), seed=0)))
    assert a == b


# --- the verdict on synthetic remainders ---------------------------------------------------

H = 0.1 * 2.0 ** -np.arange(14)
FLOOR = np.full(14, 1e-13)


def test_pure_quadratic_remainder_is_order_two():
    r = judge_remainders(H, 3 * H**2, FLOOR)
    assert r.passed and r.order == pytest.approx(2.0)


def test_linear_remainder_is_order_one():
    r = judge_remainders(H, 0.01 * H + H**2, FLOOR)
    assert not r.passed and r.order == pytest.approx(1.0, abs=0.05)


def test_remainder_at_the_floor_is_exact():
    r = judge_remainders(H, np.full(14, 1e-15), FLOOR)
    assert r.passed and r.exact


def test_kink_crossed_at_large_steps_then_floor_passes_as_exact():
    rem = np.where(H > 0.01, H - 0.01 + 1e-3, 1e-15)  # piecewise linear: kink at h = 0.01
    r = judge_remainders(H, rem, FLOOR)
    assert r.passed and r.exact


def test_noise_below_the_floor_is_not_fitted():
    rng = np.random.default_rng(0)
    rem = np.maximum(H**2, 1e-15 * rng.random(14))
    floor = np.full(14, 1e-9)
    r = judge_remainders(H, rem, floor)
    assert r.passed and r.order == pytest.approx(2.0)
    assert not r.fitted[H**2 <= 1e-9].any()


# --- both sides: kinks along the direction -------------------------------------------------


def test_kink_at_x_with_a_subgradient_passes_on_the_sign_rule():
    # convex kink along v, g.v between the one-sided slopes: R+ = 0.3 h, R- = 0.5 h
    r = combine_sides(H, 0.3 * H, FLOOR, 0.5 * H, FLOOR)
    assert r.passed and r.kink


def test_wrong_gradient_leaves_opposite_signs_and_fails():
    r = combine_sides(H, 0.3 * H + H**2, FLOOR, -0.3 * H + H**2, FLOOR)
    assert not r.passed and not r.kink
    assert r.order == pytest.approx(1.0, abs=0.1)


def test_kink_crossed_on_one_side_only_passes_on_the_other_side():
    d = 1e-3  # a kink at distance d along +v; the -v side is smooth
    plus = np.where(d < H, 2.0 * (H - d), 0.0) + H**2
    r = combine_sides(H, plus, FLOOR, H**2, FLOOR)
    assert r.passed and r.order == pytest.approx(2.0, abs=0.1)


def test_extended_steps_never_pass_a_remainder_that_fades_gradually():
    # a first-order error that sinks into the floor by halving: still wrong
    r = judge_remainders(H, 1e-12 * H / H[-1], np.full(14, 3e-12), allow_exact=False)
    assert not r.passed


def test_extended_steps_pass_a_remainder_that_drops_at_once():
    rem = np.where(H > 1e-3, H - 1e-3 + 1e-6, 1e-20)  # a near kink left behind
    r = judge_remainders(H, rem, np.full(14, 1e-15), allow_exact=False)
    assert r.passed


def test_float32_gradient_rounding_is_not_a_first_order_error():
    p = _stack(Tanh())
    p.loss = LossSpec("linear", Linear(), np.random.default_rng(1).standard_normal((3, 2)))
    p.dtype = "float32"
    p.x = p.x.astype(np.float32)
    for spec in p.layers:
        spec.params = {k: v.astype(np.float32) for k, v in spec.params.items()}
    report = run_check(p)
    assert report.passed
    assert report.check("fc2.weight").taylor_order is None  # exact to float32 rounding


def test_float32_wrong_gradient_still_fails():
    p = _stack(Tanh(), last=Affine(2, bug=1.01))
    p.dtype = "float32"
    p.x = p.x.astype(np.float32)
    for spec in p.layers:
        spec.params = {k: v.astype(np.float32) for k, v in spec.params.items()}
    report = run_check(p)
    assert not report.check("fc2.weight").passed


def test_the_scaled_direction_moves_each_element_by_a_fraction_of_itself():
    """Mixed magnitudes get a second direction: unit norm, each component v_i * |x_i| up
    to one factor, 0 where x is 0; magnitudes within taylor.MIXED of each other get none."""
    from gradcheck_cli.engine.taylor import MIXED, scaled_direction

    rng = np.random.default_rng(5)
    for _ in range(50):
        x = rng.standard_normal(12) * 10.0 ** rng.integers(-8, 5, 12)
        x[rng.integers(0, 12)] = 0.0
        v = rng.standard_normal(12)
        v /= np.linalg.norm(v)
        w = scaled_direction(v, x)
        size = np.abs(x[x != 0])
        if size.max() <= MIXED * size.min():
            assert w is None
            continue
        assert w is not None and np.linalg.norm(w) == pytest.approx(1.0)
        assert np.all(w[x == 0] == 0)
        ratio = w[x != 0] / (v[x != 0] * np.abs(x[x != 0]))
        assert np.allclose(ratio, ratio[0])
    assert scaled_direction(v, np.full(12, 3.0)) is None
