"""Every built-in layer and loss, checked through the tool's own engine.

Seeded random inputs and weights, a batch of 3, several channels, stride 2 and padding 1
where the layer has them: the same path a user's config takes (config -> engine).
"""

from __future__ import annotations

import numpy as np
import pytest
from cs231n import PATH

import gradcheck_cli as gc
from gradcheck_cli.protocol import LAYERS, LOSSES, ORIGINS, takes_several

#: The cs231n-style functions that the ``functions`` layer and ``function`` loss name.
CS231N = str(PATH)
AFFINE = {"forward": "affine_forward", "backward": "affine_backward"}

IMAGE = {"shape": [3, 3, 7, 7], "batched": True}  # N=3, C=3, 7x7
FLAT = {"shape": [3, 6], "batched": True}

#: type -> (input, the layers around it); the layer under test is named "under_test"
CASES = {
    "conv2d": (
        IMAGE,
        [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}],
    ),
    "maxpool2d": (IMAGE, [{"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1}]),
    "avgpool2d": (IMAGE, [{"type": "avgpool2d", "kernel_size": 3, "stride": 2, "padding": 1}]),
    "dense": (FLAT, [{"type": "dense", "out_features": 4}]),
    "relu": (FLAT, [{"type": "relu"}]),
    "leaky_relu": (FLAT, [{"type": "leaky_relu", "negative_slope": 0.1}]),
    "sigmoid": (FLAT, [{"type": "sigmoid"}]),
    "tanh": (FLAT, [{"type": "tanh"}]),
    "softmax": (IMAGE, [{"type": "softmax"}]),
    "flatten": (IMAGE, [{"type": "flatten"}]),
    "dropout": (FLAT, [{"type": "dropout", "p": 0.3, "seed": 5}]),
    "batchnorm": (IMAGE, [{"type": "batchnorm", "eps": 1e-3}]),
    "layernorm": (IMAGE, [{"type": "layernorm", "eps": 1e-3}]),
    "gelu": (FLAT, [{"type": "gelu"}]),
    "global_avgpool2d": (IMAGE, [{"type": "global_avgpool2d"}]),
    "upsample2d": (IMAGE, [{"type": "upsample2d", "scale": [2, 1]}]),
    "transpose": (IMAGE, [{"type": "transpose", "axes": [1, 2, 0]}]),
    "functions": (
        FLAT,
        [{"type": "functions", **AFFINE, "params": {"w": {"shape": [6, 4]}, "b": [0, 1, 0, 1]}}],
    ),
}


def built_in(registry: dict, kind: str) -> list[str]:
    return sorted(k for k in registry if ORIGINS.get((kind, k)) == "built-in")


def test_every_built_in_layer_has_a_case():
    """Multi-input layers (add, concat, ...) are checked on graphs: tests/test_graphs.py."""
    import gradcheck_cli.layers  # noqa: F401  (registers the built-ins)

    one_input = [k for k in built_in(LAYERS, "layer") if not takes_several(LAYERS[k])]
    assert sorted(CASES) == one_input


@pytest.mark.parametrize("kind", sorted(CASES))
def test_built_in_layer_passes_through_the_engine(kind):
    x, layers = CASES[kind]
    under_test = {**layers[0], "name": "under_test"}
    head = [] if kind == "flatten" else [{"type": "flatten"}] if x is IMAGE else []
    config = {
        "seed": 11,
        "plugins": [CS231N],
        "input": x,
        "layers": [under_test, *head, {"type": "dense", "out_features": 3}],
        "loss": {"type": "softmax_cross_entropy", "target": [0, 2, 1]},
    }
    report = gc.check(config)
    assert report.passed, [(c.name, c.max_rel_error) for c in report.checks if not c.passed]
    input_check = report.check("input")
    assert input_check.checked == int(np.prod(input_check.shape))
    assert input_check.shape[0] == 3  # the batch axis is checked too
    own = next(v for v in report.layers if v.name == "under_test")
    assert own.passed and own.checked + own.directions > 0


LOSS_CASES = {
    "mse": {"type": "mse", "target": [[0.5, -1, 0], [1, 0, 2], [0, 0, 1]]},
    "cross_entropy": {"type": "cross_entropy", "target": [0, 2, 1]},
    "softmax_cross_entropy": {"type": "softmax_cross_entropy", "target": [1, 1, 0]},
    "upstream": {"type": "upstream", "grad": [[1, -2, 0.5], [0, 1, 1], [3, 0, -1]]},
    "function": {"type": "function", "function": "softmax_loss", "target": [0, 2, 1]},
}


def test_every_built_in_loss_has_a_case():
    import gradcheck_cli.losses  # noqa: F401

    assert sorted(LOSS_CASES) == built_in(LOSSES, "loss")


@pytest.mark.parametrize("kind", sorted(LOSS_CASES))
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_built_in_loss_passes_through_the_engine(kind, reduction):
    head = [{"type": "softmax"}] if kind == "cross_entropy" else []
    config = {
        "seed": 3,
        "plugins": [CS231N],
        "input": FLAT,
        "layers": [{"type": "dense", "out_features": 3}, *head],
        "loss": {**LOSS_CASES[kind], "reduction": reduction},
    }
    report = gc.check(config)
    assert report.passed
    assert next(v for v in report.layers if v.name == "loss").passed
