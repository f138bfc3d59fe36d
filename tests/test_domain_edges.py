"""Steps past the edge of the forward's domain: an element of 1.5e-7 among values of 0.5
steps by 5e-7 (its step is floored at the tensor's scale), so a log of it, or of the
probability a softmax gives it, is taken of a negative number. A hunt found correct
networks ending in a cross-entropy of a small probability stopping with exit 3 ("a
perturbed forward pass gave NaN or Inf") in full, sampled and Taylor modes. The first
steps of such an element are now made ten-fold smaller until they stay in the domain
(verdict.DOMAIN_SHRINKS); the verdict is then taken as usual.
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

#: The first steps of a small element take the log of a negative number before they
#: shrink back into its domain, which is the point of these tests: numpy warns each time.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")


class Log(gc.Layer):
    """y = log(x); ``off`` adds a wrong term to the derivative (1/x + off)."""

    batch_independent = True

    def __init__(self, off: float = 0.0):
        self.off = off

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, x, params):
        return np.log(x), x

    def backward(self, dy, cache, params):
        return dy * (1.0 / cache + self.off / cache), {}


SMALL = st.floats(-9.0, -5.0).map(lambda e: 10.0**e)


@settings(max_examples=40, deadline=None)
@given(st.lists(SMALL, min_size=1, max_size=3), st.integers(0, 2**32 - 1))
def test_a_log_of_small_values_among_large_ones_is_checked(small, seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(0.2, 1.0, 5), small])
    g = rng.uniform(-1, 1, len(x)).tolist()
    ok = {
        "input": x.tolist(),
        "layers": [{"type": "test_log", "name": "log"}],
        "loss": {"type": "upstream", "grad": g},
    }
    assert run_check(problem_from_dict(ok)).passed
    wrong = dict(ok, layers=[{"type": "test_log", "name": "log", "off": 1e-3}])
    report = run_check(problem_from_dict(wrong))
    assert not report.passed and report.blamed_layers() == ["log"]


@settings(max_examples=30, deadline=None)
@given(st.lists(SMALL, min_size=1, max_size=3), st.integers(0, 9), st.booleans())
def test_a_cross_entropy_of_a_small_probability_is_checked(small, target, through_softmax):
    rest = 6 - len(small)
    p = np.array([*small, *([(1.0 - sum(small)) / rest] * rest)])
    if through_softmax:  # logits whose softmax gives the small probabilities
        cfg = {"input": np.log(p).tolist(), "layers": [{"type": "softmax", "name": "sm"}]}
    else:  # the probabilities themselves
        cfg = {"input": p.tolist(), "layers": [{"type": "flatten", "name": "f"}]}
    cfg["loss"] = {"type": "cross_entropy", "target": target % len(p)}
    report = run_check(problem_from_dict(cfg))
    assert report.passed, [(c.name, c.failed, c.inconclusive) for c in report.checks]


def test_the_found_case():
    cfg = {
        "input": [1.0, 1.0],
        "layers": [
            {
                "type": "dense",
                "name": "d",
                "out_features": 3,
                "weight": [[5, 0], [0, 5], [-5, -5]],
                "bias": [0, 0, 0],
            },
            {"type": "softmax", "name": "sm"},
        ],
        "loss": {"type": "cross_entropy", "target": 2},
    }
    assert run_check(problem_from_dict(cfg)).passed


@pytest.fixture(scope="module", autouse=True)
def _layers():
    """The test's layer types, registered for this module only."""
    with registry_kept():
        gc.register_layer("test_log")(Log)
        yield
