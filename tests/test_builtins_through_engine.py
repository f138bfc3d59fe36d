"""Every built-in layer and loss, checked through the tool's own engine.

Seeded random inputs and weights, a batch of 3, several channels, stride 2 and padding 1
where the layer has them: the same path a user's config takes (config -> engine).
"""

from __future__ import annotations

import numpy as np
import pytest
from cs231n import PATH
from layer_cases import N, first_of_each_type, network_config

import gradcheck_cli as gc
from gradcheck_cli.protocol import LOSSES, ORIGINS

#: The cs231n-style functions that the ``functions`` layer and ``function`` loss name.
CS231N = str(PATH)
AFFINE = {"forward": "affine_forward", "backward": "affine_backward"}

FLAT = {"shape": [3, 6], "batched": True}


def built_in(registry: dict, kind: str) -> list[str]:
    return sorted(k for k in registry if ORIGINS.get((kind, k)) == "built-in")


@pytest.mark.parametrize("kind", sorted(first_of_each_type()))
def test_built_in_layer_passes_through_the_engine(kind):
    """The first case of each type in the shared table (tests/layer_cases.py, whose guard
    says every built-in has one), as a config: its input batched, N = 3, then a dense head
    (after a flatten for an image) under softmax cross-entropy; several inputs of a
    multi-input layer are several network inputs."""
    c = first_of_each_type()[kind]
    config = network_config(c)
    report = gc.check(config)
    assert report.passed, [(c.name, c.max_rel_error) for c in report.checks if not c.passed]
    for check in report.checks:
        if check.name.startswith("input"):
            assert check.checked == int(np.prod(check.shape))
            assert check.shape[0] == N  # the batch axis is checked too
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
