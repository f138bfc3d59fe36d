"""Ties of three or more: a sort, a k-th largest (engine/kinks.py ``break_ties``).

At a tie of three, an element moved alone reaches only its highest and its lowest place
in the tie: a sort's middle slot, or a k-th largest whose tie spans ranks k-1 to k+1
(moved alone, the element changes nothing, both slopes 0), is a place no single move
reaches, and a correct backward that put the element there failed, blamed (a known
limit since the shift test's first hunt). Its partners moved apart, r of them up for
every r, the element holds each place once, and its analytic value is checked there.
These tests fail without it; the bugs still fail, blamed.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc

#: the property draw's MSE target (test_an_isolated_layer_step_below_its_rounding...)
TARGET = [
    -0.810101144054719,
    0.8522007418331898,
    -0.16058419880945068,
    0.8344095342310305,
    1.0991205843689125,
    1.4650375351807148,
    -1.0133023409313475,
    0.4065459410213364,
    1.1837824918024638,
    -0.9329406246262966,
    1.1204210983986793,
    0.7521416777636927,
    0.8676589760376351,
    0.046734923061068995,
    -0.6365519221108704,
    -2.2100764461552354,
    -0.46988659005150896,
    1.0445905982018795,
    0.21221097386220286,
    3.3115733518569246,
    0.1203626618249551,
    -0.3972114485914749,
    -0.4599013424179903,
    -0.5378491016064045,
    -0.5933630848450253,
    -0.7326749627509733,
    -0.7283957835329974,
    -0.9601427848903312,
    -0.355495578027674,
    -2.0881444360791344,
    0.6914413712277556,
    -0.6571823496123275,
    -0.458451830760111,
    0.5862211428709292,
    0.03175338332391852,
    0.21557459428024006,
]
#: full, --fast, --sample 5: the options of gradcheck_cli.check
MODES = [{}, {"fast": True}, {"sample": 5}]


class KthLargest(gc.Layer):
    """(N, D) -> (N, 1): each row's k-th largest. ``rule``: ``pick`` sends the delta to
    the element a stable argsort puts at rank k (right); ``double`` sends twice the
    delta there, ``neg`` its negative (bugs)."""

    batch_independent = True
    kinks = "ties"

    def __init__(self, k: int = 2, rule: str = "pick"):
        self.k, self.rule = k, rule

    def output_shape(self, shape):
        return (1,)

    def forward(self, x, params):
        pick = np.argsort(-x, axis=1, kind="stable")[:, self.k - 1]
        return x[np.arange(len(x)), pick][:, None], (x.shape, pick)

    def backward(self, dy, cache, params):
        shape, pick = cache
        factor = {"pick": 1.0, "double": 2.0, "neg": -1.0}[self.rule]
        dx = np.zeros(shape)
        dx[np.arange(len(pick)), pick] = factor * dy[:, 0]
        return dx, {}


class Sort(gc.Layer):
    """(N, D) -> (N, D): each row sorted, largest first. ``rule``: ``stable`` routes each
    slot's delta back to the element a stable argsort put there, ``mean`` gives every
    element of a tie the mean of its slots' deltas (both right: a permutation, and a
    convex combination of them); ``tiesum`` gives each tied element the sum (a bug)."""

    batch_independent = True
    kinks = "ties"

    def __init__(self, rule: str = "stable"):
        self.rule = rule

    def output_shape(self, shape):
        return shape

    def forward(self, x, params):
        order = np.argsort(-x, axis=1, kind="stable")
        return np.take_along_axis(x, order, axis=1), (x, order)

    def backward(self, dy, cache, params):
        x, order = cache
        dx = np.zeros_like(dy)
        np.put_along_axis(dx, order, dy, axis=1)
        if self.rule != "stable":
            for i in range(len(x)):
                for v in np.unique(x[i]):
                    tie = x[i] == v
                    if tie.sum() > 1:
                        total = dx[i, tie].sum()
                        dx[i, tie] = total / tie.sum() if self.rule == "mean" else total
        return dx, {}


@pytest.fixture(scope="module", autouse=True)
def _layers():
    with registry_kept():
        gc.register_layer("test_kth_largest")(KthLargest)
        gc.register_layer("test_sort")(Sort)
        yield


def tied_rows(rng, n: int, d: int, ways: int) -> np.ndarray:
    """(n, d) values in halves (so that other ties occur too), each row holding a tie of
    ``ways`` equal values at random places."""
    x = np.round(rng.standard_normal((n, d)) * 2) / 2
    for row in x:
        row[rng.permutation(d)[:ways]] = row[0]
    return x


def network(rng, layer: dict, ways: int) -> dict:
    n, d = int(rng.integers(1, 4)), int(rng.integers(ways + 1, 8))
    return {
        "seed": int(rng.integers(0, 2**31)),
        "input": {"value": tied_rows(rng, n, d, ways).tolist(), "batched": True},
        "layers": [layer, {"type": "dense", "name": "head", "out_features": 3}],
        "loss": {"type": "softmax_cross_entropy", "target": rng.integers(0, 3, n).tolist()},
    }


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["kth2", "kth3", "stable", "mean"]),
    st.sampled_from([3, 4]),
    st.sampled_from(range(len(MODES))),
)
def test_right_sorts_and_kth_largest_pass_at_multiway_ties(seed, which, ways, mode):
    if which.startswith("kth"):
        layer = {"type": "test_kth_largest", "name": "s", "k": int(which[3])}
    else:
        layer = {"type": "test_sort", "name": "s", "rule": which}
    cfg = network(np.random.default_rng(seed), layer, ways)
    report = gc.check(cfg, jobs=1, **MODES[mode])
    assert report.exit_code == 0, (which, ways, mode, report.blamed_layers())


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["double", "neg", "tiesum"]),
    st.sampled_from([3, 4]),
    st.sampled_from(range(len(MODES))),
)
def test_wrong_ones_still_fail_blamed(seed, rule, ways, mode):
    """Twice or minus the delta at the k-th largest, a sort giving each tied element its
    tie's whole sum: each fails with the layer blamed wherever it changes dx (for the
    sum: wherever a tie's slots' deltas do not sum to 0)."""
    if rule == "tiesum":
        layer = {"type": "test_sort", "name": "s", "rule": rule}
    else:
        layer = {"type": "test_kth_largest", "name": "s", "k": 2, "rule": rule}
    cfg = network(np.random.default_rng(seed), layer, ways)
    report = gc.check(cfg, jobs=1, **MODES[mode])
    assert report.exit_code == 1, (rule, ways, mode)
    assert report.blamed_layers() == ["s"]


def test_a_right_sort_of_three_zeros_passes():
    """The smallest case: three zeros among distinct values, sorted and weighed. (Zeros
    that are each a ReLU's own kink are not excused by moving the others: a derivative
    of 2 at 0 still fails, tests/test_kinks.py.)"""
    sort = {
        "input": {"value": [[0.0, 1.5, 0.0, -0.5, 0.0, 0.8]], "batched": True},
        "layers": [{"type": "test_sort", "name": "s"}],
        "loss": {"type": "upstream", "grad": [[0.3, -0.7, 0.2, 0.1, 0.5, -0.4]]},
    }
    assert gc.check(sort, jobs=1).exit_code == 0


def test_an_isolated_layer_step_below_its_rounding_is_not_a_failure():
    """A property draw: batchnorm with gammas of 1e-7 (outputs within 1e-13 of 0 in one
    channel), ReLU, and add. The ReLU's shift test started at a step of 2e-17, where its
    energy's change was below the energy's rounding: slope 0 measured, 1.5 analytic, and
    a tolerance from |f0| that the terms' cancellation made small. The floor is now the
    terms' magnitude (engine/fast.py ``_Line.rounding``)."""
    x = [
        [[-0.01, 0.02], [-0.005, 0.01], [-0.01, -0.01], [0.0, 0.0], [-0.01, 0.005], [0.0, 0.005]],
        [[-0.01, 0.0], [0.0, 0.01], [0.02, -0.01], [0.02, 0.0], [0.0, 0.0], [0.02, 0.01]],
        [
            [0.0, 0.005],
            [0.01, 0.02],
            [0.02, 0.005],
            [0.005, 0.005],
            [-0.005, -0.005],
            [-0.005, -0.01],
        ],
    ]
    cfg = {
        "seed": 191,
        "input": x,
        "layers": [
            {
                "type": "batchnorm",
                "gamma": [-5e-07, 3e-07, 5e-13],
                "beta": [0.3729388376941032, 0.3685499736133155, 0.0],
                "name": "v1",
            },
            {"type": "relu", "name": "v2"},
            {"type": "add", "inputs": ["v1", "v2"]},
            {"type": "flatten"},
            {"type": "layernorm"},
        ],
        "loss": {"type": "mse", "target": TARGET},
    }
    report = gc.check(cfg, jobs=1)
    assert report.exit_code in (0, 3) and report.blamed_layers() == []


class L2Norm(gc.Layer):
    """y = x / sqrt(sum x^2 + 1e-3) per row: smooth, every output coupled to every input."""

    batch_independent = True

    def output_shape(self, shape):
        return shape

    def forward(self, x, params):
        n = np.sqrt((x * x).sum(axis=1, keepdims=True) + 1e-3)
        return x / n, (x, n)

    def backward(self, dy, cache, params):
        x, n = cache
        return dy / n - x * (dy * x).sum(axis=1, keepdims=True) / n**3, {}


def test_a_smooth_layer_whose_slope_follows_the_moves_is_no_tie():
    """Equal inputs of a smooth layer that couples them: moving the partners changes the
    element's slope in proportion to the move, not by a tie's piece. An analytic value
    equal to the slope at one moved point (wrong at the real point) must not be excused:
    the slope at half the moves differs, so break_ties says nothing."""
    from gradcheck_cli.api import load
    from gradcheck_cli.engine import kinks
    from gradcheck_cli.engine.check import tolerances
    from gradcheck_cli.engine.elements import check_elements
    from gradcheck_cli.engine.isolation import objectives
    from gradcheck_cli.engine.objective import NetworkObjective
    from gradcheck_cli.engine.passes import analytic_pass, problem_params

    cfg = {
        "input": {"value": [[1.0, 1.0, 1.0, -2.0, 0.5]], "batched": True},
        "layers": [{"type": "test_l2_norm", "name": "n"}],
        "loss": {"type": "upstream", "grad": [[0.3, -0.7, 1.1, 0.4, -0.2]]},
    }
    with registry_kept():
        gc.register_layer("test_l2_norm")(L2Norm)
        problem = load(cfg)
        trace, grads = analytic_pass(problem, problem_params(problem))
        net = NetworkObjective.build(problem, trace, grads, problem_params(problem, np.float64))
        tol = tolerances(problem)[0]
        (obj,) = [o for name, _, o in objectives(problem, net, trace, grads) if name == "n"]
        # the slope of element 0 with its partners 1 and 2 moved as break_ties moves them
        # at r = 0 (both down): an analytic value "right" there
        spacing = kinks.TIE_SPREAD * 1.0 / 3
        moved = kinks._moved(obj, "input", np.array([1, 2]), -spacing * np.array([1.0, 2.0]))
        there = check_elements(moved, "input", np.array([0]), tol, 1 << 28).numeric[0]
        obj.analytic = {**obj.analytic, "input": obj.analytic["input"].copy()}
        obj.analytic["input"].reshape(-1)[0] = there
        v = check_elements(obj, "input", np.array([0]), tol, 1 << 28)
        assert v.failed[0]  # wrong at the real point
        after = kinks.break_ties(obj, "input", np.array([0]), v, tol, 1 << 28)
        assert after.failed[0] and not after.kink[0]


def test_fast_mode_isolates_the_layers_after_a_direction_disagreed():
    """A fresh draw: a sort of four tied zeros (and -0.5) giving each tied element its
    tie's whole delta. Under --fast every random direction disagreed, the input's
    elements then each passed alone (at the noise floor, no kink proven), and the run
    passed with the layers' isolation skipped. A pass after a disagreeing direction now
    isolates each layer direction first, as one with kinks does: the sort fails blamed."""
    with registry_kept():
        gc.register_layer("test_sort")(Sort)
        cfg = {
            "input": {"value": [[-0.0, -0.0, -0.0, -0.5, -0.0]], "batched": True},
            "layers": [
                {"type": "test_sort", "name": "s", "rule": "tiesum"},
                {"type": "dense", "name": "head", "out_features": 3},
            ],
            "loss": {"type": "softmax_cross_entropy", "target": [1]},
            "seed": 208320286,  # the draw's: the head's weights
        }
        wrong = gc.check(cfg, jobs=1, fast=True)
        assert wrong.exit_code == 1 and wrong.blamed_layers() == ["s"]
        cfg["layers"][0]["rule"] = "stable"
        assert gc.check(cfg, jobs=1, fast=True).exit_code == 0
