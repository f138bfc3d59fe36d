"""A plugin's fast paths (forward_perturbed, forward_local, perturbed_local) are proven
equal to its forward before the numeric side uses them (engine/fastpaths.py).

Found by a hunt: the numeric side differentiated the fast path, not forward, so
- a dense layer whose backward and forward_perturbed both transposed dW passed in full,
  fast and sampled mode (exit 0), while a right backward beside a wrong fast path failed
  with a diagnosis of a transposed gradient;
- a tanh whose forward_local carried the backward's wrong slope got exit 3, its input's
  clear disagreements called inconclusive, and no layer blamed.
Now a fast path that disagrees is not used (a warning names it) and every mode gives
forward's verdict. Also here: --sample after a failure isolates every element of each
layer, so that blame finds the few a wrong backward gets wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import registry_kept
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc
from gradcheck_cli.layers.conv import Conv2d
from gradcheck_cli.layers.dense import Dense

MODES = [{}, {"fast": True}, {"sample": 3}, {"method": "taylor"}]


class SquareDense(gc.Layer):
    """y = x W^T + b, W square, with forward_perturbed. ``backward_t``: dW transposed;
    ``perturbed_t``: forward_perturbed moves W[j, o] for the element W[o, j]."""

    param_names = ("weight", "bias")
    supports_perturbed = True
    batch_independent = True

    def __init__(self, backward_t: bool = False, perturbed_t: bool = False):
        self.backward_t, self.perturbed_t = backward_t, perturbed_t

    def output_shape(self, in_shape):
        return in_shape

    def init_params(self, in_shape, rng):
        f = in_shape[0]
        return {"weight": rng.standard_normal((f, f)) * 0.5, "bias": rng.standard_normal(f) * 0.1}

    def forward(self, x, params):
        return x @ params["weight"].T + params["bias"], x

    def backward(self, dy, cache, params):
        dw = dy.T @ cache
        return dy @ params["weight"], {"weight": dw.T if self.backward_t else dw, "bias": dy.sum(0)}

    def forward_perturbed(self, x, params, name, index, delta):
        y, _ = self.forward(x, params)
        p = np.arange(len(index))
        out = np.repeat(y[None], len(index), axis=0)
        if name == "bias":
            out[p, :, index] += delta[:, None]
        else:
            o, j = np.divmod(index, x.shape[1])
            if self.perturbed_t:
                o, j = j, o
            out[p, :, o] += delta[:, None] * x[:, j].T
        return out


class LocalTanh(gc.Layer):
    """tanh with forward_local; ``slope``: added to the backward's derivative; ``local``:
    forward_local gives tanh(v) + local * (v - x), equal to forward only at v = x."""

    supports_local = True
    batch_independent = True

    def __init__(self, slope: float = 0.0, local: float = 0.0):
        self.slope, self.local = slope, local

    def output_shape(self, in_shape):
        return in_shape

    def forward(self, x, params):
        y = np.tanh(x)
        return y, y

    def backward(self, dy, cache, params):
        return dy * (1 - cache**2 + self.slope), {}

    def forward_local(self, x, y, params, rows, index, values):
        n = len(x)
        before = x.reshape(n, -1)[rows[:, None], index]
        return index, np.tanh(values) + self.local * (values - before)


class DoubledBiasDense(Dense):
    """A subclass of the built-in dense whose forward adds the bias twice (and whose
    backward says so): it inherits the built-in's fast paths, which add it once."""

    def forward(self, x, params):
        y, cache = super().forward(x, params)
        return y + params["bias"], cache

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx, {**grads, "bias": 2 * grads["bias"]}


class PlainDense(Dense):
    """The built-in dense, as a plugin subclass: its fast paths are probed and agree."""


class PlainConv(Conv2d):
    """The built-in conv2d, as a plugin subclass."""


@pytest.fixture(scope="module", autouse=True)
def _layers():
    with registry_kept():
        gc.register_layer("test_square_dense")(SquareDense)
        gc.register_layer("test_local_tanh")(LocalTanh)
        gc.register_layer("test_doubled_bias_dense")(DoubledBiasDense)
        gc.register_layer("test_plain_dense")(PlainDense)
        gc.register_layer("test_plain_conv")(PlainConv)
        yield


def dense_net(features: int, batch: int, seed: int, **layer) -> dict:
    return {
        "seed": seed,
        "input": {"shape": [batch, features], "batched": True},
        "layers": [
            {"type": "test_square_dense", "name": "sq", **layer},
            {"type": "tanh"},
            {"type": "dense", "name": "head", "out_features": 3},
        ],
        "loss": {"type": "softmax_cross_entropy", "target": [k % 3 for k in range(batch)]},
    }


def warned(report) -> bool:
    return any(p.kind == "fast_path_differs" for v in report.layers for p in v.problems)


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 6), st.integers(1, 3), st.integers(0, 2**16))
def test_a_backward_matching_a_wrong_fast_path_fails_in_every_mode(features, batch, seed):
    """dW transposed in backward and forward_perturbed alike: every mode fails it and
    blames the layer, with a warning naming forward_perturbed."""
    doc = dense_net(features, batch, seed, backward_t=True, perturbed_t=True)
    for options in MODES:
        report = gc.check(doc, jobs=1, **options)
        assert report.exit_code == 1 and "sq" in report.blamed_layers(), options
        assert warned(report), options


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 6), st.integers(1, 3), st.integers(0, 2**16))
def test_a_right_backward_beside_a_wrong_fast_path_passes_with_a_warning(features, batch, seed):
    doc = dense_net(features, batch, seed, perturbed_t=True)
    for options in MODES:
        report = gc.check(doc, jobs=1, **options)
        assert report.exit_code == 0 and warned(report), options
        assert any("forward_perturbed of weight" in w for w in report.warnings), options


def tanh_net(batch: int, seed: int, **layer) -> dict:
    return {
        "seed": seed,
        "input": {"shape": [batch, 4], "batched": True},
        "layers": [
            {"type": "dense", "name": "d1", "out_features": 4},
            {"type": "test_local_tanh", "name": "tl", **layer},
            {"type": "dense", "name": "head", "out_features": 3},
        ],
        "loss": {"type": "softmax_cross_entropy", "target": [k % 3 for k in range(batch)]},
    }


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**16), st.sampled_from([0.01, -0.05, 0.3]))
def test_a_forward_local_with_the_backwards_mistake_fails_in_every_mode(batch, seed, slope):
    doc = tanh_net(batch, seed, slope=slope, local=slope)
    for options in MODES:
        report = gc.check(doc, jobs=1, **options)
        assert report.exit_code == 1 and report.blamed_layers() == ["tl"], options
        assert warned(report), options
    right = gc.check(tanh_net(batch, seed, local=slope), jobs=1)
    assert right.exit_code == 0 and warned(right)


@settings(max_examples=10, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(3, 6),
    st.sampled_from([1, 2, 3]),
    st.integers(0, 2**16),
)
def test_built_in_fast_paths_inherited_by_plugins_agree(batch, channels, size, kernel, seed):
    """Plugin subclasses of the built-in conv2d and dense: their (inherited, right) fast
    paths are probed, agree, and are used; no warning, the check passes."""
    doc = {
        "seed": seed,
        "input": {"shape": [batch, channels, size, size], "batched": True},
        "layers": [
            {"type": "test_plain_conv", "name": "c", "out_channels": 2, "kernel_size": kernel},
            {"type": "tanh"},
            {"type": "flatten"},
            {"type": "test_plain_dense", "name": "d", "out_features": 3},
        ],
        "loss": {"type": "softmax_cross_entropy", "target": [k % 3 for k in range(batch)]},
    }
    report = gc.check(doc, jobs=1)
    assert report.exit_code == 0 and not warned(report)


def test_a_subclass_that_changes_forward_does_not_use_the_inherited_fast_path():
    """The built-in dense's forward_perturbed adds the bias once; this subclass's forward
    adds it twice, and its backward says so: the fast path is refused, forward is used,
    and the right backward passes (through the fast path its dbias would have failed)."""
    doc = {
        "seed": 4,
        "input": {"shape": [2, 5], "batched": True},
        "layers": [
            {"type": "test_doubled_bias_dense", "name": "dd", "out_features": 4},
            {"type": "tanh"},
            {"type": "dense", "name": "head", "out_features": 3},
        ],
        "loss": {"type": "softmax_cross_entropy", "target": [0, 2]},
    }
    report = gc.check(doc, jobs=1)
    assert report.exit_code == 0 and warned(report)


class TransposedMaxPool(gc.Layer):
    """Global max pool (N, C, H, W) -> (N, C); ``bug``: the gradient goes to the argmax of
    the transposed (W, H) layout, read as if it were (H, W)."""

    batch_independent = True

    def __init__(self, bug: bool = False):
        self.bug = bug

    def output_shape(self, in_shape):
        return (in_shape[0],)

    def forward(self, x, params):
        return x.reshape(*x.shape[:2], -1).max(-1), x

    def backward(self, dy, cache, params):
        n, c = cache.shape[:2]
        source = np.swapaxes(cache, 2, 3) if self.bug else cache
        at = source.reshape(n, c, -1).argmax(-1)
        dx = np.zeros((n, c, cache[0, 0].size))
        np.put_along_axis(dx, at[..., None], dy[..., None], axis=2)
        return dx.reshape(cache.shape), {}


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 4), st.integers(0, 2**16), st.integers(1, 4))
def test_sample_mode_blames_the_layer_whose_few_elements_are_wrong(batch, seed, sample):
    with registry_kept():
        gc.register_layer("test_transposed_max_pool")(TransposedMaxPool)
        doc = {
            "seed": seed,
            "input": {"shape": [batch, 2, 3, 4], "batched": True},
            "layers": [
                {"type": "conv2d", "name": "c1", "out_channels": 3, "kernel_size": 1},
                {"type": "test_transposed_max_pool", "name": "gmp", "bug": True},
                {"type": "dense", "name": "head", "out_features": 3},
            ],
            "loss": {"type": "softmax_cross_entropy", "target": [k % 3 for k in range(batch)]},
        }
        report = gc.check(doc, jobs=1, sample=sample)
        if report.exit_code == 1:  # a sampled network element hit a wrong one
            assert report.blamed_layers() == ["gmp"]
        else:  # the sample missed them all: a pass of what was checked, said so
            assert report.exit_code == 0


def test_helpers_do_not_use_a_fast_path_the_probe_refused(tmp_path, monkeypatch):
    """Chunks judged by helpers (here an Executor's threads, which rebuild the problem
    from the config) use forward too: the report is one process's."""
    import concurrent.futures
    import json

    import yaml

    from gradcheck_cli import jobs

    monkeypatch.setenv(jobs.EAGER_ENV, "1")  # helpers from the first chunk
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(dense_net(6, 3, 11, perturbed_t=True)))

    def outcome(**options) -> dict:
        data = json.loads(gc.check(str(path), **options).to_json())
        data.pop("timing")
        return data

    alone = outcome(jobs=1)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        shared = outcome(executor=pool, jobs=2)
    assert shared == alone and alone["exit_code"] == 0


def test_taylor_failures_get_no_note_that_every_network_gradient_agrees():
    """A wrong tanh slope under --method taylor: the network's tensors fail their Taylor
    test, so no note may say that every gradient of the network agrees."""
    report = gc.check(tanh_net(2, 5, slope=0.05), jobs=1, method="taylor")
    assert report.exit_code == 1 and report.blamed_layers() == ["tl"]
    assert not any("every gradient of the network agrees" in w for w in report.warnings)


#: Built-ins with fast paths, the layers around them, and the input shape per example.
SUBCLASSED = {
    "dense": ([{"out_features": 4}], [5]),
    "conv2d": ([{"out_channels": 2, "kernel_size": 3, "padding": 1}], [2, 5, 5]),
    "maxpool2d": ([{"kernel_size": 2}], [2, 4, 4]),
    "avgpool2d": ([{"kernel_size": 2}], [2, 4, 4]),
    "relu": ([{}], [6]),
    "sigmoid": ([{}], [6]),
    "tanh": ([{}], [6]),
    "leaky_relu": ([{"negative_slope": 0.1}], [6]),
    "flatten": ([{}], [2, 3, 3]),
    "layernorm": ([{}], [6]),
    "dropout": ([{"p": 0.3, "seed": 2}], [6]),
}


@pytest.mark.parametrize("type_", sorted(SUBCLASSED))
@settings(max_examples=4, deadline=None)
@given(batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_every_built_in_fast_path_inherited_by_a_plugin_agrees(type_, batch, seed):
    """A plugin subclass of each built-in with a fast path: the probe runs (the class is
    not gradcheck's) and finds nothing, so nothing is refused on rounding alone."""
    from gradcheck_cli.protocol import LAYERS

    fields, shape = SUBCLASSED[type_]
    sub = type(f"Sub_{type_}", (LAYERS[type_],), {"__module__": "user_plugin"})
    with registry_kept():
        gc.register_layer(f"test_sub_{type_}")(sub)
        doc = {
            "seed": seed,
            "input": {"shape": [batch, *shape], "batched": True},
            "layers": [
                {"type": f"test_sub_{type_}", "name": "sub", **fields[0]},
                {"type": "flatten"},
                {"type": "dense", "name": "head", "out_features": 3},
            ],
            "loss": {"type": "softmax_cross_entropy", "target": [k % 3 for k in range(batch)]},
        }
        report = gc.check(doc, jobs=1)
    assert not warned(report), report.warnings
    assert report.exit_code in (0, 3), report.warnings  # 3: ties a max pool may meet
