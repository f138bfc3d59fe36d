"""The Python API: ``gradcheck_cli.check(path_or_dict, **options) -> Report``.

Written the way a user checks their own layer from a plain test: a class registered in
the test, a config as a dict, no YAML anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

import gradcheck_cli as gc
from gradcheck_cli import protocol
from gradcheck_cli.errors import UsageError

REPO = Path(__file__).resolve().parent.parent


class ScaleCache(NamedTuple):
    x: np.ndarray  # (N, F), the input


class Scale(gc.Layer):
    """y = x * gain + shift, element-wise, with a gain and a shift per feature."""

    param_names = ("gain", "shift")

    def __init__(self, init_gain: float = 1.0):
        self.init_gain = init_gain

    def init_params(self, in_shape, rng):
        return {"gain": np.full(in_shape, self.init_gain), "shift": rng.normal(size=in_shape)}

    def forward(self, x, params):
        return x * params["gain"] + params["shift"], ScaleCache(x)

    def backward(self, dy, cache, params):
        grads = {"gain": (dy * cache.x).sum(axis=0), "shift": dy.sum(axis=0)}
        return dy * params["gain"], grads


class ScaleForgetsTheInput(Scale):
    """The classic slip: dgain written as dy alone, the input forgotten."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx, {**grads, "gain": dy.sum(axis=0)}


@pytest.fixture
def registered():
    """Register the test's layers under fresh names; unregister them afterwards."""
    names = {"api_test_scale": Scale, "api_test_scale_bug": ScaleForgetsTheInput}
    for name, cls in names.items():
        gc.register_layer(name)(cls)
    yield names
    for name in names:
        protocol.LAYERS.pop(name, None)
        protocol.ORIGINS.pop(("layer", name), None)


def config(layer_type: str, **extra) -> dict:
    return {
        "seed": 3,
        "input": {"value": [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], "batched": True},
        "layers": [
            {"type": layer_type, "name": "s", "init_gain": 0.5},
            {"type": "tanh", "name": "act"},
            {"type": "dense", "name": "fc", "out_features": 2},
        ],
        "loss": {"type": "mse", "target": [[0.0, 1.0], [1.0, 0.0]]},
        **extra,
    }


def test_a_correct_user_layer_passes(registered):
    report = gc.check(config("api_test_scale"))
    assert isinstance(report, gc.Report)
    assert report.passed and report.exit_code == 0
    assert [c.name for c in report.checks] == [
        "input",
        "s.gain",
        "s.shift",
        "fc.weight",
        "fc.bias",
    ]
    assert all(c.checked == c.analytic.size for c in report.checks)


def test_a_broken_backward_fails_naming_the_tensor(registered):
    report = gc.check(config("api_test_scale_bug"))
    assert not report.passed and report.exit_code == 1
    failed = [c.name for c in report.checks if not c.passed]
    assert failed == ["s.gain"]
    gain = report.check("s.gain")
    assert gain.failed == gain.checked == 3
    # the layer's own backward is blamed, and the numbers say by how much
    assert report.blamed_layers() == ["s"]
    verdicts = {v.name: v.passed for v in report.layers}
    assert verdicts == {"s": False, "act": True, "fc": True, "loss": True}
    assert gain.max_abs_error > 1e-3


def test_to_json_round_trips_with_the_contract_keys(registered):
    report = gc.check(config("api_test_scale_bug"))
    data = json.loads(report.to_json())
    assert data["schema"] == "gradcheck-report/1"
    for key in ("config", "passed", "exit_code", "loss", "settings", "checks"):
        assert key in data
    assert data["expectations"] == [] and set(data["timing"]) >= {"total_s", "forward_passes"}
    assert data["passed"] is False and data["exit_code"] == 1
    for key in ("eps", "atol", "rtol", "method", "mode", "dtype", "seed"):
        assert key in data["settings"]
    by_name = {c["name"]: c for c in data["checks"]}
    gain = by_name["s.gain"]
    for key in (
        "layer",
        "param",
        "shape",
        "checked",
        "failed",
        "kinks",
        "passed",
        "max_abs_error",
        "max_rel_error",
        "analytic",
        "numeric",
    ):
        assert key in gain
    assert (gain["layer"], gain["param"], gain["shape"]) == ("s", "gain", [3])
    assert gain["passed"] is False
    np.testing.assert_allclose(gain["analytic"], report.check("s.gain").analytic)
    assert by_name["input"]["layer"] is None


def test_options_override_the_config(registered):
    report = gc.check(config("api_test_scale"), only=["s.*"], sample=2, seed=5)
    assert [c.name for c in report.checks] == ["s.gain", "s.shift"]
    assert all(c.checked == 2 for c in report.checks)
    assert report.settings["seed"] == 5 and report.settings["mode"] == "sample"
    assert sorted(report.skipped) == ["fc.bias", "fc.weight", "input"]
    # a null numeric entry for each element that was not checked
    numeric = json.loads(report.to_json())["checks"][0]["numeric"]
    assert numeric.count(None) == 1


def test_expectations_from_a_dict(registered):
    d = config("api_test_scale", expect={"s.shift.grad": [0.0, 0.0, 0.0]})
    report = gc.check(d)
    (e,) = report.expectations
    assert e.name == "s.shift.grad" and not e.passed
    np.testing.assert_allclose(e.actual, report.check("s.shift").analytic)
    assert not report.passed  # a failed expectation fails the report


def test_a_path_works_too():
    report = gc.check(REPO / "configs" / "example_a.yaml")
    assert report.passed
    assert {e.name for e in report.expectations} == {"conv1.weight.grad", "conv1.bias.grad"}


def test_config_errors_raise_config_error():
    with pytest.raises(gc.ConfigError) as err:
        gc.check({"input": [1.0], "layers": [{"type": "dense"}], "loss": {"type": "mse"}})
    text = str(err.value)
    assert "layers[0].out_features" in text and "loss.target" in text


def test_unknown_options_and_bad_values_are_usage_errors(registered):
    with pytest.raises(UsageError, match="unknown option 'epsilon'"):
        gc.check(config("api_test_scale"), epsilon=1e-6)
    with pytest.raises(UsageError, match="eps"):
        gc.check(config("api_test_scale"), eps=0)


def test_an_only_glob_matching_nothing_is_refused(registered):
    """It would check nothing and pass."""
    with pytest.raises(UsageError, match="matches no tensor"):
        gc.check(config("api_test_scale"), only=["s.wieght"])


def test_nan_raises_numerical_error():
    d = {
        "input": [-1.0, -2.0],
        "layers": [{"type": "relu"}],
        "loss": {"type": "cross_entropy", "target": [1.0, 0.0]},
    }
    with pytest.raises(gc.NumericalError):
        gc.check(d)
