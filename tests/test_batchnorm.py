"""batchnorm: against PyTorch's BatchNorm1d/2d in training, through the engine (a layer
that is not batch-independent), its refusal of one-value statistics, and explain.

The generic tables (tests/test_layers.py, test_builtins_through_engine.py,
test_vs_torch.py, test_stacks_vs_torch.py) cover it too, as every built-in.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck_cli as gc
import gradcheck_cli.layers  # noqa: F401  (registers the built-in layers)
from gradcheck_cli.config import problem_from_dict
from gradcheck_cli.engine.explain import Note, explain
from gradcheck_cli.layers.batchnorm import BatchNorm
from gradcheck_cli.protocol import FieldError, register_layer
from gradcheck_cli.schema import config_schema

RTOL = 1e-8


def random_case(shape: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3.0 + 1.5  # a mean and a scale to normalise away
    c = shape[1]
    params = {
        "gamma": rng.uniform(0.5, 2.0, c) * rng.choice([-1, 1], c),
        "beta": rng.normal(size=c),
    }
    return x, params, rng


@pytest.mark.parametrize(
    ("shape", "eps"),
    [((6, 4), 1e-5), ((2, 3), 1e-5), ((3, 2, 4, 5), 1e-5), ((1, 3, 2, 2), 1e-3), ((4, 5), 0.1)],
    ids=["flat", "flat-n2", "image", "image-n1", "flat-eps"],
)
def test_matches_torch_batchnorm_in_training(shape, eps):
    torch = pytest.importorskip("torch")
    x, params, rng = random_case(shape)
    layer = BatchNorm(eps=eps, batch_size=shape[0])
    assert layer.output_shape(shape[1:]) == shape[1:]
    y, cache = layer.forward(x, params)
    dy = rng.standard_normal(y.shape)
    dx, grads = layer.backward(dy, cache, params)

    module = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        shape[1], eps=eps, dtype=torch.float64
    )
    module.train()
    with torch.no_grad():
        module.weight.copy_(torch.tensor(params["gamma"]))
        module.bias.copy_(torch.tensor(params["beta"]))
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    (yt * torch.tensor(dy)).sum().backward()
    for ours, theirs in [
        (y, yt),
        (dx, xt.grad),
        (grads["gamma"], module.weight.grad),
        (grads["beta"], module.bias.grad),
    ]:
        theirs = theirs.detach().numpy()
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=RTOL * np.abs(theirs).max())


def test_output_is_normalised_per_feature_and_per_channel():
    x, _, _ = random_case((5, 3))
    y, _ = BatchNorm().forward(x, {"gamma": np.ones(3), "beta": np.zeros(3)})
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-14)
    np.testing.assert_allclose(y.var(axis=0), 1 - 1e-5 / x.var(axis=0), rtol=1e-6)  # biased
    x, _, _ = random_case((2, 3, 4, 4))
    y, _ = BatchNorm().forward(x, {"gamma": np.full(3, 2.0), "beta": np.full(3, -1.0)})
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), -1.0, atol=1e-14)


def test_rows_depend_on_the_rest_of_the_batch():
    """Why it declares batch_independent = False: moving example 0 moves example 1."""
    assert BatchNorm.batch_independent is False
    x, params, _ = random_case((4, 3))
    layer = BatchNorm()
    y, _ = layer.forward(x, params)
    x2 = x.copy()
    x2[0, 1] += 0.5
    y2, _ = layer.forward(x2, params)
    assert np.all(np.abs(y2[1:, 1] - y[1:, 1]) > 1e-3)
    np.testing.assert_array_equal(y2[:, [0, 2]], y[:, [0, 2]])  # features stay apart


def test_params_default_to_ones_and_zeros_shaped_per_channel():
    rng = np.random.default_rng(0)
    assert {k: v.tolist() for k, v in BatchNorm().init_params((3,), rng).items()} == {
        "gamma": [1.0, 1.0, 1.0],
        "beta": [0.0, 0.0, 0.0],
    }
    assert BatchNorm().init_params((2, 5, 5), rng)["gamma"].shape == (2,)


# --- the config --------------------------------------------------------------------------


def bn_doc(x, **item) -> dict:
    batched = np.ndim(x) > 1 and item.pop("batched", True)
    return {
        "input": {"value": x, "batched": True} if batched else x,
        "layers": [{"type": "batchnorm", "name": "bn", **item}],
        "loss": {"type": "upstream", "grad": np.ones(np.shape(x)).tolist()},
    }


def issues(doc) -> list[str]:
    with pytest.raises(gc.ConfigError) as info:
        problem_from_dict(doc)
    return [f"{i.path}: {i.message}" for i in info.value.issues]


def test_one_flat_example_is_refused_as_pytorch_does():
    (message,) = issues(bn_doc([1.0, 2.0, 3.0]))
    assert message.startswith(
        "layers[0].type: batchnorm normalises each feature over the batch, and here that is "
        "one value: its variance is 0 and every output would be beta whatever the input"
    )
    assert "at least 2 examples" in message and "batched: true" in message


def test_one_value_per_channel_is_refused_but_one_image_is_not():
    (message,) = issues(bn_doc([[[[1.0]], [[2.0]]]]))  # N=1, C=2, 1x1
    assert message.startswith("layers[0].type: batchnorm normalises each channel over N, H, W")
    problem = problem_from_dict(bn_doc([[[1.0, 2.0], [0.0, 5.0]]], batched=False))  # (1, 2, 2)
    assert problem.layers[0].out_shape == (1, 2, 2)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"eps": 0}, "layers[0].eps: must be a number > 0, got 0.0"),
        ({"eps": -1e-3}, "layers[0].eps: must be a number > 0, got -0.001"),
        ({"eps": "tiny"}, "layers[0].eps: must be a number, got 'tiny'"),
        ({"batch_size": 4}, "layers[0].batch_size: is set from the input's batch size; remove it"),
        ({"gamma": [1.0, 2.0]}, "layers[0].gamma: gamma has shape [2] but this layer needs [3]"),
    ],
)
def test_bad_fields_name_the_key(item, expected):
    (message,) = issues(bn_doc([[1.0, 2.0, 3.0], [0.0, 1.0, 5.0]], **item))
    assert message.startswith(expected)


def test_a_2d_input_is_neither_flat_nor_an_image():
    (message,) = issues(bn_doc([[1.0, 2.0], [3.0, 4.0]], batched=False))
    assert message == (
        "layers[0].type: batchnorm normalises a flat (features,) input per feature or a "
        "(channels, height, width) input per channel, got shape [2, 2]"
    )


def test_direct_use_checks_eps_and_skips_the_batch_rule_without_a_batch_size():
    with pytest.raises(FieldError) as info:
        BatchNorm(eps=float("nan"))
    assert info.value.field == "eps"
    assert BatchNorm().output_shape((4,)) == (4,)
    with pytest.raises(FieldError):
        BatchNorm(batch_size=1).output_shape((4,))


def test_schema_lists_eps_with_its_bound_and_no_batch_size():
    own = config_schema()["$defs"]["layer.batchnorm"]
    assert own["properties"]["eps"]["default"] == 1e-5
    assert own["properties"]["eps"]["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0}
    assert own["properties"]["gamma"]["description"] == "parameter gamma; default: ones"
    assert own["properties"]["beta"]["description"] == "parameter beta; default: zeros"
    assert "batch_size" not in own["properties"]


# --- through the engine --------------------------------------------------------------------

NETWORK = {
    "seed": 4,
    "input": {"shape": [3, 2, 4, 4], "batched": True},
    "layers": [
        {"type": "conv2d", "name": "conv", "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"type": "batchnorm", "name": "bn", "gamma": [1.5, -0.5, 2.0], "beta": [0.1, 0, -0.2]},
        {"type": "tanh"},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 4},
        {"type": "batchnorm", "name": "bn_flat", "eps": 1e-3},
    ],
    "loss": {"type": "softmax_cross_entropy", "target": [0, 3, 1]},
}


def test_a_batched_network_with_batchnorm_passes_the_full_check():
    report = gc.check(NETWORK)
    assert report.passed, [(c.name, c.max_rel_error) for c in report.checks if not c.passed]
    assert report.check("input").checked == 3 * 2 * 4 * 4
    assert report.check("bn.gamma").checked == 3
    assert all(v.passed for v in report.layers)


class ForgetsTheMeanPath(BatchNorm):
    """The classic slip: dx = gamma * d / sqrt(var + eps), as if the mean and variance
    did not depend on x."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        gamma = params["gamma"].reshape(-1, *(1,) * (dy.ndim - 2))
        return dy * gamma * cache.inv_std, grads


def test_a_wrong_batchnorm_backward_fails_and_is_blamed(clean_registry):
    register_layer("batchnorm_forgets_the_mean")(ForgetsTheMeanPath)
    network = {**NETWORK, "layers": [dict(item) for item in NETWORK["layers"]]}
    network["layers"][1]["type"] = "batchnorm_forgets_the_mean"
    report = gc.check(network)
    assert not report.passed
    assert report.blamed_layers() == ["bn"]
    assert not report.check("input").passed and report.check("input").consequence_of == "bn"
    assert report.check("bn.gamma").passed and report.check("fc.weight").passed


def test_explain_tells_the_batchnorm_backward():
    problem = problem_from_dict(NETWORK)
    step = explain(problem, example=1).steps[1]
    (note,) = step.details
    assert isinstance(note, Note) and note.text.startswith("batch norm: dE/dx = gamma")
    assert set(step.grads) == {"gamma", "beta"}
