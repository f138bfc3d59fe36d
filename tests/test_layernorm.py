"""layernorm: against torch.nn.LayerNorm(in_shape) with random gamma and beta, per-example
statistics, its parameters shaped like one example, the config and schema, the engine
(with a wrong backward caught and blamed), and explain.

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
from gradcheck_cli.layers.layernorm import LayerNorm
from gradcheck_cli.protocol import FieldError, register_layer
from gradcheck_cli.schema import config_schema

RTOL = 1e-10


def random_case(shape: tuple[int, ...], seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3.0 + 1.5  # a mean and a scale to normalise away
    params = {
        "gamma": rng.uniform(0.5, 2.0, shape[1:]) * rng.choice([-1, 1], shape[1:]),
        "beta": rng.normal(size=shape[1:]),
    }
    return x, params, rng


@pytest.mark.parametrize(
    ("shape", "eps"),
    [((4, 6), 1e-5), ((1, 5), 1e-5), ((3, 2, 4, 5), 1e-5), ((2, 3, 4), 1e-3), ((3, 2), 0.5)],
    ids=["flat", "flat-n1", "image", "plane", "flat-eps"],
)
def test_matches_torch_layernorm(shape, eps):
    torch = pytest.importorskip("torch")
    x, params, rng = random_case(shape)
    layer = LayerNorm(eps=eps)
    assert layer.output_shape(shape[1:]) == shape[1:]
    y, cache = layer.forward(x, params)
    dy = rng.standard_normal(y.shape)
    dx, grads = layer.backward(dy, cache, params)

    module = torch.nn.LayerNorm(shape[1:], eps=eps, dtype=torch.float64)
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


def test_each_example_is_normalised_over_all_of_its_values():
    x, _, _ = random_case((3, 2, 4, 4))
    ones = {"gamma": np.ones((2, 4, 4)), "beta": np.zeros((2, 4, 4))}
    y, _ = LayerNorm().forward(x, ones)
    per_example = y.reshape(3, -1)
    np.testing.assert_allclose(per_example.mean(axis=1), 0, atol=1e-14)
    var = x.reshape(3, -1).var(axis=1)
    np.testing.assert_allclose(per_example.var(axis=1), var / (var + 1e-5), rtol=1e-12)  # biased


def test_rows_do_not_depend_on_the_rest_of_the_batch():
    """Why it declares batch_independent = True, unlike batchnorm."""
    assert LayerNorm.batch_independent is True
    x, params, _ = random_case((4, 3))
    y, _ = LayerNorm().forward(x, params)
    moved = x.copy()
    moved[0] += np.array([0.5, -1.0, 2.0])
    y2, _ = LayerNorm().forward(moved, params)
    np.testing.assert_array_equal(y2[1:], y[1:])
    assert np.all(np.abs(y2[0] - y[0]) > 1e-3)


def test_params_default_to_ones_and_zeros_shaped_like_one_example():
    rng = np.random.default_rng(0)
    params = LayerNorm().init_params((2, 3, 4), rng)
    assert {k: v.shape for k, v in params.items()} == {"gamma": (2, 3, 4), "beta": (2, 3, 4)}
    assert np.all(params["gamma"] == 1.0) and np.all(params["beta"] == 0.0)


def test_one_value_per_example_gives_beta_and_a_zero_input_gradient():
    """As in PyTorch, which allows it: x_hat is 0, y = beta whatever x."""
    layer = LayerNorm()
    params = {"gamma": np.array([2.0]), "beta": np.array([0.25])}
    y, cache = layer.forward(np.array([[3.0], [-1.0]]), params)
    np.testing.assert_array_equal(y, [[0.25], [0.25]])
    dx, grads = layer.backward(np.array([[1.0], [2.0]]), cache, params)
    np.testing.assert_array_equal(dx, [[0.0], [0.0]])
    np.testing.assert_array_equal(grads["beta"], [3.0])


# --- the config ----------------------------------------------------------------------------


def ln_doc(x, **item) -> dict:
    return {
        "input": {"value": x, "batched": True},
        "layers": [{"type": "layernorm", "name": "ln", **item}],
        "loss": {"type": "upstream", "grad": np.ones(np.shape(x)).tolist()},
    }


def issues(doc) -> list[str]:
    with pytest.raises(gc.ConfigError) as info:
        problem_from_dict(doc)
    return [f"{i.path}: {i.message}" for i in info.value.issues]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"eps": 0}, "layers[0].eps: must be a number > 0, got 0.0"),
        ({"eps": "tiny"}, "layers[0].eps: must be a number, got 'tiny'"),
        ({"gamma": [1.0, 2.0]}, "layers[0].gamma: gamma has shape [2] but this layer needs [3]"),
        ({"axis": 1}, "layers[0].axis: unknown key 'axis' for layernorm"),
    ],
)
def test_bad_fields_name_the_key(item, expected):
    (message,) = issues(ln_doc([[1.0, 2.0, 3.0], [0.0, 1.0, 5.0]], **item))
    assert message.startswith(expected)


def test_gamma_and_beta_may_be_given_shaped_like_one_example():
    x = np.arange(12.0).reshape(2, 2, 3).tolist()  # two (2, 3) examples, not images
    problem = problem_from_dict(ln_doc(x, gamma=[[1, 2, 3], [4, 5, 6]]))
    (spec,) = problem.layers
    assert spec.in_shape == (2, 3) and spec.params["gamma"].shape == (2, 3)
    np.testing.assert_array_equal(spec.params["beta"], np.zeros((2, 3)))
    (message,) = issues(ln_doc(x, beta=0.5))
    assert message == (
        "layers[0].beta: beta has shape [] but this layer needs [2, 3] (the shape of one "
        "example) for its input of shape [2, 3]"
    )


def test_direct_use_checks_eps():
    with pytest.raises(FieldError) as info:
        LayerNorm(eps=float("nan"))
    assert info.value.field == "eps"


def test_schema_lists_eps_with_its_bound_and_the_defaults():
    own = config_schema()["$defs"]["layer.layernorm"]
    assert own["properties"]["eps"]["default"] == 1e-5
    assert own["properties"]["eps"]["anyOf"][0] == {"type": "number", "exclusiveMinimum": 0}
    assert own["properties"]["gamma"]["description"] == "parameter gamma; default: ones"
    assert own["properties"]["beta"]["description"] == "parameter beta; default: zeros"


# --- through the engine --------------------------------------------------------------------

NETWORK = {
    "seed": 4,
    "input": {"shape": [3, 2, 4, 4], "batched": True},
    "layers": [
        {"type": "conv2d", "name": "conv", "out_channels": 3, "kernel_size": 3, "padding": 1},
        {"type": "layernorm", "name": "ln"},
        {"type": "tanh"},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 4},
        {"type": "layernorm", "name": "ln_flat", "eps": 1e-3},
    ],
    "loss": {"type": "softmax_cross_entropy", "target": [0, 3, 1]},
}


def test_a_network_with_layernorm_passes_the_full_check():
    report = gc.check(NETWORK)
    assert report.passed, [(c.name, c.max_rel_error) for c in report.checks if not c.passed]
    assert report.check("ln.gamma").checked == 3 * 4 * 4
    assert report.check("ln_flat.beta").checked == 4
    assert all(v.passed for v in report.layers)


class ForgetsTheMeanPath(LayerNorm):
    """The classic slip: dx = gamma * d / sqrt(var + eps), as if the example's mean and
    variance did not depend on x."""

    def backward(self, dy, cache, params):
        _, grads = super().backward(dy, cache, params)
        return dy * params["gamma"] * cache.inv_std, grads


class ForgetsTheBatchSum(LayerNorm):
    """dgamma from the first example only."""

    def backward(self, dy, cache, params):
        dx, grads = super().backward(dy, cache, params)
        return dx, {**grads, "gamma": dy[0] * cache.x_hat[0]}


@pytest.mark.parametrize(
    ("cls", "wrong", "right"),
    [(ForgetsTheMeanPath, "input", "ln.gamma"), (ForgetsTheBatchSum, "ln.gamma", "input")],
    ids=["mean-path", "batch-sum"],
)
def test_a_wrong_layernorm_backward_fails_and_is_blamed(clean_registry, cls, wrong, right):
    register_layer("layernorm_wrong")(cls)
    network = {**NETWORK, "layers": [dict(item) for item in NETWORK["layers"]]}
    network["layers"][1]["type"] = "layernorm_wrong"
    report = gc.check(network)
    assert not report.passed
    assert report.blamed_layers() == ["ln"]
    assert not report.check(wrong).passed
    assert report.check(right).passed and report.check("fc.weight").passed


def test_explain_tells_the_layernorm_backward():
    problem = problem_from_dict(NETWORK)
    step = explain(problem, example=1).steps[1]
    (note,) = step.details
    assert isinstance(note, Note) and note.text.startswith("layer norm: dE/dx = (d - mean(d)")
    assert set(step.grads) == {"gamma", "beta"}
