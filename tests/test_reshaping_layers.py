"""upsample2d, global_avgpool2d and transpose: closed forms, PyTorch, the config and schema,
explain, a wrong backward of each caught and blamed, and a channels-last plugin layer
between channels-first built-ins by way of two transposes.

The generic tables (tests/test_layers.py, test_builtins_through_engine.py,
test_vs_torch.py, test_stacks_vs_torch.py) cover these layers too, as every built-in.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import gradcheck_cli as gc
import gradcheck_cli.layers  # noqa: F401  (registers the built-in layers)
from gradcheck_cli import protocol
from gradcheck_cli.cli import cli
from gradcheck_cli.config import problem_from_dict
from gradcheck_cli.engine.explain import Note, explain
from gradcheck_cli.layers.global_pool import GlobalAvgPool2d
from gradcheck_cli.layers.transpose import Transpose
from gradcheck_cli.layers.upsample import Upsample2d
from gradcheck_cli.schema import config_schema


@pytest.fixture
def registry():
    """Types a test registers are removed afterwards (other tests list the built-ins)."""
    saved = (dict(protocol.LAYERS), dict(protocol.LOSSES), dict(protocol.ORIGINS))
    yield
    for live, old in zip((protocol.LAYERS, protocol.LOSSES, protocol.ORIGINS), saved, strict=True):
        live.clear()
        live.update(old)


def issues(doc) -> list[str]:
    with pytest.raises(gc.ConfigError) as info:
        problem_from_dict(doc)
    return [f"{i.path}: {i.message}" for i in info.value.issues]


def doc_with(*layers, x=None, out=(2, 3, 4)) -> dict:
    """One (2, 3, 4) example (or x) through ``layers``, to an output of shape ``out``."""
    x = np.arange(24.0).reshape(2, 3, 4).tolist() if x is None else x
    return {
        "input": x,
        "layers": [dict(item) for item in layers],
        "loss": {"type": "upstream", "grad": np.ones(out).tolist()},
    }


# --- upsample2d ----------------------------------------------------------------------------


def test_upsample_copies_each_pixel_to_a_block_and_sums_the_block_back():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5))
    layer = Upsample2d(scale=[2, 3])
    assert layer.output_shape((3, 4, 5)) == (3, 8, 15)
    y, cache = layer.forward(x, {})
    np.testing.assert_array_equal(y, np.repeat(np.repeat(x, 2, axis=2), 3, axis=3))
    assert y.flags.c_contiguous and y.flags.writeable  # a real array, not a broadcast view
    dy = rng.standard_normal(y.shape)
    dx, grads = layer.backward(dy, cache, {})
    np.testing.assert_allclose(dx, dy.reshape(2, 3, 4, 2, 5, 3).sum(axis=(3, 5)), rtol=1e-15)
    assert grads == {}
    assert Upsample2d(scale=1).forward(x, {})[0].shape == x.shape  # scale 1: the identity


@pytest.mark.parametrize("scale", [3, [2, 3], [1, 2]])
def test_upsample_matches_torch(scale):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 5, 4))
    layer = Upsample2d(scale=scale)
    y, cache = layer.forward(x, {})
    dy = rng.standard_normal(y.shape)
    dx, _ = layer.backward(dy, cache, {})
    xt = torch.tensor(x, requires_grad=True)
    factor = tuple(scale) if isinstance(scale, list) else scale
    yt = torch.nn.Upsample(scale_factor=factor, mode="nearest")(xt)
    (yt * torch.tensor(dy)).sum().backward()
    np.testing.assert_array_equal(y, yt.detach().numpy())  # copies: exactly equal
    # block sums added in another order: rounding of the larger terms, 1e-16 absolute
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"scale": 0}, "layers[0].scale: must be an integer >= 1 or a pair [h, w] of them, got 0"),
        ({}, "layers[0].scale: missing: upsample2d needs scale"),
        ({"scale": 2.5}, "layers[0].scale: must be an integer or a pair [a, b] of integers"),
    ],
)
def test_upsample_bad_scale_names_the_key(item, expected):
    (message,) = issues(doc_with({"type": "upsample2d", **item}))
    assert message.startswith(expected)


def test_upsample_reads_a_2d_input_as_one_channel_and_explains_its_blocks():
    item = {"type": "upsample2d", "scale": [2, 1]}
    problem = problem_from_dict(doc_with(item, x=[[1.0, 2.0]], out=(1, 2, 2)))
    assert problem.layers[0].in_shape == (1, 1, 2) and problem.layers[0].out_shape == (1, 2, 2)
    (note,) = explain(problem).steps[0].details
    assert isinstance(note, Note)
    assert "2x1 block, so its delta is the sum of that block's 2 deltas" in note.text


# --- global_avgpool2d ----------------------------------------------------------------------


def test_global_average_pool_is_the_channel_mean_and_spreads_dy_evenly():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 6))
    layer = GlobalAvgPool2d()
    assert layer.output_shape((4, 5, 6)) == (4,)
    y, cache = layer.forward(x, {})
    np.testing.assert_allclose(y, x.mean(axis=(2, 3)), rtol=1e-14)
    dy = rng.standard_normal(y.shape)
    dx, _ = layer.backward(dy, cache, {})
    np.testing.assert_allclose(dx, np.broadcast_to(dy[:, :, None, None] / 30, x.shape), rtol=1e-15)
    assert dx.flags.writeable


def test_global_average_pool_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 7))
    y, cache = GlobalAvgPool2d().forward(x, {})
    dy = rng.standard_normal(y.shape)
    dx, _ = GlobalAvgPool2d().backward(dy, cache, {})
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.AdaptiveAvgPool2d(1)(xt).flatten(1)
    (yt * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-14)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-14)


def test_global_average_pool_feeds_dense_directly_and_needs_an_image():
    problem = problem_from_dict(
        doc_with({"type": "global_avgpool2d"}, {"type": "dense", "out_features": 2}, out=(2,))
    )
    assert [s.out_shape for s in problem.layers] == [(2,), (2,)]
    (message,) = issues(doc_with({"type": "global_avgpool2d"}, x=[1.0, 2.0, 3.0]))
    assert message == (
        "layers[0].type: global_avgpool2d needs a (channels, height, width) input per "
        "example, got shape [3]"
    )


# --- transpose -----------------------------------------------------------------------------


@pytest.mark.parametrize("axes", [[1, 2, 0], [2, 0, 1], [0, 2, 1], [0, 1, 2]])
def test_transpose_permutes_each_example_and_its_backward_undoes_it(axes):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4, 5))
    layer = Transpose(axes=axes)
    assert layer.output_shape((3, 4, 5)) == tuple((3, 4, 5)[a] for a in axes)
    y, cache = layer.forward(x, {})
    np.testing.assert_array_equal(y, np.transpose(x, (0, *(a + 1 for a in axes))))
    assert y.flags.c_contiguous
    dy = rng.standard_normal(y.shape)
    dx, _ = layer.backward(dy, cache, {})
    assert dx.shape == x.shape and dx.flags.c_contiguous
    # the adjoint: <dy, T x> = <T^-1 dy, x> exactly, the same products summed
    assert np.sum(dy * y) == pytest.approx(np.sum(dx * x), rel=1e-14)
    np.testing.assert_array_equal(layer.forward(dx, {})[0], dy)


def test_transpose_matches_torch_permute():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 5))
    dy = np.random.default_rng(6).standard_normal((2, 4, 5, 3))
    y, cache = Transpose(axes=[1, 2, 0]).forward(x, {})
    dx, _ = Transpose(axes=[1, 2, 0]).backward(dy, cache, {})
    xt = torch.tensor(x, requires_grad=True)
    yt = xt.permute(0, 2, 3, 1)
    (yt * torch.tensor(dy)).sum().backward()
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())


@pytest.mark.parametrize(
    ("axes", "expected"),
    [
        ([1, 0], "has 2 entries but one example has 3 axes (shape [2, 3, 4]); give a "),
        ([1, 1, 0], "must list every axis of one example once, a permutation of 0, 1, ... "),
        ([3, 1, 0], "must list every axis of one example once"),
        ([-1, 0, 1], "must list every axis of one example once"),
        ("[1, 2, 0]", "must be a list of integers, got '[1, 2, 0]'"),
    ],
)
def test_transpose_bad_axes_name_the_key(axes, expected):
    (message,) = issues(doc_with({"type": "transpose", "axes": axes}))
    assert message.startswith(f"layers[0].axes: {expected}")


def test_transpose_explains_itself_with_the_axes_that_undo_it():
    problem = problem_from_dict(doc_with({"type": "transpose", "axes": [1, 2, 0]}, out=(3, 4, 2)))
    assert problem.layers[0].out_shape == (3, 4, 2)
    (note,) = explain(problem).steps[0].details
    assert isinstance(note, Note) and "(axes [2, 0, 1])" in note.text


def test_schema_bounds_scale_and_axes():
    defs = config_schema()["$defs"]
    assert defs["layer.transpose"]["required"] == ["type", "axes"]
    axes = defs["layer.transpose"]["properties"]["axes"]
    assert axes["type"] == "array"
    assert {"type": "integer", "minimum": 0} in axes["items"]["anyOf"]
    scale = defs["layer.upsample2d"]["properties"]["scale"]
    assert {"type": "integer", "minimum": 1} in scale["anyOf"][0]["anyOf"]
    assert defs["layer.global_avgpool2d"]["properties"].keys() == {"type", "name", "inputs"}


ISSUE_11 = ["gelu", "global_avgpool2d", "layernorm", "transpose", "upsample2d"]


def test_gradcheck_layers_and_schema_list_every_new_type():
    """Both commands read the registry: a new layer file is all it takes."""
    runner = CliRunner()
    listed = runner.invoke(cli, ["layers", "--no-color"], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0] for line in listed.stdout.splitlines() if line.split()}
    assert set(ISSUE_11) <= rows
    assert "axes" in listed.stdout and "scale" in listed.stdout
    schema = runner.invoke(cli, ["schema"])
    assert schema.exit_code == 0, schema.output
    defs = json.loads(schema.stdout)["$defs"]
    assert {f"layer.{name}" for name in ISSUE_11} <= set(defs)


# --- a channels-last plugin between channels-first built-ins ----------------------------------


class ChannelScale(gc.Layer):
    """y = x * scale per channel of a channels-last (H, W, C) example, as such code is
    written: the channel is the LAST axis."""

    param_names = ("scale",)
    batch_independent = True

    def init_params(self, in_shape, rng):
        return {"scale": rng.uniform(0.5, 1.5, in_shape[-1])}

    def forward(self, x, params):
        return x * params["scale"], x

    def backward(self, dy, cache, params):
        return dy * params["scale"], {"scale": (dy * cache).sum(axis=(0, 1, 2))}


class ChannelScaleForgetsTheBatch(ChannelScale):
    def backward(self, dy, cache, params):
        dx, _ = super().backward(dy, cache, params)
        return dx, {"scale": (dy[0] * cache[0]).sum(axis=(0, 1))}


CHANNELS_LAST = {
    "seed": 7,
    "input": {"shape": [2, 2, 7, 8], "batched": True},
    "layers": [
        {"type": "conv2d", "name": "conv", "out_channels": 4, "kernel_size": 3},
        {"type": "transpose", "name": "to_hwc", "axes": [1, 2, 0]},
        {"type": "channel_scale", "name": "scaled"},
        {"type": "transpose", "name": "to_chw", "axes": [2, 0, 1]},
        {"type": "upsample2d", "name": "up", "scale": 2},
        {"type": "avgpool2d", "kernel_size": 3},
        {"type": "gelu"},
        {"type": "global_avgpool2d", "name": "gap"},
        {"type": "dense", "name": "fc", "out_features": 3},
    ],
    "loss": {"type": "softmax_cross_entropy", "target": [2, 0]},
}


def test_a_channels_last_plugin_sits_between_two_transposes(registry):
    gc.register_layer("channel_scale")(ChannelScale)
    problem = problem_from_dict(CHANNELS_LAST)
    shapes = {s.name: s.out_shape for s in problem.layers}
    assert shapes["to_hwc"] == shapes["scaled"] == (5, 6, 4)
    assert shapes["conv"] == shapes["to_chw"] == (4, 5, 6)
    assert problem.layers[2].params["scale"].shape == (4,)
    report = gc.check(CHANNELS_LAST)
    assert report.passed and all(v.passed for v in report.layers)
    assert report.check("scaled.scale").checked == 4


def test_a_wrong_plugin_between_transposes_is_blamed_not_the_transposes(registry):
    gc.register_layer("channel_scale")(ChannelScaleForgetsTheBatch)
    report = gc.check(CHANNELS_LAST)
    assert not report.passed
    assert report.blamed_layers() == ["scaled"]
    assert not report.check("scaled.scale").passed and report.check("input").passed


class UpsampleMeans(Upsample2d):
    """Averages each block back instead of summing it."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx / (self.scale[0] * self.scale[1]), grads


class PoolForgetsToDivide(GlobalAvgPool2d):
    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx * (cache.hw[0] * cache.hw[1]), grads


class TransposeBackwardSameWay(Transpose):
    """Applies the forward permutation again instead of its inverse (right only when the
    permutation is its own inverse)."""

    def backward(self, dy, cache, params):
        return np.ascontiguousarray(dy.transpose(0, *(a + 1 for a in self.axes))), {}


@pytest.mark.parametrize(
    ("cls", "layer"),
    [(UpsampleMeans, "up"), (PoolForgetsToDivide, "gap"), (TransposeBackwardSameWay, "to_chw")],
    ids=["upsample-mean", "gap-no-divide", "transpose-not-inverted"],
)
def test_a_wrong_backward_is_caught_and_blamed(registry, cls, layer):
    gc.register_layer("channel_scale")(ChannelScale)
    gc.register_layer("wrong")(cls)
    network = {**CHANNELS_LAST, "layers": [dict(item) for item in CHANNELS_LAST["layers"]]}
    item = next(i for i in network["layers"] if i.get("name") == layer)
    item["type"] = "wrong"
    if cls is TransposeBackwardSameWay:  # 4x4x4 examples: the wrong permutation fits
        network["input"] = {"shape": [2, 2, 6, 6], "batched": True}
    report = gc.check(network)
    assert not report.passed
    assert report.blamed_layers() == [layer]
    assert not report.check("input").passed and report.check("fc.weight").passed
