"""Layers that keep state outside their arrays (the copies probe's bug class), and pure
layers that look like them.

Impure: one layer writes a module-level value that a later one reads as a constant, so
the network's output depends on the writer's input (or parameter) along a path no
backward accounts for. Pure: reading a module-level constant, counting calls, a matrix
product whose rounding depends on the batch size."""

from __future__ import annotations

import numpy as np

import gradcheck_cli as gc

STATE = {"k": 1.0}  # BUG: written by one layer's forward, read by another's
CONSTANT = {"k": 1.25}  # never written: a constant, as good as a literal
CALLS = {"n": 0}


@gc.register_layer("publish_mean")
class PublishMean(gc.Layer):
    """y = tanh(x); publishes k = 1 + gain * tanh(mean(x)) (found by a hunt)."""

    def __init__(self, gain: float = 0.5):
        self.gain = gain

    def forward(self, x, params):
        STATE["k"] = 1.0 + self.gain * float(np.tanh(x.mean()))  # BUG: hidden output
        y = np.tanh(x)
        return y, y

    def backward(self, dy, y, params):
        return dy * (1 - y**2), {}


@gc.register_layer("publish_last_row")
class PublishLastRow(gc.Layer):
    """y = x; publishes k from the batch's last example only."""

    batch_independent = True

    def forward(self, x, params):
        STATE["k"] = 1.0 + 0.1 * float(np.sum(x[-1]))  # BUG: hidden output
        return x.copy(), None

    def backward(self, dy, cache, params):
        return dy.copy(), {}


@gc.register_layer("publish_param")
class PublishParam(gc.Layer):
    """y = x * scale; publishes k = 1 + 0.3 * sum(scale), from its parameter alone."""

    param_names = ("scale",)
    batch_independent = True

    def init_params(self, in_shape, rng):
        return {"scale": rng.uniform(0.5, 1.5, in_shape)}

    def forward(self, x, params):
        STATE["k"] = 1.0 + 0.3 * float(np.sum(params["scale"]))  # BUG: hidden output
        return x * params["scale"], x

    def backward(self, dy, x, params):
        return dy * params["scale"], {"scale": (dy * x).sum(axis=0)}


@gc.register_layer("read_global")
class ReadGlobal(gc.Layer):
    """y = k * x, k read from the module and taken as a constant."""

    def forward(self, x, params):
        k = STATE["k"]  # BUG: a hidden input
        return k * x, k

    def backward(self, dy, k, params):
        return k * dy, {}


@gc.register_layer("read_constant")
class ReadConstant(gc.Layer):
    """y = k * x with k a module-level value nothing writes: pure."""

    batch_independent = True

    def forward(self, x, params):
        return CONSTANT["k"] * x, None

    def backward(self, dy, cache, params):
        return CONSTANT["k"] * dy, {}


@gc.register_layer("count_calls")
class CountCalls(gc.Layer):
    """y = sin(x), counting its calls in the module: state no output depends on."""

    batch_independent = True

    def forward(self, x, params):
        CALLS["n"] += 1
        return np.sin(x), x

    def backward(self, dy, x, params):
        return dy * np.cos(x), {}


@gc.register_layer("gemm_dense")
class GemmDense(gc.Layer):
    """y = x @ W.T + b as one gemm: its rounding changes with the batch size (BLAS
    blocks by rows), which is no state at all."""

    param_names = ("weight", "bias")
    batch_independent = True

    def __init__(self, out_features: int = 4):
        self.out_features = out_features

    def output_shape(self, in_shape):
        return (self.out_features,)

    def init_params(self, in_shape, rng):
        fan_in = int(np.prod(in_shape))
        return {
            "weight": rng.uniform(-1, 1, (self.out_features, fan_in)) / np.sqrt(fan_in),
            "bias": rng.uniform(-1, 1, self.out_features),
        }

    def forward(self, x, params):
        return x @ params["weight"].T + params["bias"], x

    def backward(self, dy, x, params):
        return dy @ params["weight"], {"weight": dy.T @ x, "bias": dy.sum(axis=0)}


@gc.register_layer("slow_sin")
class SlowSin(gc.Layer):
    """y = sin(x), 0.05 s a call: pure, for the probe's share of a time budget."""

    batch_independent = True

    def forward(self, x, params):
        import time

        time.sleep(0.05)
        return np.sin(x), x

    def backward(self, dy, x, params):
        return dy * np.cos(x), {}


@gc.register_layer("log_above_half")
class LogAboveHalf(gc.Layer):
    """y = log(x - 0.5), refusing any input at or below 0.5 (a narrow domain): pure."""

    batch_independent = True

    def forward(self, x, params):
        if np.any(x <= 0.5):
            raise ValueError("log_above_half takes inputs above 0.5 only")
        return np.log(x - 0.5), x

    def backward(self, dy, x, params):
        return dy / (x - 0.5), {}


@gc.register_layer("publish_column")
class PublishColumn(gc.Layer):
    """y = tanh(x); publishes k from the batch mean of feature 1 only (hunt 16: the probe
    once moved only a tensor's first and middle elements, both in feature 0)."""

    def forward(self, x, params):
        STATE["k"] = 1.0 + 0.5 * float(np.tanh(x[:, 1].mean()))  # BUG: hidden output
        y = np.tanh(x)
        return y, y

    def backward(self, dy, y, params):
        return dy * (1 - y * y), {}


@gc.register_layer("publish_last_scale")
class PublishLastScale(gc.Layer):
    """y = x * scale; publishes k from the last element of its parameter only (hunt 16)."""

    param_names = ("scale",)
    batch_independent = True

    def init_params(self, in_shape, rng):
        return {"scale": rng.uniform(0.5, 1.5, in_shape)}

    def forward(self, x, params):
        STATE["k"] = 1.0 + 0.5 * float(np.tanh(params["scale"].flat[-1]))  # BUG
        return x * params["scale"], x

    def backward(self, dy, x, params):
        return dy * params["scale"], {"scale": (dy * x).sum(axis=0)}


BUFFERS: dict = {}  # BUG: one output buffer per shape, shared by every instance


@gc.register_layer("shared_buffer_tanh")
class SharedBufferTanh(gc.Layer):
    """y = tanh(x) written into an output buffer that every instance shares (hunt 18): a
    second instance's forward overwrites what the first returned, which the layer after
    the first kept."""

    batch_independent = True

    def forward(self, x, params):
        buf = BUFFERS.get(x.shape)
        if buf is None:
            buf = BUFFERS[x.shape] = np.empty_like(x)
        np.tanh(x, out=buf)
        return buf, buf.copy()

    def backward(self, dy, y, params):
        return dy * (1 - y**2), {}
