"""A forward that raises past its domain (engine/domain.py).

Scalar code (micrograd-style ``math.log``, ``math.sqrt``) raises ``ValueError: math
domain error`` where numpy would give NaN. A hunt found a correct ``math.log`` after a
softmax with a probability of 1.1e-7 ending the run with exit 2 ("the config is
invalid") in full, sample and Taylor mode: a step of 5e-7 crossed 0 in the layer's own
isolated check. Such a copy is now NaN, and the steps shrink as they do for numpy's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc
from gradcheck_cli.errors import PluginError

MODES = [{}, {"fast": True}, {"sample": 4}, {"method": "taylor"}]


class ScalarFunction(gc.Layer):
    """y = f(x) element by element in Python floats (``math.log`` or ``math.sqrt``:
    both raise below 0); ``bug``: the backward's slope times 1.01."""

    batch_independent = True

    def __init__(self, fn: str = "log", bug: bool = False):
        self.fn, self.bug = fn, bug

    def output_shape(self, s):
        return s

    def forward(self, x, params):
        f = getattr(math, self.fn)
        return np.array([f(float(v)) for v in x.reshape(-1)]).reshape(x.shape), x

    def backward(self, dy, x, params):
        slope = 1.0 / x if self.fn == "log" else 0.5 / np.sqrt(x)
        return dy * slope * (1.01 if self.bug else 1.0), {}


class RaisesWhenMoved(gc.Layer):
    """The identity, raising RuntimeError on any input but its first: a plugin's
    mistake, not a domain, and still exit 2."""

    def __init__(self):
        self.first = None

    def output_shape(self, s):
        return s

    def forward(self, x, params):
        if self.first is None:
            self.first = x.copy()
        elif x.shape != self.first.shape or not np.array_equal(x, self.first):
            raise RuntimeError("not the input I was built for")
        return x.copy(), None

    def backward(self, dy, cache, params):
        return dy, {}


@pytest.fixture(scope="module", autouse=True)
def _layers():
    with registry_kept():
        gc.register_layer("test_scalar_function")(ScalarFunction)
        gc.register_layer("test_raises_when_moved")(RaisesWhenMoved)
        yield


def network(rng, fn: str, bug: bool, softmax: bool) -> dict:
    """Values near 0 (10^U(-9, -6)) among others of about 0.5, into the scalar layer;
    or logits whose softmax puts a probability of about 1e-7 there."""
    layer = {"type": "test_scalar_function", "name": "f", "fn": fn, "bug": bug}
    grad = rng.uniform(0.5, 2.0, (2, 3)).tolist()
    if softmax:
        z = rng.standard_normal((2, 3))
        z[0] = [-8.0, 8.0, 0.5]  # p = 1.1e-7 at [0, 0]
        value, layers = z, [{"type": "softmax", "name": "sm"}, layer]
    else:
        value = rng.uniform(0.2, 0.8, (2, 3))
        value[0, 0] = 10.0 ** rng.uniform(-9, -6)
        layers = [layer]
    return {
        "input": {"value": value.tolist(), "batched": True},
        "layers": layers,
        "loss": {"type": "upstream", "grad": grad},
    }


@settings(max_examples=20, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["log", "sqrt"]),
    st.booleans(),
    st.sampled_from(range(len(MODES))),
)
def test_a_scalar_function_past_its_domain(seed, fn, softmax, mode):
    """The right backward passes, the 1% wrong one fails, blamed, in every mode."""
    for bug in (False, True):
        cfg = network(np.random.default_rng(seed), fn, bug, softmax)
        report = gc.check(cfg, jobs=1, **MODES[mode])
        if bug:
            assert report.exit_code == 1 and "f" in report.blamed_layers(), MODES[mode]
        else:
            assert report.exit_code == 0 and report.blamed_layers() == [], MODES[mode]


def test_any_other_exception_is_still_the_plugins_mistake():
    cfg = {
        "input": {"value": [[0.3, 0.4]], "batched": True},
        "layers": [{"type": "test_raises_when_moved", "name": "r"}],
        "loss": {"type": "upstream", "grad": [[1.0, 2.0]]},
    }
    with pytest.raises(PluginError, match="not the input I was built for"):
        gc.check(cfg, jobs=1)


def test_left_domain_reads_the_cause_chain():
    from gradcheck_cli.engine.domain import left_domain

    def wrapped(inner: BaseException) -> PluginError:
        try:
            try:
                raise inner
            except BaseException as e:
                raise PluginError("f", "forward raised") from e
        except PluginError as outer:
            return outer

    assert left_domain(wrapped(ValueError("math domain error")))
    assert left_domain(wrapped(ZeroDivisionError("float division by zero")))
    assert left_domain(wrapped(FloatingPointError("invalid value")))
    assert not left_domain(wrapped(ValueError("shapes (3,5) and (12,5) not aligned")))
    assert not left_domain(wrapped(IndexError("index 4 is out of bounds")))
