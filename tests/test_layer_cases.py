"""The guard of the shared layer-case table (tests/layer_cases.py): every built-in layer
type in the registry has a case, so every suite that draws from the table covers it."""

from __future__ import annotations

import numpy as np
import yaml
from layer_cases import LAYER_CASES, MULTI_CASES, N, first_of_each_type, network_config

import gradcheck_cli.layers  # noqa: F401  (registers the built-in layers)
from gradcheck_cli.protocol import LAYERS, ORIGINS, takes_several


def built_in_layers() -> set[str]:
    return {name for name in LAYERS if ORIGINS.get(("layer", name)) == "built-in"}


def test_every_built_in_layer_type_has_a_case():
    one_input = {n for n in built_in_layers() if not takes_several(LAYERS[n])}
    several = built_in_layers() - one_input
    assert one_input == {c.type for c in LAYER_CASES}
    assert several == {c.type for c in MULTI_CASES}


def test_case_ids_are_unique():
    ids = [c.id for c in LAYER_CASES + MULTI_CASES]
    assert len(ids) == len(set(ids))


def test_every_case_builds_and_runs_its_forward():
    """A case the suites could not use would silently test nothing."""
    rng = np.random.default_rng(0)
    for c in first_of_each_type().values():
        layer = c.construct()
        if takes_several(type(layer)):
            xs = tuple(rng.standard_normal((N, *s)) for s in c.in_shape)
            params = layer.init_params(tuple(c.in_shape), rng)
            y, _ = layer.forward(xs, params)
        else:
            params = layer.init_params(c.in_shape, rng)
            y, _ = layer.forward(rng.standard_normal((N, *c.in_shape)), params)
        assert y.shape[0] == N, c.id


def test_a_case_without_torch_says_why():
    for c in LAYER_CASES:
        assert (c.torch is None) == bool(c.no_torch), c.id


def test_every_case_is_a_config_a_user_could_write():
    """The engine and purity suites run each case through the config path: no function
    objects or other non-YAML values in a case's config item."""
    for c in LAYER_CASES + MULTI_CASES:
        yaml.safe_dump(network_config(c))
