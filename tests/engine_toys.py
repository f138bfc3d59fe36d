"""Tiny layers and a builder of Problems without YAML, for engine tests.

These are deliberately independent of the built-in layers so that the engine's tests
do not depend on the code they are used to check.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gradcheck_cli.problem import CheckSettings, LayerSpec, LossSpec, Problem
from gradcheck_cli.protocol import Layer, Loss


class Affine(Layer):
    """y = x W^T + b on (N, F) inputs; ``bug`` scales dW to simulate a wrong backward."""

    param_names = ("weight", "bias")
    batch_independent = True

    def __init__(self, out: int, bug: float = 1.0, dx_bug: float = 1.0):
        self.out, self.bug, self.dx_bug = out, bug, dx_bug

    def output_shape(self, in_shape):
        return (self.out,)

    def init_params(self, in_shape, rng):
        return {
            "weight": rng.standard_normal((self.out, in_shape[0])),
            "bias": rng.standard_normal(self.out),
        }

    def forward(self, x, params):
        return np.matmul(x[:, None, :], params["weight"].T)[:, 0] + params["bias"], x

    def backward(self, dy, cache, params):
        x = cache
        dw = self.bug * dy.T @ x
        return self.dx_bug * dy @ params["weight"], {"weight": dw, "bias": dy.sum(0)}


class Tanh(Layer):
    batch_independent = True

    def forward(self, x, params):
        y = np.tanh(x)
        return y, y

    def backward(self, dy, cache, params):
        return dy * (1 - cache**2), {}


class Relu(Layer):
    batch_independent = True

    def forward(self, x, params):
        return np.maximum(x, 0), x

    def backward(self, dy, cache, params):
        return dy * (cache > 0), {}


class HalfSquares(Loss):
    target_name = "target"

    class Cache(NamedTuple):
        diff: np.ndarray

    def forward(self, y, target):
        diff = y - target
        return 0.5 * (diff**2).reshape(len(y), -1).sum(1), self.Cache(diff)

    def backward(self, cache):
        return cache.diff


def make_problem(layers, x, target, *, seed=0, batched=False, **settings) -> Problem:
    """Problem from [(name, Layer)], x (N, *in_shape) and target (N, *out_shape)."""
    rng = np.random.default_rng(seed)
    specs, shape = [], x.shape[1:]
    for name, layer in layers:
        out = tuple(layer.output_shape(shape))
        params = layer.init_params(shape, rng)
        specs.append(LayerSpec(name, type(layer).__name__.lower(), layer, params, shape, out))
        shape = out
    return Problem(
        path="<test>",
        name="toy",
        seed=seed,
        dtype=str(x.dtype),
        x=x,
        batched=batched,
        input_user_shape=x.shape if batched else x.shape[1:],
        layers=specs,
        loss=LossSpec("half_squares", HalfSquares(), target),
        settings=CheckSettings(**settings),
    )


class Add(Layer):
    """y = x0 + x1 (a residual join); ``bug`` scales what goes back to the second input."""

    n_inputs = 2
    batch_independent = True

    def __init__(self, bug: float = 1.0):
        self.bug = bug

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def forward(self, xs, params):
        return xs[0] + xs[1], None

    def backward(self, dy, cache, params):
        return (dy, self.bug * dy), {}


def make_graph(nodes, x, target, *, seed=0, **settings) -> Problem:
    """Problem from [(name, Layer, inputs, share)] in topological order: ``inputs`` name
    earlier nodes or ``input`` (None: the previous node), ``share`` a node whose
    parameters this one uses (None: its own)."""
    rng = np.random.default_rng(seed)
    shapes = {"input": x.shape[1:]}
    specs, previous = [], "input"
    for name, layer, inputs, share in nodes:
        inputs = tuple(inputs or (previous,))
        in_shapes = tuple(shapes[v] for v in inputs)
        multi = getattr(layer, "n_inputs", 1) != 1
        out = tuple(layer.output_shape(in_shapes if multi else in_shapes[0]))
        if share is not None:
            params = next(s for s in specs if s.name == share).params
        else:
            params = layer.init_params(in_shapes[0], rng)
        specs.append(
            LayerSpec(
                name,
                type(layer).__name__.lower(),
                layer,
                params,
                in_shapes[0],
                out,
                inputs=inputs,
                share=share,
                in_shapes=in_shapes,
            )
        )
        shapes[name] = out
        previous = name
    return Problem(
        path="<test>",
        name="toy-graph",
        seed=seed,
        dtype=str(x.dtype),
        x=x,
        batched=True,
        input_user_shape=x.shape,
        layers=specs,
        loss=LossSpec("half_squares", HalfSquares(), target),
        settings=CheckSettings(**settings),
    )
