"""A parameter written into through a view (found by a hunt): a layer whose output is a
view of its parameter, followed by a layer that writes into its input in place (a
forward's ``x *= 2``, a backward changing the input it kept), passed with a warning
("harmless in this network"): in a real network each forward changes the parameter,
which contract section 4 makes a failure whoever writes. The real-network run now
compares every parameter before and after; one that changed fails, the writer blamed.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc


class ParamView(gc.Layer):
    """y = w, as a view of the parameter (x is ignored: its gradient is 0)."""

    param_names = ("w",)
    batch_independent = True

    def output_shape(self, in_shape):
        return in_shape

    def init_params(self, in_shape, rng):
        return {"w": rng.normal(size=in_shape)}

    def forward(self, x, params):
        return np.broadcast_to(params["w"], x.shape) if len(x) > 1 else params["w"][None], None

    def backward(self, dy, cache, params):
        return np.zeros_like(dy), {"w": dy.sum(0)}


class ScaleInPlace(gc.Layer):
    """y = s x, written into x (``forward``), or the kept x halved in place during
    ``backward`` (``where: backward``); the gradients are right either way."""

    batch_independent = True

    def __init__(self, s: float = 2.0, where: str = "forward"):
        self.s, self.where = s, where

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, x, params):
        if self.where == "forward":
            x *= self.s
            return x, None
        return self.s * x, x

    def backward(self, dy, cache, params):
        if self.where == "backward":  # halves what it kept (a clamp could change nothing)
            np.multiply(cache, 0.5, out=cache)
        return self.s * dy, {}


@pytest.fixture(scope="module", autouse=True)
def _layers():
    with registry_kept():
        gc.register_layer("test_param_view")(ParamView)
        gc.register_layer("test_scale_in_place")(ScaleInPlace)
        yield


@settings(max_examples=6, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(0, 2**16),
    st.sampled_from(["forward", "backward"]),
    st.sampled_from([{}, {"fast": True}, {"sample": 2}]),
)
def test_a_write_into_a_view_of_a_parameter_fails_the_writer(width, seed, where, options):
    doc = {
        "seed": seed,
        "input": {"shape": [width]},
        "layers": [
            {"type": "test_param_view", "name": "pv"},
            {"type": "test_scale_in_place", "name": "writer", "where": where, "s": 1.5},
            {"type": "tanh"},
            {"type": "dense", "name": "fc", "out_features": 2},
        ],
        "loss": {"type": "mse", "target": [0.1, 0.2]},
    }
    report = gc.check(doc, jobs=1, **options)
    assert report.exit_code == 1 and report.blamed_layers() == ["writer"]
    (pv,) = [c for c in report.checks if c.name == "pv.w"]
    assert pv.corrupted_by == "writer"
