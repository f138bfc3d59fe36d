"""Ties in stacked max pools before a layer whose own check is inconclusive (found by the
slow property run): two stride-1 max pools over values drawn from {0, +-5e-7, 1e-6,
2e-6}, then a layer norm (its variance far below eps: its isolated check cannot resolve
it). A tied input element failed (exit 1, nobody blamed): the chain rule cannot vouch
for the compound kink, since a backward on the way is unverified, and the element had
no kink in evidence of its own, only the pools' isolated checks had. Such a failure is
now inconclusive (exit 3), like one with a kink at the element; a wrong pool on the way
still fails, blamed, or where its error sits only on exact ties, is inconclusive: never
a pass.
"""

from __future__ import annotations

import numpy as np
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc
from gradcheck_cli.layers.pool import MaxPool2d

VALUES = [0.0, 5e-7, -5e-7, 1e-6, -1e-6, 2e-6]


class ScaledMaxPool(MaxPool2d):
    """The built-in max pool, its dx 10% too large."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return 1.1 * dx, grads


def net(values: list[float], target: list[float], pool: str = "maxpool2d") -> dict:
    return {
        "seed": 1,
        "input": np.array(values).reshape(1, 3, 5).tolist(),
        "layers": [
            {"type": pool, "name": "p1", "kernel_size": 2, "stride": 1},
            {"type": "maxpool2d", "kernel_size": 2, "stride": 1},
            {"type": "flatten"},
            {"type": "layernorm"},
        ],
        "loss": {"type": "mse", "target": target},
    }


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.sampled_from(VALUES), min_size=15, max_size=15),
    st.lists(st.floats(-2e-3, 2e-3), min_size=3, max_size=3),
)
def test_ties_before_an_unverified_layer_never_fail_a_right_network(values, target):
    report = gc.check(net(values, target), jobs=1)
    assert report.exit_code in (0, 3) and report.blamed_layers() == []
    assert report.passed == (report.exit_code == 0)


def test_the_found_case():
    values = [0.0, 0.0, 1e-06, 2e-06, -1e-06, -5e-07, 1e-06, 2e-06, -5e-07, 0.0]
    values += [2e-06, 0.0, -5e-07, 1e-06, -5e-07]
    target = [-0.0006517911526116897, -0.00017471729232577715, 0.0016637239913911968]
    report = gc.check(net(values, target), jobs=1)
    assert report.exit_code in (0, 3) and not any(c.failed for c in report.checks)


@settings(max_examples=10, deadline=None)
@given(
    st.lists(st.sampled_from(VALUES), min_size=15, max_size=15),
    st.lists(st.floats(-2e-3, 2e-3), min_size=3, max_size=3),
)
def test_a_wrong_pool_on_the_way_still_fails(values, target):
    with registry_kept():
        gc.register_layer("test_scaled_max_pool")(ScaledMaxPool)
        report = gc.check(net(values, target, "test_scaled_max_pool"), jobs=1)
    (x,) = [c for c in report.checks if c.name == "input"]
    if report.exit_code == 1:
        assert report.blamed_layers() == ["p1"]
    elif report.exit_code == 0:  # the gradient it scales is 0 up to rounding
        assert float(np.abs(x.analytic).max()) < 1e-12
    else:  # never green: where its only nonzero dx sits on exact ties, the pool's own
        # check takes its 10% for a kink, and the unverified layer norm leaves the
        # input inconclusive (as before this change: a known limit, in the notes)
        assert report.exit_code == 3 and x.inconclusive and not report.passed
