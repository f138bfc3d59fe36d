"""Kinks and ties: valid subgradients pass, values no subgradient has still fail.

Covers the single-kink rule (compare.py) and the compound kinks where several meet
(engine/kinks.py): ties across overlapping max-pool windows, and several ReLUs at 0 that
read the same input element.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engine_toys import Affine, make_problem

from gradcheck_cli.config import problem_from_dict
from gradcheck_cli.engine import run_check
from gradcheck_cli.engine.elements import JUMP_KEY
from gradcheck_cli.engine.kinks import UNRESOLVED_NOTE, settle_compound_kinks
from gradcheck_cli.network import Node, chain
from gradcheck_cli.protocol import Layer
from gradcheck_cli.report import LayerVerdict, Report, TensorCheck


class ReluAtZero(Layer):
    """ReLU whose derivative at exactly 0 is ``at_zero`` (1 and 0 are valid, 2 is not)."""

    batch_independent = True

    def __init__(self, at_zero: float):
        self.at_zero = at_zero

    def forward(self, x, params):
        return np.maximum(x, 0.0), x

    def backward(self, dy, cache, params):
        slope = np.where(cache > 0, 1.0, np.where(cache == 0, self.at_zero, 0.0))
        return dy * slope, {}


def relu_problem(at_zero: float, **settings):
    x = np.array([[0.0, 1.5, 0.0, -0.5, 0.0, 0.8]])
    target = np.array([[0.3, -0.7]])
    layers = [("relu", ReluAtZero(at_zero)), ("fc", Affine(2))]
    return make_problem(layers, x, target, **settings)


@pytest.mark.parametrize(("at_zero", "kinks"), [(0.0, 3), (1.0, 3), (0.5, None)])
def test_any_subgradient_of_relu_at_zero_passes(at_zero, kinks):
    # 0.5 is the central difference's limit: it agrees with it to O(h) (a kink is proven
    # where the O(h) term shows, a pass where it does not)
    report = run_check(relu_problem(at_zero))
    assert report.passed
    assert report.check("input").kinks == kinks or kinks is None


def test_a_value_outside_every_subgradient_fails_and_is_blamed():
    report = run_check(relu_problem(2.0))
    c = report.check("input")
    assert not c.passed and c.failed == 3
    assert report.blamed_layers() == ["relu"]


def test_strict_kinks_fails_valid_subgradients_too():
    report = run_check(relu_problem(1.0, strict_kinks=True))
    assert not report.passed and report.check("input").failed == 3


def _doc(x, layers, loss):
    return {"seed": 0, "input": x, "layers": layers, "loss": loss}


# Ties across overlapping windows: element (0, 2) ties in window 1 (where (0, 1) comes
# first) and window 2 (where it comes first); softmax gradients of opposite signs put its
# analytic value outside the one-sided bracket although it is a valid limiting gradient.
TIES = [[[1.0, 2.0, 2.0, 0.0], [2.0, 2.0, 2.0, -1.0]]]
OVERLAPPING_POOL = [{"type": "maxpool2d", "kernel_size": 2, "stride": 1}, {"type": "flatten"}]


def test_tie_across_overlapping_max_pool_windows_is_a_kink():
    doc = _doc(TIES, OVERLAPPING_POOL, {"type": "softmax_cross_entropy", "target": 2})
    report = run_check(problem_from_dict(doc))
    assert report.passed
    assert all(v.passed for v in report.layers)
    assert report.check("input").kinks >= 4


def test_tie_whose_one_sided_differences_cancel_is_a_kink():
    # a tie spanning every window: the softmax gradients sum to 0, d+ = d- exactly
    x = [[[0.0, 0.0, 1.0, 2.0, -1.0], [-0.5, 1.0, 2.0, -0.5, 0.0], [2.0, 0.0, -0.5, 1.0, -0.5]]]
    layers = [{"type": "maxpool2d", "kernel_size": 3, "stride": 1}, {"type": "flatten"}]
    report = run_check(
        problem_from_dict(_doc(x, layers, {"type": "softmax_cross_entropy", "target": 2}))
    )
    assert report.passed


def test_compound_kinks_still_fail_under_strict_kinks():
    doc = _doc(TIES, OVERLAPPING_POOL, {"type": "softmax_cross_entropy", "target": 2})
    doc["check"] = {"strict_kinks": True}
    report = run_check(problem_from_dict(doc))
    assert not report.passed


def test_several_relus_at_zero_reading_one_input_are_a_kink():
    # a block of zeros through a bias-free conv: many ReLU inputs exactly 0 at once
    x = np.zeros((1, 5, 5))
    x[0, 0] = [0.5, -1.0, 0.3, 0.9, -0.2]
    layers = [
        {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1, "bias": False},
        {"type": "relu"},
        {"type": "flatten"},
        {"type": "dense", "out_features": 3},
    ]
    loss = {"type": "mse", "target": [0.5, -1.0, 2.0]}
    report = run_check(problem_from_dict(_doc(x.tolist(), layers, loss)))
    assert report.passed
    assert sum(c.kinks for c in report.checks) > 0


def test_wrong_max_pool_routing_on_ties_is_still_caught():
    # routing to the whole window is wrong with or without ties (mutant plugin)
    layers = [{"type": "maxpool_all", "name": "pool", "kernel_size": 2, "stride": 1}]
    doc = _doc(TIES, [*layers, {"type": "flatten"}], {"type": "softmax_cross_entropy", "target": 2})
    doc["plugins"] = ["maxpool_all.py"]
    report = run_check(problem_from_dict(doc, base_dir=Path(__file__).parent / "mutants"))
    assert not report.passed
    assert report.blamed_layers() == ["pool"]


def _check(failed, jump):
    shape = (3,)
    a = np.ones(shape)
    return TensorCheck(
        name="input",
        layer=None,
        param=None,
        analytic=a,
        numeric=a,
        checked_mask=np.ones(shape, bool),
        failed_mask=np.array(failed),
        kink_mask=np.zeros(shape, bool),
        abs_error=np.zeros(shape),
        rel_error=np.zeros(shape),
        extra={JUMP_KEY: np.array(jump)},
    )


def _report(check, layers_ok=True, kinks=0):
    layers = [
        LayerVerdict("l1", "x", layers_ok, 0.0, 0.0, kinks, 3, {"input": layers_ok}),
        LayerVerdict("loss", "mse", True, 0.0, 0.0, 0, 3, {"input": True}),
    ]
    for v in layers:
        v.every_element = True
    return Report(config="x", loss=0.0, settings={}, checks=[check], layers=layers)


class _Tol:
    eps = 1e-6
    strict_kinks = False


LOOSE = _Tol()


class _Problem:
    """Just the structure: one layer ``l1`` reading ``input``, then the loss."""

    network = chain((3,), [Node("l1", "x", Layer(), {}, (3,), (3,))])
    dtype = "float64"


def test_settling_needs_every_backward_on_the_path_right():
    c = _check([True, True, False], [True, True, False])
    settle_compound_kinks(_report(c, layers_ok=False), _Problem(), LOOSE)
    assert c.failed == 2  # a wrong layer above: the failures stay


def test_settling_a_jump_when_the_path_is_right():
    c = _check([True, True, False], [True, False, False])
    settle_compound_kinks(_report(c), _Problem(), LOOSE)
    assert c.kink_mask.tolist() == [True, False, False] and c.kinks == 1
    # no jump and no kink on the path, every backward on it right: the network-level
    # numerics could not resolve the element (kinks.py, fact 3): inconclusive, not a pass
    assert c.failed == 0 and c.inconclusive_mask.tolist() == [False, True, False]
    assert not c.passed and c.diagnosis == UNRESOLVED_NOTE


def test_settling_needs_the_path_verified_not_merely_not_wrong():
    """A hunt found an offset input (1e4 + 0.01 spread) into a buggy batch-norm pair
    passing with four 'kinks': the pair's own check was inconclusive (neither right nor
    wrong), and the network's failures were settled as compound kinks. An inconclusive
    backward on the way vouches for nothing: they are inconclusive, not kinks."""
    c = _check([True, True, False], [True, True, False])
    report = _report(c)
    report.layers[0].tensors_ok["input"] = None  # l1's dx: inconclusive in isolation
    settle_compound_kinks(report, _Problem(), LOOSE)
    assert c.kinks == 0 and c.failed == 0 and c.inconclusive_mask.tolist() == [True, True, False]
    assert not c.passed and "l1" in c.diagnosis


def test_a_sampled_isolation_vouches_for_nothing():
    """A hunt found --sample failures turned inconclusive (fact 3) or kinks (fact 2)
    because a layer's isolated check, a sample of other elements, passed: a failure
    without a kink at the element stays a failure, one with a kink there is
    inconclusive."""
    c = _check([True, True, False], [True, False, False])
    report = _report(c, kinks=2)
    report.layers[0].every_element = False  # l1 checked on a sample
    settle_compound_kinks(report, _Problem(), LOOSE)
    assert c.failed_mask.tolist() == [False, True, False]
    assert c.inconclusive_mask.tolist() == [True, False, False] and c.kinks == 0


def test_under_strict_kinks_a_settled_element_fails_even_one_that_was_inconclusive():
    class Strict(_Tol):
        strict_kinks = True

    c = _check([False, True, False], [True, True, False])
    c.inconclusive_mask = np.array([True, False, False])
    settle_compound_kinks(_report(c), _Problem(), Strict())
    assert c.kink_mask.tolist() == [True, True, False] and c.failed == 2 and not c.passed


def test_settling_without_a_jump_needs_kinks_on_the_path():
    c = _check([True, False, False], [False, False, False])
    settle_compound_kinks(_report(c, kinks=2), _Problem(), LOOSE)
    assert c.passed and c.kinks == 1


def test_compound_kink_below_the_tolerance_is_found_by_its_steady_gap():
    # gradients near atol (dense weights ~3e-7): the kinks' jumps are below the tolerance,
    # yet a tie puts the analytic value 1.3e-7 from the central difference
    doc = {
        "seed": 244,
        "input": {
            "value": [
                [[[2.0, -1.0, 0.0], [0.0, 1.0, 0.0]]],
                [[[0.0, 0.5, 0.0], [-0.5, 0.0, -1.0]]],
            ],
            "batched": True,
        },
        "layers": [
            {
                "type": "conv2d",
                "kernel_size": 3,
                "padding": 1,
                "out_channels": 1,
                "weight": [[[[2 / 3, 0.0, 0.0], [0.0, -1 / 3, -1 / 3], [1 / 3, -1 / 3, 0.0]]]],
                "bias": [0.0],
            },
            {"type": "relu"},
            {"type": "avgpool2d", "kernel_size": 2, "stride": 1},
            {"type": "flatten"},
            {"type": "dense", "out_features": 1, "weight": [[3.5355339059327374e-07, 7.07e-08]]},
            {"type": "dense", "out_features": 3, "weight": [[-1.0], [0.0], [2.0]]},
        ],
        "loss": {"type": "softmax_cross_entropy", "target": [0, 2]},
    }
    report = run_check(problem_from_dict(doc))
    assert report.passed  # within the error estimate, or a kink: never a false alarm


class _Line:
    """f(v) = sum of phi(v): a smooth cubic, |v| (a kink at 0), kinks near 1.5, or noise."""

    def __init__(self, v, kind):
        self.v, self.kind = v, kind
        self.f0 = float(self._f(v[None])[0])
        self.analytic = {"v": np.zeros_like(v)}

    def _f(self, rows):
        if self.kind == "smooth":
            return (rows**3).sum(1)
        if self.kind == "kink":
            return np.abs(rows).sum(1) * 1e-3
        if self.kind == "near":  # kinks 3e-7 and 1.2e-6 away, on either side of 1.5
            return (np.abs(rows - 1.5 - 3e-7) + np.abs(rows - 1.5 + 1.2e-6)).sum(1) * 1e-3
        return 1e3 + 1e-13 * np.random.default_rng(0).standard_normal(len(rows))

    def tensors(self):
        return {"v": self.v}

    def losses(self, tensor, index, delta):
        rows = np.repeat(self.v[None], len(index), axis=0)
        rows[np.arange(len(index)), index] += delta
        return self._f(rows)

    def bytes_per_copy(self, tensor):
        return 8 * self.v.size


@pytest.mark.parametrize(
    ("kind", "expected"), [("smooth", False), ("kink", True), ("noise", False)]
)
def test_a_kink_is_proven_at_the_element_and_told_from_curvature_and_noise(kind, expected):
    """The evidence compound kinks need (engine/kinks.py): a steady gap between the
    one-sided slopes, never a smooth curvature or rounding noise."""
    from gradcheck_cli.engine.compare import Tolerances
    from gradcheck_cli.engine.verdict import judge_elements

    v = np.array([0.0, 0.5, 1.5])
    at = np.array([0 if kind == "kink" else 2])  # the cubic's second derivative is 9 at 1.5
    wrong = np.array([5.0])  # an analytic value nothing agrees with: the rule must look
    verdict = judge_elements(_Line(v, kind), "v", at, wrong, Tolerances(0, 0, 1e-6, False), 1 << 20)
    assert verdict.jump.tolist() == [expected]


def test_kinks_near_the_element_are_left_behind_or_proven():
    from gradcheck_cli.engine.compare import Tolerances
    from gradcheck_cli.engine.verdict import judge_elements

    line = _Line(np.array([0.0, 0.5, 1.5]), "near")
    slope = np.array([0.0])  # between the kinks the slopes cancel: f is flat there
    verdict = judge_elements(
        line, "v", np.array([2]), slope, Tolerances(0, 0, 1e-6, False), 1 << 20
    )
    assert not verdict.failed.any()


def test_kinks_within_the_step_on_both_sides_are_found_by_the_moving_central_difference():
    # twelve ReLU inputs 2e-8..6e-7 from their kink: every step of the bias crosses some
    # on both sides, and no one-sided difference is the derivative at x
    x = [
        [[[-0.443, 0.711, -1.686, 0.478], [1.100, 0.359, 1.238, -0.348]]],
        [[[1.227, 2.285, 0.010, 0.078], [0.343, 0.142, -1.215, -0.379]]],
    ]
    doc = {
        "seed": 244,
        "input": {"value": x, "batched": True},
        "layers": [
            {
                "type": "conv2d",
                "kernel_size": 2,
                "stride": 2,
                "padding": 1,
                "out_channels": 1,
                "weight": [[[[-0.15, 2.5e-07], [2.5e-07, 2.5e-07]]]],
                "bias": [0.0],
            },
            {"type": "relu"},
            {"type": "avgpool2d", "kernel_size": 2, "stride": 1},
            {"type": "flatten"},
            {"type": "dense", "out_features": 1, "weight": [[3.5355339059327374e-07, 7.07e-08]]},
            {"type": "dense", "out_features": 3, "weight": [[-1.0], [0.0], [2.0]]},
        ],
        "loss": {"type": "softmax_cross_entropy", "target": [0, 2]},
    }
    report = run_check(problem_from_dict(doc))
    assert report.passed
