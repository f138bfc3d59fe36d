"""Every built-in layer and loss against PyTorch's autograd, float64, to 1e-10 relative.

Skipped when torch is not installed (it is not a dependency).
"""

from __future__ import annotations

import numpy as np
import pytest
from cs231n import layers as cs231n
from layer_cases import LAYER_CASES, case

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gradcheck_cli.layers  # noqa: E402, F401  (registers the built-in layers)
import gradcheck_cli.losses  # noqa: E402, F401
from gradcheck_cli.protocol import (  # noqa: E402
    LAYERS,
    LOSSES,
    ORIGINS,
)

RTOL, ATOL = 1e-10, 1e-13


def close(ours: np.ndarray, theirs) -> None:
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("case_id", [c.id for c in LAYER_CASES if c.torch is not None])
def test_layer_matches_torch(case_id):
    """Every case of the shared table (tests/layer_cases.py) that torch computes too;
    dropout's is below."""
    c = case(case_id)
    in_shape, torch_fn = c.in_shape, c.torch
    rng = np.random.default_rng(0)
    layer = c.construct()
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
