"""Ties that involve a layer's parameters (engine/shift.py, engine/isolation.py ``joined``).

A hunt on the shift test found three layers routing a tie's delta wrong passing in every
mode, float64 and float32, because the shift test moved a layer's inputs only: PACT's
clip(x, 0, alpha) with x equal to its learned bound alpha, and max(x, t) with x equal to
its learned floor t, each sending the delta to both x and the parameter (moved together
by s, the output moves by s, so dx + dparam must be the delta, not twice it); and a gain
taken as the max of a weight row, with tied maxima in the row (the delta to every tied
maximum, or half of it to the first). The shift tests now move parameters as inputs are
moved: a parameter's own ties, and ties across the inputs and parameters of a layer.
The layers are the hunt's.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc

#: full, --fast, --sample 5: the options of gradcheck_cli.check
MODES = [{}, {"fast": True}, {"sample": 5}]


class Pact(gc.Layer):
    """y = clip(x, 0, alpha), alpha a learned bound per feature. ``ok``: dx = dy on
    0 < x < alpha, dalpha = sum dy (x >= alpha); ``both`` (the bug): dx = dy on
    0 < x <= alpha, so a tie x == alpha sends dy to x and to alpha."""

    param_names = ("alpha",)
    batch_independent = True
    kinks = "x = 0, x = alpha"

    def __init__(self, rule: str = "ok"):
        self.rule = rule

    def output_shape(self, s):
        return s

    def init_params(self, s, rng):
        return {"alpha": np.ones(s)}

    def forward(self, x, params):
        return np.minimum(np.maximum(x, 0.0), params["alpha"]), x

    def backward(self, dy, x, params):
        a = params["alpha"]
        inside = (x > 0) & ((x < a) if self.rule == "ok" else (x <= a))
        return dy * inside, {"alpha": (dy * (x >= a)).sum(axis=0)}


class Floor(gc.Layer):
    """y = max(x, t), t a learned floor per feature. ``ok``: dx = dy (x > t), dt = sum
    dy (x <= t); ``both`` (the bug): dx = dy (x >= t)."""

    param_names = ("t",)
    batch_independent = True
    kinks = "x = t"

    def __init__(self, rule: str = "ok"):
        self.rule = rule

    def output_shape(self, s):
        return s

    def init_params(self, s, rng):
        return {"t": np.zeros(s)}

    def forward(self, x, params):
        return np.maximum(x, params["t"]), x

    def backward(self, dy, x, params):
        t = params["t"]
        above = (x > t) if self.rule == "ok" else (x >= t)
        return dy * above, {"t": (dy * (x <= t)).sum(axis=0)}


class RowMax(gc.Layer):
    """y[n, o] = x[n, o] * max_j W[o, j]: a gain per feature, the max of a weight row.
    ``first`` tied maximum gets the gradient (right); ``all`` of them, or ``half`` of it
    to the first (bugs)."""

    param_names = ("weight",)
    batch_independent = True
    kinks = "ties in weight rows"

    def __init__(self, rule: str = "first", width: int = 3):
        self.rule, self.width = rule, width

    def output_shape(self, s):
        return s

    def init_params(self, s, rng):
        return {"weight": rng.uniform(0.5, 1.5, size=(s[0], self.width))}

    def forward(self, x, params):
        return x * params["weight"].max(axis=1), x

    def backward(self, dy, x, params):
        w = params["weight"]
        top = w == w.max(axis=1, keepdims=True)
        first = np.zeros_like(w)
        first[np.arange(len(w)), top.argmax(axis=1)] = 1.0
        route = {"first": first, "all": top * 1.0, "half": 0.5 * first}[self.rule]
        gain = (dy * x).sum(axis=0)
        return dy * w.max(axis=1), {"weight": route * gain[:, None]}


@pytest.fixture(scope="module", autouse=True)
def _layers():
    with registry_kept():
        gc.register_layer("test_pact")(Pact)
        gc.register_layer("test_floor")(Floor)
        gc.register_layer("test_row_max")(RowMax)
        yield


UPSTREAM = [[0.7, -1.1, 0.4], [0.9, 0.6, -0.5]]
FOUND = {
    # x[0, 1] = x[1, 0] = alpha = 1
    "pact": ([[0.3, 1.0, -0.2], [1.0, 0.5, 1.4]], {"alpha": [1.0, 1.0, 1.0]}, UPSTREAM),
    # x[0, 1] = x[1, 0] = t = 0
    "floor": ([[0.3, 0.0, -0.2], [0.0, 0.5, 1.4]], {"t": [0.0, 0.0, 0.0]}, UPSTREAM),
    # rows with two tied maxima each
    "row_max": (
        [[0.3, 1.2], [0.8, -0.5]],
        {"weight": [[0.9, 1.1, 1.1], [1.3, 0.7, 1.3]]},
        [[0.7, -1.1], [0.9, 0.6]],
    ),
}
RULES = {"pact": ("ok", "both"), "floor": ("ok", "both"), "row_max": ("first", "all")}


def config(which: str, rule: str, x, params, grad) -> dict:
    return {
        "input": {"value": x, "batched": True},
        "layers": [{"type": f"test_{which}", "name": "l", "rule": rule, **params}],
        "loss": {"type": "upstream", "grad": grad},
    }


@pytest.mark.parametrize("which", sorted(FOUND))
@pytest.mark.parametrize("mode", range(len(MODES)))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_found_cases(which, mode, dtype):
    """The right rule passes; the wrong one fails, the layer blamed. In float32, where
    every network gradient agrees within its estimate, a layer wrong only in isolation
    makes the run inconclusive (exit 3, contract section 5), never a pass."""
    right, wrong = RULES[which]
    cfg = config(which, right, *FOUND[which]) | {"dtype": dtype}
    report = gc.check(cfg, jobs=1, **MODES[mode])
    assert report.exit_code == 0 and report.blamed_layers() == [], report.blamed_layers()
    cfg = config(which, wrong, *FOUND[which]) | {"dtype": dtype}
    report = gc.check(cfg, jobs=1, **MODES[mode])
    if dtype == "float32" and report.exit_code == 3:
        assert report.disagreeing_layers() == ["l"] and not report.passed
    else:
        assert report.exit_code == 1 and report.blamed_layers() == ["l"]


def test_half_the_delta_to_a_tied_weight_fails_too():
    cfg = config("row_max", "half", *FOUND["row_max"])
    report = gc.check(cfg, jobs=1)
    assert report.exit_code == 1 and report.blamed_layers() == ["l"]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["pact", "floor"]), st.booleans())
def test_random_ties_with_a_learned_bound(seed, which, wrong):
    """Inputs drawn in quarters, some set equal to their feature's bound (or floor):
    the right rule passes in every mode; the delta to both fails, blamed."""
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(1, 4)), int(rng.integers(2, 6))
    bound = np.round(rng.uniform(0.25, 1.5, d) * 4) / 4
    x = np.round(rng.uniform(-1, 2, (n, d)) * 4) / 4
    tie = rng.random((n, d)) < 0.4
    tie[0, 0] = True
    x[tie] = np.broadcast_to(bound, (n, d))[tie]
    grad = rng.uniform(0.5, 2.0, (n, d)) * rng.choice([-1.0, 1.0], (n, d))
    name = "alpha" if which == "pact" else "t"
    if which == "floor":
        bound = bound - 1.0  # a floor below 0 as often as above
        x[tie] = np.broadcast_to(bound, (n, d))[tie]
    rule = "both" if wrong else "ok"
    cfg = config(which, rule, x.tolist(), {name: bound.tolist()}, grad.tolist())
    for mode in MODES:  # x[0, 0] is a tie, its delta nonzero: the bug always bites
        report = gc.check(cfg, jobs=1, **mode)
        if wrong:
            assert report.exit_code == 1 and report.blamed_layers() == ["l"], mode
        else:
            assert report.exit_code == 0, (mode, report.blamed_layers())
