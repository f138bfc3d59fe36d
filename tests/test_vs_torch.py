"""Every built-in layer and loss against PyTorch's autograd, float64, to 1e-10 relative.

Skipped when torch is not installed (it is not a dependency).
"""

from __future__ import annotations

import numpy as np
import pytest
from cs231n import layers as cs231n

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gradcheck_cli.layers  # noqa: E402, F401  (registers the built-in layers)
import gradcheck_cli.losses  # noqa: E402, F401
from gradcheck_cli.protocol import (  # noqa: E402
    LAYERS,
    LOSSES,
    ORIGINS,
    RandomArray,
    takes_several,
)

RTOL, ATOL = 1e-10, 1e-13


def close(ours: np.ndarray, theirs) -> None:
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=RTOL, atol=ATOL)


def batch_norm(x, p, eps):
    """BatchNorm1d/2d in training: batch statistics, biased variance."""
    return F.batch_norm(x, None, None, p["gamma"], p["beta"], training=True, eps=eps)


def layer_norm(x, p, eps):
    """torch.nn.LayerNorm(in_shape): statistics over all of an example's axes."""
    return F.layer_norm(x, tuple(x.shape[1:]), p["gamma"], p["beta"], eps=eps)


def conv(kw):
    return lambda x, p: F.conv2d(
        x, p["weight"], p.get("bias"), kw.get("stride", 1), kw.get("padding", 0)
    )


# (id, type, kwargs, per-example input shape, torch function of (x, params))
LAYER_CASES = [
    ("dense", "dense", {"out_features": 4}, (5,), lambda x, p: F.linear(x, **p)),
    (
        "dense-nobias",
        "dense",
        {"out_features": 3, "bias": False},
        (6,),
        lambda x, p: F.linear(x, p["weight"]),
    ),
    (
        "conv-s2-p1",
        "conv2d",
        {"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1},
        (3, 7, 6),
        conv({"stride": 2, "padding": 1}),
    ),
    (
        "conv-rect",
        "conv2d",
        {"out_channels": 3, "kernel_size": [2, 3], "stride": [1, 2], "padding": [0, 1]},
        (2, 5, 5),
        conv({"stride": (1, 2), "padding": (0, 1)}),
    ),
    (
        "conv-nobias",
        "conv2d",
        {"out_channels": 2, "kernel_size": 2, "bias": False},
        (1, 5, 5),
        conv({}),
    ),
    (
        "maxpool-overlap",
        "maxpool2d",
        {"kernel_size": 3, "stride": 1},
        (2, 5, 6),
        lambda x, p: F.max_pool2d(x, 3, 1),
    ),
    (
        "maxpool-s2-p1",
        "maxpool2d",
        {"kernel_size": 3, "stride": 2, "padding": 1},
        (2, 5, 5),
        lambda x, p: F.max_pool2d(x, 3, 2, 1),
    ),
    (
        "avgpool-s2-p1",
        "avgpool2d",
        {"kernel_size": 3, "stride": 2, "padding": 1},
        (2, 5, 5),
        lambda x, p: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True),
    ),
    (
        "avgpool-rect",
        "avgpool2d",
        {"kernel_size": [2, 3], "stride": 1},
        (2, 4, 5),
        lambda x, p: F.avg_pool2d(x, (2, 3), 1),
    ),
    ("relu", "relu", {}, (2, 3, 4), lambda x, p: F.relu(x)),
    (
        "leaky_relu",
        "leaky_relu",
        {"negative_slope": 0.2},
        (2, 3, 4),
        lambda x, p: F.leaky_relu(x, 0.2),
    ),
    ("sigmoid", "sigmoid", {}, (2, 3, 4), lambda x, p: torch.sigmoid(x)),
    ("tanh", "tanh", {}, (7,), lambda x, p: torch.tanh(x)),
    ("softmax-flat", "softmax", {}, (6,), lambda x, p: F.softmax(x, dim=1)),
    ("softmax-chw", "softmax", {}, (3, 2, 2), lambda x, p: F.softmax(x, dim=1)),
    ("flatten", "flatten", {}, (2, 3, 4), lambda x, p: torch.flatten(x, 1)),
    ("batchnorm-flat", "batchnorm", {}, (5,), lambda x, p: batch_norm(x, p, 1e-5)),
    ("batchnorm-chw", "batchnorm", {"eps": 0.01}, (2, 3, 4), lambda x, p: batch_norm(x, p, 0.01)),
    ("layernorm-flat", "layernorm", {}, (5,), lambda x, p: layer_norm(x, p, 1e-5)),
    ("layernorm-chw", "layernorm", {"eps": 0.01}, (2, 3, 4), lambda x, p: layer_norm(x, p, 0.01)),
    ("gelu", "gelu", {}, (2, 3, 4), lambda x, p: F.gelu(x, approximate="none")),
    (
        "global_avgpool2d",
        "global_avgpool2d",
        {},
        (3, 4, 5),
        lambda x, p: F.adaptive_avg_pool2d(x, 1).flatten(1),
    ),
    (
        "upsample2d",
        "upsample2d",
        {"scale": 2},
        (2, 3, 4),
        lambda x, p: F.interpolate(x, scale_factor=2, mode="nearest"),
    ),
    (
        "upsample2d-rect",
        "upsample2d",
        {"scale": [3, 1]},
        (2, 2, 3),
        lambda x, p: F.interpolate(x, scale_factor=(3, 1), mode="nearest"),
    ),
    (
        "transpose-chw",
        "transpose",
        {"axes": [1, 2, 0]},
        (2, 3, 4),
        lambda x, p: x.permute(0, 2, 3, 1),
    ),
    ("transpose-2d", "transpose", {"axes": [1, 0]}, (3, 5), lambda x, p: x.permute(0, 2, 1)),
    # the shipped cs231n functions, through the functions layer (params in forward's order)
    (
        "functions-affine",
        "functions",
        {
            "forward": cs231n.affine_forward,
            "backward": cs231n.affine_backward,
            "params": {"w": RandomArray((12, 4)), "b": RandomArray((4,))},
        },
        (3, 2, 2),
        lambda x, p: x.reshape(len(x), -1) @ p["w"] + p["b"],
    ),
    (
        "functions-conv",
        "functions",
        {
            "forward": cs231n.conv_forward_naive,
            "backward": cs231n.conv_backward_naive,
            "params": {"weight": RandomArray((2, 3, 3, 3)), "bias": RandomArray((2,))},
            "args": [{"stride": 2, "pad": 1}],
        },
        (3, 7, 6),
        conv({"stride": 2, "padding": 1}),
    ),
    (
        "functions-batchnorm",
        "functions",
        {
            "forward": cs231n.batchnorm_forward,
            "backward": cs231n.batchnorm_backward,
            "params": {"gamma": RandomArray((5,)), "beta": RandomArray((5,))},
            "args": [{"mode": "train", "eps": 1e-5}],
        },
        (5,),
        lambda x, p: batch_norm(x, p, 1e-5),
    ),
]


def test_every_builtin_layer_is_compared():
    """Multi-input layers (add, concat, ...) are compared in tests/test_graphs_vs_torch.py."""
    builtin = {name for name in LAYERS if ORIGINS.get(("layer", name)) == "built-in"}
    one_input = {n for n in builtin if not takes_several(LAYERS[n])}
    assert one_input - {"dropout"} == {c[1] for c in LAYER_CASES}  # dropout: see below


@pytest.mark.parametrize(
    ("type_name", "kwargs", "in_shape", "torch_fn"),
    [c[1:] for c in LAYER_CASES],
    ids=[c[0] for c in LAYER_CASES],
)
def test_layer_matches_torch(type_name, kwargs, in_shape, torch_fn):
    rng = np.random.default_rng(0)
    layer = LAYERS[type_name](**kwargs)
    params = layer.init_params(in_shape, rng)
    size = 3 * int(np.prod(in_shape))
    # Distinct values away from 0: no ties in a pooling window, no relu kinks.
    x = ((rng.permutation(size) - size / 2 + 0.5) * (4.0 / size)).reshape(3, *in_shape)
    y, cache = layer.forward(x, params)
    r = rng.standard_normal(y.shape)
    dx, grads = layer.backward(r, cache, params)

    xt = torch.tensor(x, requires_grad=True)
    pt = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    yt = torch_fn(xt, pt)
    (yt * torch.tensor(r)).sum().backward()
    close(y, yt)
    close(dx, xt.grad)
    for k in params:
        close(grads[k], pt[k].grad)


def test_dropout_matches_torch_scaling():
    """torch's mask comes from its own RNG; compare the inverted scaling it applies."""
    layer = LAYERS["dropout"](p=0.3, seed=2, batch_size=2)
    x = np.random.default_rng(1).standard_normal((2, 40))
    y, cache = layer.forward(x, {})
    kept = torch.tensor(y != 0, dtype=torch.float64)
    xt = torch.tensor(x, requires_grad=True)
    yt = xt * kept / (1 - 0.3)  # what torch.nn.functional.dropout computes for that mask
    yt.sum().backward()
    close(y, yt)
    close(layer.backward(np.ones_like(x), cache, {})[0], xt.grad)


def _probs(rng, shape):
    e = np.exp(rng.standard_normal(shape))
    return e / e.sum(axis=1, keepdims=True)


LOSS_CASES = ["mse", "upstream", "cross_entropy", "sce-index", "sce-dist", "sce-dist-chw"]


def test_every_builtin_loss_is_compared():
    builtin = {name for name in LOSSES if ORIGINS.get(("loss", name)) == "built-in"}
    assert builtin == {"mse", "upstream", "cross_entropy", "softmax_cross_entropy", "function"}


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_function_loss_matches_torch(reduction):
    """cs231n's softmax_loss through the function loss: after the engine's reduction
    (a sum, or a mean over N) the loss and dscores are the function's, which are
    torch's cross-entropy averaged over the batch, whatever reduction is declared."""
    rng = np.random.default_rng(5)
    y = 3 * rng.standard_normal((3, 5))
    loss = LOSSES["function"](cs231n.softmax_loss, reduction)
    target = loss.prepare_target(np.array([4.0, 0.0, 2.0]), (5,))
    assert target.dtype == np.int64  # labels reach the function as integers
    losses, cache = loss.forward(y, target)
    n = 3 if reduction == "mean" else 1
    yt = torch.tensor(y, requires_grad=True)
    lt = F.cross_entropy(yt, torch.tensor(target), reduction="mean")
    lt.backward()
    close(losses.sum() / n, lt)
    close(loss.backward(cache) / n, yt.grad)


@pytest.mark.parametrize("case_id", LOSS_CASES)
def test_loss_matches_torch(case_id):
    rng = np.random.default_rng(3)
    if case_id in ("mse", "upstream"):
        y, target = rng.standard_normal((3, 2, 3)), rng.standard_normal((3, 2, 3))
        loss = LOSSES[case_id]()

        def torch_fn(yt):
            tt = torch.tensor(target)
            return 0.5 * ((tt - yt) ** 2).sum((1, 2)) if case_id == "mse" else (tt * yt).sum((1, 2))

    elif case_id == "cross_entropy":
        y, target = _probs(rng, (3, 5)), _probs(rng, (3, 5))
        loss = LOSSES["cross_entropy"]()

        def torch_fn(yt):
            return -(torch.tensor(target) * torch.log(yt)).sum(1)

    else:
        loss = LOSSES["softmax_cross_entropy"]()
        shape = (3, 4, 2, 3) if case_id == "sce-dist-chw" else (3, 5)
        y = 3 * rng.standard_normal(shape)
        if case_id == "sce-index":
            k = np.array([4, 0, 2])
            target = loss.prepare_target(k.astype(float), shape[1:])

            def torch_fn(yt):
                return F.cross_entropy(yt, torch.tensor(k), reduction="none")

        else:
            target = _probs(rng, shape)

            def torch_fn(yt):
                per = F.cross_entropy(yt, torch.tensor(target), reduction="none")
                return per.reshape(3, -1).sum(1)  # per pixel -> per example

    losses, cache = loss.forward(y, target)
    dy = loss.backward(cache)
    yt = torch.tensor(y, requires_grad=True)
    lt = torch_fn(yt)
    lt.sum().backward()
    close(losses, lt)
    close(dy, yt.grad)
