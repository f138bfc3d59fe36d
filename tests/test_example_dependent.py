"""Layers whose rows depend on which example they are (a fixed mask per example, as the
built-in dropout's mask for row r mod N).

The numeric side runs a perturbed copy's rows alone where every layer below is batch
independent: an input element of example 1 runs example 1's row only. A layer whose
result follows the row's position then saw that row at position 0 and used example 0's
mask: a batched input before a dropout got numeric values of 1e6 where the gradient was
2, which the compound-kink rule then excused as kinks (found by a hunt on fresh layers;
the first case below). Now

- a layer declaring ``example_dependent`` (dropout) gets its rows at positions of their
  own example's residue mod N, and the input's numeric values are right;
- a plugin whose rows follow r mod N without declaring it is found by the purity probe
  (rows moved one place) and checked one copy at a time, with a warning;
- declaring it, the same plugin is checked row-wise, with no warning.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc
from gradcheck_cli.config import problem_from_dict
from gradcheck_cli.engine import run_check
from gradcheck_cli.layers.dropout import dropout_mask


class _ExampleMask(gc.Layer):
    """y = x * m[r mod N], m a fixed mask per example (N from the config's batch)."""

    batch_independent = True
    wants_batch_size = True

    def __init__(self, seed: int = 0, batch_size: int = 1):
        self.seed, self.batch_size = seed, batch_size

    def output_shape(self, in_shape):
        return in_shape

    def _mask(self, x):
        full = np.random.default_rng(self.seed).uniform(0.5, 2.0, (self.batch_size, *x.shape[1:]))
        return full[np.arange(len(x)) % self.batch_size]

    def forward(self, x, params):
        m = self._mask(x)
        return x * m, m

    def backward(self, dy, cache, params):
        return dy * cache, {}


class ExampleMaskUndeclared(_ExampleMask):
    pass


class ExampleMaskDeclared(_ExampleMask):
    example_dependent = True


def network(n: int, rng, middle: dict, before: list[dict], wrong_sign: bool = False) -> dict:
    d = 4
    layers = [
        {
            "type": "dense",
            "name": "d",
            "out_features": d,
            "weight": (rng.standard_normal((d, 3)) * 0.7).tolist(),
            "bias": (rng.standard_normal(d) * 0.1).tolist(),
        },
        *before,
        middle,
        {"type": "tanh"},
    ]
    if wrong_sign:
        layers.insert(1, {"type": "test_flipped_tanh", "name": "bad"})
    return {
        "seed": 0,
        "input": {"value": rng.standard_normal((n, 3)).tolist(), "batched": True},
        "layers": layers,
        "loss": {"type": "upstream", "grad": rng.standard_normal((n, d)).tolist()},
    }


class FlippedTanh(gc.Layer):
    """tanh with its derivative's sign flipped: a wrong layer before the mask."""

    batch_independent = True

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, x, params):
        y = np.tanh(x)
        return y, y

    def backward(self, dy, cache, params):
        return -dy * (1 - cache**2), {}


def clean(report, tensor="input"):
    (check,) = [c for c in report.checks if c.name == tensor]
    return check.passed and check.kinks == 0 and check.inconclusive == 0


def test_the_found_case_dropout_after_a_batched_dense_layer():
    """The hunt's case: E = sum(G * dropout(W x + b)), W = I: dE/dx = 2 G mask exactly."""
    cfg = {
        "input": {"value": [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], "batched": True},
        "layers": [
            {
                "type": "dense",
                "name": "d",
                "out_features": 3,
                "weight": np.eye(3).tolist(),
                "bias": [0, 0, 0],
            },
            {"type": "dropout", "name": "drop", "p": 0.5, "seed": 1},
        ],
        "loss": {"type": "upstream", "grad": [[1, 2, 3], [4, 5, 6]]},
    }
    report = run_check(problem_from_dict(cfg))
    assert report.passed and clean(report)
    (check,) = [c for c in report.checks if c.name == "input"]
    assert np.allclose(check.numeric, check.analytic, rtol=1e-9, atol=1e-9)


DROPOUT = st.builds(
    lambda p, seed: {"type": "dropout", "name": "m", "p": p, "seed": seed},
    st.sampled_from([0.2, 0.5, 0.8]),
    st.integers(0, 1000),
)
MASKS = st.builds(
    lambda kind, seed: {"type": kind, "name": "m", "seed": seed},
    st.sampled_from(["test_example_mask_undeclared", "test_example_mask_declared"]),
    st.integers(0, 1000),
)
BEFORE = st.lists(
    st.sampled_from([{"type": "sigmoid"}, {"type": "tanh"}, {"type": "gelu"}]), max_size=2
)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**32 - 1), st.one_of(DROPOUT, MASKS), BEFORE)
def test_a_correct_network_with_an_example_mask_checks_its_input_cleanly(n, seed, mask, before):
    rng = np.random.default_rng(seed)
    report = run_check(problem_from_dict(network(n, rng, mask, before)))
    assert report.passed and report.blamed_layers() == []
    for c in report.checks:
        assert clean(report, c.name), c.name
    warned = any("example_dependent" in w for w in report.warnings)
    assert warned == (mask["type"] == "test_example_mask_undeclared")


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(0, 2**32 - 1), st.one_of(DROPOUT, MASKS))
def test_a_wrong_layer_before_an_example_mask_fails_the_input(n, seed, mask):
    rng = np.random.default_rng(seed)
    report = run_check(problem_from_dict(network(n, rng, mask, [], wrong_sign=True)))
    (check,) = [c for c in report.checks if c.name == "input"]
    if mask["type"] == "dropout" and not dropout_mask(mask["seed"], mask["p"], (n, 4)).any():
        assert report.passed  # every unit dropped: no gradient reaches the wrong layer
        return
    assert not report.passed
    # the input is judged, not excused: a wrong element fails (a dropped unit's are 0)
    assert check.failed > 0 and check.kinks == 0 and check.inconclusive == 0
    assert report.blamed_layers() == ["bad"]


@pytest.mark.parametrize("n", [1, 3])
def test_the_probe_allows_a_declared_example_mask_and_finds_an_undeclared_one(n):
    rng = np.random.default_rng(n)
    for kind, warned in (
        ("test_example_mask_undeclared", n > 1),
        ("test_example_mask_declared", False),
    ):
        report = run_check(problem_from_dict(network(n, rng, {"type": kind, "name": "m"}, [])))
        assert report.passed
        found = [p for v in report.layers for p in v.problems if p.kind == "not_batch_independent"]
        assert bool(found) == warned, kind


@pytest.fixture(scope="module", autouse=True)
def _layers():
    """The test's layer types, registered for this module only."""
    with registry_kept():
        gc.register_layer("test_example_mask_undeclared")(ExampleMaskUndeclared)
        gc.register_layer("test_example_mask_declared")(ExampleMaskDeclared)
        gc.register_layer("test_flipped_tanh")(FlippedTanh)
        yield
