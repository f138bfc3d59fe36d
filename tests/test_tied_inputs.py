"""Ties across the inputs of a layer of several: an element-wise max of two inputs.

Where two inputs of ``maximum(a, b)`` are equal (zeros on both sides after their ReLUs,
or one value read twice), each input alone sits at a kink: moved up, it raises the max
by its move; moved down, it leaves the max to the other. Any dx between 0 and the delta
is within that input's one-sided slopes, so the element-wise checks of each input pass
the classic ``mask = (a >= b)``, ``mask = (b >= a)`` backward, which routes the delta to
both. Moved together, the two raise the max by one move: a valid subgradient's two
parts sum to the delta, and the joint shift test (engine/shift.py ``joint_shift_test``)
pins that sum. These tests fail without it (the routing to both passed in every mode).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc
from gradcheck_cli.engine.fast import ISOLATION_SKIPPED
from gradcheck_cli.engine.shift import ties_across

#: full, --fast, --sample 5: the options of gradcheck_cli.check
MODES = [{}, {"fast": True}, {"sample": 5}]
#: where a tie's delta goes: to a, to b, half to each (valid); to both, or the whole to
#: a and half to b (bugs)
RIGHT = ["first", "second", "split"]
WRONG = ["both", "half_more"]


class PairMax(gc.Layer):
    """y = max(a, b) element-wise (``sign`` -1: min), over two inputs of one shape;
    ``rule`` says where the delta of a tie goes (module docstring)."""

    n_inputs = 2
    batch_independent = True
    kinks = "ties"

    def __init__(self, rule: str = "first", sign: float = 1.0):
        self.rule, self.sign = rule, float(sign)

    def output_shape(self, shapes):
        return shapes[0]

    def forward(self, xs, params):
        a, b = xs
        return self.sign * np.maximum(self.sign * a, self.sign * b), (a, b)

    def backward(self, dy, cache, params):
        a, b = (self.sign * v for v in cache)
        tie = a == b
        to_a = (a > b).astype(float)
        to_b = (b > a).astype(float)
        share = {"first": (1.0, 0.0), "second": (0.0, 1.0), "split": (0.5, 0.5)}
        share |= {"both": (1.0, 1.0), "half_more": (1.0, 0.5)}
        sa, sb = share[self.rule]
        return ((to_a + sa * tie) * dy, (to_b + sb * tie) * dy), {}


@pytest.fixture(scope="module", autouse=True)
def _layers():
    with registry_kept():
        gc.register_layer("test_pair_max")(PairMax)
        yield


def network(rng, rule: str, shape: str, sign: float = 1.0) -> dict:
    """Two branches into the pair max, then a dense head: ``relu`` ties where both
    branches' ReLUs are 0, ``same`` reads one value twice (every element tied), ``some``
    copies part of one branch into the other."""
    n, d, k = int(rng.integers(1, 4)), int(rng.integers(2, 6)), int(rng.integers(3, 7))
    x = rng.standard_normal((n, d))
    dense = {"type": "dense", "out_features": k}
    if shape == "same":
        layers = [
            {**dense, "name": "a", "inputs": ["input"]},
            {"type": "tanh", "name": "ta"},
            {
                "type": "test_pair_max",
                "name": "m",
                "rule": rule,
                "sign": sign,
                "inputs": ["ta", "ta"],
            },
        ]
    else:
        second = {**dense, "name": "b", "inputs": ["input"]}
        if shape == "some":  # b's first rows are a's: ties wherever they meet
            w = rng.standard_normal((k, d))
            w2 = rng.standard_normal((k, d))
            w2[: k // 2] = w[: k // 2]
            bias = rng.standard_normal(k)
            first = {
                **dense,
                "name": "a",
                "inputs": ["input"],
                "weight": w.tolist(),
                "bias": bias.tolist(),
            }
            second |= {"weight": w2.tolist(), "bias": bias.tolist()}
            act = "tanh"
        else:
            first = {**dense, "name": "a", "inputs": ["input"]}
            act = "relu"
        layers = [
            first,
            {"type": act, "name": "ra", "inputs": ["a"]},
            second,
            {"type": act, "name": "rb", "inputs": ["b"]},
            {
                "type": "test_pair_max",
                "name": "m",
                "rule": rule,
                "sign": sign,
                "inputs": ["ra", "rb"],
            },
        ]
    layers.append(
        {"type": "dense", "name": "head", "out_features": 3, "inputs": [layers[-1]["name"]]}
    )
    return {
        "seed": int(rng.integers(0, 2**31)),
        "input": {"value": x.tolist(), "batched": True},
        "layers": layers,
        "loss": {"type": "softmax_cross_entropy", "target": rng.integers(0, 3, n).tolist()},
    }


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(RIGHT),
    st.sampled_from(["relu", "same", "some"]),
    st.sampled_from(range(len(MODES))),
    st.sampled_from([1.0, -1.0]),
)
def test_every_valid_tie_break_passes(seed, rule, shape, mode, sign):
    cfg = network(np.random.default_rng(seed), rule, shape, sign)
    report = gc.check(cfg, jobs=1, **MODES[mode])
    assert report.exit_code == 0, (rule, shape, report.blamed_layers())
    assert report.blamed_layers() == []


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(WRONG),
    st.sampled_from(["relu", "same", "some"]),
    st.sampled_from(range(len(MODES))),
    st.sampled_from([1.0, -1.0]),
)
def test_a_tie_routed_wrong_fails_blamed(seed, rule, shape, mode, sign):
    """Routing a tie's delta to both inputs (or 1.5 times it) fails, the max blamed,
    wherever a tie carries a delta."""
    rng = np.random.default_rng(seed)
    cfg = network(rng, rule, shape, sign)
    report = gc.check(cfg, jobs=1, **MODES[mode])
    if not _tie_carries_delta(cfg):
        assert report.blamed_layers() in ([], ["m"])
        return
    if report.exit_code == 0 and MODES[mode] == {"fast": True}:
        # ties only at ReLU zeros leave every network gradient right: fast mode then
        # checks no layer alone, and says so
        assert shape == "relu" and ISOLATION_SKIPPED in report.warnings
        return
    assert report.exit_code == 1, (rule, shape, mode)
    assert report.blamed_layers() == ["m"]
    (m,) = [v for v in report.layers if v.name == "m"]
    assert "together" in (m.diagnosis or "")


def _tie_carries_delta(cfg: dict) -> bool:
    """Some element where the max's two inputs are equal and its delta (what the head
    sends down) is nonzero: the network run once, forward and backward."""
    from gradcheck_cli.api import load
    from gradcheck_cli.engine.passes import analytic_pass, problem_params

    problem = load(cfg)
    trace, grads = analytic_pass(problem, problem_params(problem))
    a, b = trace.inputs_of(problem.network.node("m"))
    return bool(((a == b) & (grads.deltas["m"] != 0)).any())


def test_ties_across_finds_equal_values_in_other_inputs_only():
    xs = {"a": np.array([[0.0, 1.0, 2.0]]), "b": np.array([[0.0, 5.0, 1.0]])}
    found = ties_across(xs)
    assert found["a"].tolist() == [0, 1] and found["b"].tolist() == [0, 2]
    assert ties_across({"a": np.array([1.0, 1.0])})["a"].tolist() == []
