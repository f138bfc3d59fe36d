"""The one table of built-in layer cases, shared by the layer, engine, torch, local and
property tests.

Each case is a layer type with its keywords (as a config writes them), one example's
input shape and, where PyTorch computes the same function, that function. The tests
take a batch of N examples. ``tests/test_layer_cases.py`` guards the table: every built-in
layer type the registry holds has a case here, so a new built-in cannot go untested by
any of the suites that draw from it.

- tests/test_layers.py: backward against central differences, purity, row independence,
  forward_perturbed against the loop (every case whose layer declares it);
- tests/test_builtins_through_engine.py: the first case of each type, through the config
  path and the engine;
- tests/test_vs_torch.py: every case with a ``torch`` function, to 1e-10;
- tests/test_local.py: every case whose layer declares ``supports_local``;
- tests/test_protocol.py: the first case's keywords build each built-in;
- tests/test_properties.py: generates every type of the table (its guard says so).

Multi-input layers (``add``, ``multiply``, ``concat``) are in MULTI_CASES, with one shape
per input; tests/test_graphs.py and tests/test_graphs_vs_torch.py draw from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cs231n import layers as cs231n

from gradcheck_cli.protocol import LAYERS, RandomArray

#: The batch size the layer tests use.
N = 3


def _torch():
    """(torch, torch.nn.functional), imported when a torch comparison runs: torch is
    optional, and slow to import."""
    import torch

    return torch, torch.nn.functional


def _conv(stride=1, padding=0):
    return lambda x, p: _torch()[1].conv2d(x, p["weight"], p.get("bias"), stride, padding)


def _batch_norm(eps):
    """BatchNorm1d/2d in training: batch statistics, biased variance."""
    return lambda x, p: _torch()[1].batch_norm(
        x, None, None, p["gamma"], p["beta"], training=True, eps=eps
    )


def _layer_norm(eps):
    """torch.nn.LayerNorm(in_shape): statistics over all of an example's axes."""
    return lambda x, p: _torch()[1].layer_norm(x, tuple(x.shape[1:]), p["gamma"], p["beta"], eps)


@dataclass(frozen=True)
class LayerCase:
    """One built-in layer case.

    kwargs: the layer's keywords as a config writes them (``batch_size`` is added for
    layers that want it: ``construct``). in_shape: one example's input shape (several,
    one per input, for a multi-input layer). torch: ``(x, params) -> y`` on torch tensors
    of shapes (N, *in_shape) and the layer's parameter shapes, or None where torch has no
    such function (the reason in ``no_torch``). config: the config item when it differs
    from ``{"type": type, **kwargs}`` (a function pair names its functions).
    """

    id: str
    type: str
    kwargs: dict[str, Any]
    in_shape: Any
    torch: Callable | None = None
    no_torch: str = ""
    config: dict[str, Any] | None = field(default=None)

    def construct(self, n: int = N):
        """The layer, built as the config loader builds it for a batch of n."""
        cls = LAYERS[self.type]
        extra = {"batch_size": n} if getattr(cls, "wants_batch_size", False) else {}
        return cls(**self.kwargs, **extra)

    def item(self) -> dict[str, Any]:
        """The layer as a config item."""
        return dict(self.config) if self.config is not None else {"type": self.type, **self.kwargs}


def _case(id_, type_, kwargs, in_shape, torch=None, no_torch="", config=None) -> LayerCase:
    return LayerCase(id_, type_, kwargs, in_shape, torch, no_torch, config)


def _t(f):
    """A torch function of (x, params) written against (torch, F)."""
    return lambda x, p: f(*_torch(), x, p)


LAYER_CASES: list[LayerCase] = [
    _case("dense", "dense", {"out_features": 4}, (5,), _t(lambda t, F, x, p: F.linear(x, **p))),
    _case(
        "dense-nobias",
        "dense",
        {"out_features": 3, "bias": False},
        (6,),
        _t(lambda t, F, x, p: F.linear(x, p["weight"])),
    ),
    _case(
        "conv-s2-p1",
        "conv2d",
        {"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1},
        (3, 7, 6),
        _conv(2, 1),
    ),
    _case(
        "conv-rect",
        "conv2d",
        {"out_channels": 3, "kernel_size": [2, 3], "stride": [1, 2], "padding": [0, 1]},
        (2, 5, 5),
        _conv((1, 2), (0, 1)),
    ),
    _case(
        "conv-nobias",
        "conv2d",
        {"out_channels": 2, "kernel_size": 2, "bias": False},
        (1, 5, 5),
        _conv(),
    ),
    _case(
        "conv-1x1",
        "conv2d",
        {"out_channels": 4, "kernel_size": 1, "bias": False},
        (2, 5, 5),
        _conv(),
    ),
    _case(
        "maxpool-overlap",
        "maxpool2d",
        {"kernel_size": 3, "stride": 1},
        (2, 5, 6),
        _t(lambda t, F, x, p: F.max_pool2d(x, 3, 1)),
    ),
    _case(
        "maxpool-2x2",
        "maxpool2d",
        {"kernel_size": 2},
        (2, 4, 4),
        _t(lambda t, F, x, p: F.max_pool2d(x, 2)),
    ),
    _case(
        "maxpool-s2-p1",
        "maxpool2d",
        {"kernel_size": 3, "stride": 2, "padding": 1},
        (2, 5, 5),
        _t(lambda t, F, x, p: F.max_pool2d(x, 3, 2, 1)),
    ),
    _case(
        "avgpool-s2-p1",
        "avgpool2d",
        {"kernel_size": 3, "stride": 2, "padding": 1},
        (2, 5, 5),
        _t(lambda t, F, x, p: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)),
    ),
    _case(
        "avgpool-overlap",
        "avgpool2d",
        {"kernel_size": [2, 3], "stride": 1},
        (2, 4, 5),
        _t(lambda t, F, x, p: F.avg_pool2d(x, (2, 3), 1)),
    ),
    _case("relu", "relu", {}, (2, 3, 4), _t(lambda t, F, x, p: F.relu(x))),
    _case(
        "leaky_relu",
        "leaky_relu",
        {"negative_slope": 0.2},
        (2, 3, 4),
        _t(lambda t, F, x, p: F.leaky_relu(x, 0.2)),
    ),
    _case("sigmoid", "sigmoid", {}, (2, 3, 4), _t(lambda t, F, x, p: t.sigmoid(x))),
    _case("tanh", "tanh", {}, (7,), _t(lambda t, F, x, p: t.tanh(x))),
    _case("softmax-flat", "softmax", {}, (6,), _t(lambda t, F, x, p: F.softmax(x, dim=1))),
    _case("softmax-chw", "softmax", {}, (3, 2, 2), _t(lambda t, F, x, p: F.softmax(x, dim=1))),
    _case("flatten", "flatten", {}, (2, 3, 4), _t(lambda t, F, x, p: t.flatten(x, 1))),
    _case(
        "dropout",
        "dropout",
        {"p": 0.3, "seed": 1},
        (4, 5),
        no_torch="torch draws its mask from its own generator: test_vs_torch compares the "
        "inverted scaling on our mask",
    ),
    _case("batchnorm-flat", "batchnorm", {}, (5,), _batch_norm(1e-5)),
    _case("batchnorm-chw", "batchnorm", {"eps": 1e-3}, (2, 3, 4), _batch_norm(1e-3)),
    _case("layernorm-flat", "layernorm", {}, (5,), _layer_norm(1e-5)),
    _case("layernorm-chw", "layernorm", {"eps": 1e-3}, (2, 3, 4), _layer_norm(1e-3)),
    _case(
        "gelu",
        "gelu",
        {},
        (2, 3, 4),
        _t(lambda t, F, x, p: F.gelu(x, approximate="none")),
    ),
    _case(
        "global_avgpool2d",
        "global_avgpool2d",
        {},
        (3, 4, 5),
        _t(lambda t, F, x, p: F.adaptive_avg_pool2d(x, 1).flatten(1)),
    ),
    _case(
        "upsample2d",
        "upsample2d",
        {"scale": 2},
        (2, 3, 4),
        _t(lambda t, F, x, p: F.interpolate(x, scale_factor=2, mode="nearest")),
    ),
    _case(
        "upsample2d-rect",
        "upsample2d",
        {"scale": [3, 1]},
        (2, 2, 3),
        _t(lambda t, F, x, p: F.interpolate(x, scale_factor=(3, 1), mode="nearest")),
    ),
    _case(
        "transpose-chw",
        "transpose",
        {"axes": [1, 2, 0]},
        (2, 3, 4),
        _t(lambda t, F, x, p: x.permute(0, 2, 3, 1)),
    ),
    _case(
        "transpose-2d",
        "transpose",
        {"axes": [1, 0]},
        (3, 5),
        _t(lambda t, F, x, p: x.permute(0, 2, 1)),
    ),
    # the shipped cs231n functions, through the functions layer (params in forward's order)
    _case(
        "functions-affine",
        "functions",
        {
            "forward": cs231n.affine_forward,
            "backward": cs231n.affine_backward,
            "params": {"w": RandomArray((12, 4)), "b": RandomArray((4,))},
            "batch_independent": True,
        },
        (3, 2, 2),
        lambda x, p: x.reshape(len(x), -1) @ p["w"] + p["b"],
        config={
            "type": "functions",
            "forward": "affine_forward",
            "backward": "affine_backward",
            "params": {"w": {"shape": [12, 4]}, "b": [0, 1, 0, 1]},
        },
    ),
    _case(
        "functions-conv",
        "functions",
        {
            "forward": cs231n.conv_forward_naive,
            "backward": cs231n.conv_backward_naive,
            "params": {"weight": RandomArray((2, 3, 3, 3)), "bias": RandomArray((2,))},
            "args": [{"stride": 2, "pad": 1}],
            "batch_independent": True,
        },
        (3, 7, 6),
        _conv(2, 1),
        config={
            "type": "functions",
            "forward": "conv_forward_naive",
            "backward": "conv_backward_naive",
            "params": {"weight": {"shape": [2, 3, 3, 3]}, "bias": {"shape": [2]}},
            "args": [{"stride": 2, "pad": 1}],
            "batch_independent": True,
        },
    ),
    # cs231n's batch norm as a function pair: running statistics written into args
    _case(
        "functions-batchnorm",
        "functions",
        {
            "forward": cs231n.batchnorm_forward,
            "backward": cs231n.batchnorm_backward,
            "params": {"gamma": RandomArray((5,)), "beta": RandomArray((5,))},
            "args": [{"mode": "train", "eps": 1e-5}],
        },
        (5,),
        _batch_norm(1e-5),
        config={
            "type": "functions",
            "forward": "batchnorm_forward",
            "backward": "batchnorm_backward",
            "params": {"gamma": {"shape": [5]}, "beta": {"shape": [5]}},
            "args": [{"mode": "train", "eps": 1e-5}],
        },
    ),
]

#: Multi-input layers: in_shape is the list of the inputs' per-example shapes.
MULTI_CASES: list[LayerCase] = [
    _case("add-2", "add", {}, [(3,), (3,)]),
    _case("add-3-images", "add", {}, [(2, 3, 2)] * 3),
    _case("multiply-2", "multiply", {}, [(4,), (4,)]),
    _case("multiply-3", "multiply", {}, [(2, 2, 2)] * 3),
    _case("concat-features", "concat", {}, [(2,), (3,)]),
    _case("concat-channels", "concat", {"axis": 0}, [(1, 2, 3), (2, 2, 3), (1, 2, 3)]),
    _case("concat-width", "concat", {"axis": -1}, [(2, 2, 1), (2, 2, 3)]),
]


def network_config(c: LayerCase, batch: int = N, seed: int = 7) -> dict[str, Any]:
    """A config that checks case ``c`` in a network: its input(s) batched, ``batch``
    examples of seeded random values (several inputs of a multi-input layer are several
    network inputs), the layer named ``under_test``, then a flatten and a dense head of 3
    under softmax cross-entropy. Plugins: the cs231n functions."""
    import numpy as np
    from cs231n import PATH

    rng = np.random.default_rng(seed)
    shapes = c.in_shape if isinstance(c.in_shape, list) else [c.in_shape]
    values = [rng.standard_normal((batch, *shape)).tolist() for shape in shapes]
    under_test = {**c.item(), "name": "under_test"}
    config: dict[str, Any] = {"seed": 11, "plugins": [str(PATH)]}
    if len(shapes) > 1:
        names = [f"x{i}" for i in range(len(shapes))]
        config["inputs"] = {
            n: {"value": v, "batched": True} for n, v in zip(names, values, strict=True)
        }
        under_test["inputs"] = [f"input.{n}" for n in names]
    else:
        config["input"] = {"value": values[0], "batched": True}
    config["layers"] = [under_test, {"type": "flatten"}, {"type": "dense", "out_features": 3}]
    config["loss"] = {"type": "softmax_cross_entropy", "target": [0, 2, 1, 1, 0][:batch]}
    return config


def case(id_: str) -> LayerCase:
    return next(c for c in LAYER_CASES + MULTI_CASES if c.id == id_)


def first_of_each_type() -> dict[str, LayerCase]:
    """type -> its first case (the one the engine and protocol tests use)."""
    out: dict[str, LayerCase] = {}
    for c in LAYER_CASES + MULTI_CASES:
        out.setdefault(c.type, c)
    return out


def declaring(attribute: str) -> list[LayerCase]:
    """The one-input cases whose layer declares ``attribute`` true (supports_local, ...)."""
    return [c for c in LAYER_CASES if getattr(c.construct(), attribute, False)]
