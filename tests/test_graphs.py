"""Networks as graphs, from the config a user writes to what every feature reports.

The multi-input built-ins (add, multiply, concat) against central differences; the
config syntax (``inputs:`` on layers, several network inputs, ``share:``) and its
warnings; the shipped graph configs through every mode and report; a wrong backward in
any node blamed on that node, and not on its sibling; ``explain`` at a fork, at an add
and at a shared weight. The errors are cases of the bad-config corpus
(tests/bad_configs/graph_*.yaml); the comparison with torch is tests/test_graphs_vs_torch.py.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from layer_cases import MULTI_CASES

import gradcheck_cli as gc
from gradcheck_cli.cli import cli
from gradcheck_cli.config import load_problem, problem_from_dict
from gradcheck_cli.engine import run_check
from gradcheck_cli.engine.explain import explain
from gradcheck_cli.engine.objective import NetworkObjective
from gradcheck_cli.engine.passes import analytic_pass, problem_params
from gradcheck_cli.protocol import LAYERS, FieldError, Layer
from gradcheck_cli.schema import config_schema

ROOT = Path(__file__).resolve().parent.parent
GRAPH_CONFIGS = ["fork_sum", "residual_block", "rnn_unrolled"]


def shipped(name: str) -> Path:
    return ROOT / "configs" / f"{name}.yaml"


# --------------------------------------------------------------------------- layers


def numeric_vjp(layer, xs, r, eps=1e-6):
    """Central differences of sum(r * layer(xs)) with respect to every input."""
    out = []
    for x in xs:
        g = np.zeros_like(x)
        for i in range(x.size):
            old = x.flat[i]
            x.flat[i] = old + eps
            fp = np.sum(r * layer.forward(tuple(xs), {})[0])
            x.flat[i] = old - eps
            fm = np.sum(r * layer.forward(tuple(xs), {})[0])
            x.flat[i] = old
            g.flat[i] = (fp - fm) / (2 * eps)
        out.append(g)
    return out


#: (id, type, kwargs, per-example shapes of the inputs), from the shared table
#: (tests/layer_cases.py, whose guard says every multi-input built-in has a case)
MULTI = [(c.id, c.type, c.kwargs, c.in_shape) for c in MULTI_CASES]


@pytest.mark.parametrize(
    ("type_name", "kwargs", "shapes"), [c[1:] for c in MULTI], ids=[c[0] for c in MULTI]
)
def test_multi_input_backward_matches_central_differences(type_name, kwargs, shapes):
    layer = LAYERS[type_name](**kwargs)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, *s)) for s in shapes]
    if type_name == "multiply":
        xs[0].flat[0] = 0.0  # a zero input: the gradient is a product, never y / x
    before = [x.copy() for x in xs]
    y, cache = layer.forward(tuple(xs), {})
    assert y.shape == (2, *layer.output_shape(tuple(shapes)))
    r = rng.standard_normal(y.shape)
    dxs, grads = layer.backward(r.copy(), cache, {})
    assert grads == {} and len(dxs) == len(xs)
    for x, x0 in zip(xs, before, strict=True):
        np.testing.assert_array_equal(x, x0)  # forward and backward leave the inputs alone
    for dx, want in zip(dxs, numeric_vjp(layer, xs, r), strict=True):
        np.testing.assert_allclose(dx, want, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(layer.forward(tuple(xs), {})[0], y)  # deterministic


def test_add_copies_the_delta_to_every_input():
    dy = np.arange(6.0).reshape(2, 3)
    dxs, _ = LAYERS["add"]().backward(dy, LAYERS["add"]().forward((dy, dy), {})[1], {})
    for dx in dxs:
        np.testing.assert_array_equal(dx, dy)
        assert dx is not dy  # an array of its own for each input
    assert dxs[0] is not dxs[1]


@pytest.mark.parametrize(
    ("type_name", "kwargs", "shapes", "field", "words"),
    [
        ("add", {}, [(2,), (3,)], "inputs", "must have one shape, got [2], [3]"),
        ("multiply", {}, [(2, 2), (2, 1)], "inputs", "must have one shape"),
        ("concat", {}, [(2, 3), (3, 2)], "inputs", "every other axis must agree"),
        ("concat", {}, [(2,), (2, 1)], "inputs", "as many axes"),
        ("concat", {"axis": 3}, [(2, 3, 1), (2, 3, 1)], "axis", "from -3 to 2"),
    ],
)
def test_multi_input_shape_errors_name_the_field(type_name, kwargs, shapes, field, words):
    with pytest.raises(FieldError) as err:
        LAYERS[type_name](**kwargs).output_shape(tuple(shapes))
    assert err.value.field == field and words in err.value.message


# --------------------------------------------------------------------------- config


def test_several_inputs_are_values_and_tensors_by_name():
    problem = load_problem(shipped("rnn_unrolled"))
    network = problem.network
    assert network.input_names == ["input.x1", "input.x2", "input.x3", "input.h0"]
    assert problem.tensor_names()[:4] == network.input_names
    # a shared parameter is one tensor, under its owner's name
    assert [t for t in problem.tensor_names() if "." in t and not t.startswith("input")] == [
        "Wx1.weight",
        "Wx1.bias",
        "Uh1.weight",
    ]
    assert [n.name for n in network.users("Uh1")] == ["Uh1", "Uh2", "Uh3"]
    assert network.node("Uh3").params is network.node("Uh1").params  # the owner's arrays
    assert problem.input_user_shapes()["input.h0"] == (2,)
    assert problem.x is problem.inputs["input.x1"]  # the first input, for older code


def test_a_stack_is_built_exactly_as_before():
    problem = load_problem(ROOT / "configs" / "example_b_network.yaml")
    assert problem.network.input_names == ["input"]
    previous = "input"
    for node in problem.network:
        assert node.inputs == (previous,) and node.share is None
        previous = node.name
    assert problem.warnings == []


def graph(layers, **top):
    return {"layers": layers, "loss": {"type": "mse", "target": [0.0, 0.0]}, **top}


def test_inputs_may_be_one_name_and_a_layer_may_read_the_network_input_again():
    problem = problem_from_dict(
        graph(
            [
                {"type": "dense", "name": "fc", "out_features": 2},
                {"type": "tanh", "name": "t", "inputs": "fc"},
                {"type": "add", "name": "skip", "inputs": ["t", "input"]},
            ],
            input=[1.0, -2.0],
        )
    )
    assert problem.network.node("skip").inputs == ("t", "input")
    assert [n.name for n, _ in problem.network.readers("input")] == ["fc", "skip"]


def test_random_inputs_draw_from_streams_of_their_own():
    cfg = graph(
        [{"type": "add", "inputs": ["input.a", "input.b"]}],
        inputs={"a": {"shape": [2]}, "b": {"shape": [2]}},
    )
    problem = problem_from_dict(cfg)
    a, b = problem.inputs["input.a"], problem.inputs["input.b"]
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(problem_from_dict(cfg).inputs["input.a"], a)  # seeded


def test_a_2d_input_read_by_an_image_layer_is_one_channel_per_input():
    problem = problem_from_dict(
        {
            "inputs": {"img": [[1.0, 2.0], [3.0, 4.0]], "vec": [[1.0, 2.0], [3.0, 4.0]]},
            "layers": [
                {"type": "conv2d", "name": "c", "inputs": ["input.img"], "weight": [[2.0]]},
                {"type": "flatten", "name": "f"},
                {"type": "flatten", "name": "g", "inputs": ["input.vec"]},
                {"type": "concat", "name": "cat", "inputs": ["f", "g"]},
            ],
            "loss": {"type": "mse", "target": [0.0] * 8},
        }
    )
    assert problem.inputs["input.img"].shape == (1, 1, 2, 2)  # one channel
    assert problem.inputs["input.vec"].shape == (1, 2, 2)  # read by flatten: as written
    report = run_check(problem)
    assert report.passed
    assert report.check("input.img").shape == (2, 2)  # reported as the user wrote it


def test_a_batch_shared_by_every_input():
    cfg = graph(
        [{"type": "add", "inputs": ["input.x", "input.h"]}],
        inputs={
            "x": {"value": [[1.0, 2.0], [3.0, 4.0]], "batched": True},
            "h": {"value": [[0.5, 0.5], [1.0, -1.0]], "batched": True},
        },
    )
    cfg["loss"]["target"] = [[0.0, 0.0], [1.0, 1.0]]
    problem = problem_from_dict(cfg)
    assert problem.batch_size == 2 and problem.batched
    assert run_check(problem).passed


def test_an_unread_layer_and_an_unread_input_are_warned_about():
    problem = problem_from_dict(
        {
            "inputs": {"x": [1.0, 2.0], "spare": [0.0]},
            "layers": [
                {"type": "dense", "name": "fc", "inputs": ["input.x"], "out_features": 2},
                {"type": "tanh", "name": "side"},
                {"type": "relu", "name": "out", "inputs": ["fc"]},
            ],
            "loss": {"type": "mse", "target": [0.0, 0.0]},
        }
    )
    assert problem.warnings == [
        "inputs.spare: no layer reads this input, so it cannot change the loss and its "
        "gradient is 0",
        "layers[1] (side): nothing reads its output and it is not the network's output "
        "(the last layer), so it cannot change the loss and every gradient through it is 0; "
        "read it with inputs: or remove it",
    ]
    report = run_check(problem)
    assert report.passed and report.warnings[:2] == problem.warnings
    np.testing.assert_array_equal(report.check("input.spare").analytic, [0.0])


def test_every_problem_is_reported_at_once():
    with pytest.raises(gc.ConfigError) as err:
        problem_from_dict(
            graph(
                [
                    {"type": "dense", "name": "a", "out_features": 2, "inputs": ["nope"]},
                    {"type": "dense", "name": "b", "out_features": 2, "share": "zzz"},
                    {"type": "add", "name": "c", "inputs": ["a"]},
                ],
                input=[1.0, 2.0],
            )
        )
    paths = [issue.path for issue in err.value.issues]
    assert paths == ["layers[0].inputs", "layers[1].share", "layers[2].inputs"]


def test_expectations_on_inputs_and_any_node_of_a_graph():
    report = gc.check(shipped("rnn_unrolled"))
    names = {e.name for e in report.expectations}
    assert {"input.h0.grad", "input.x3.grad", "a2.delta", "h1.output"} <= names
    assert all(e.passed for e in report.expectations)


# --------------------------------------------------------------------------- features


@pytest.mark.parametrize("name", GRAPH_CONFIGS)
@pytest.mark.parametrize(
    "mode", [{}, {"fast": True}, {"sample": 2}, {"time_budget": 5.0}, {"method": "taylor"}]
)
def test_every_mode_passes_on_the_shipped_graphs(name, mode):
    report = gc.check(shipped(name), **mode)
    assert report.passed, [(c.name, c.failed) for c in report.checks if not c.passed]
    assert [c.name for c in report.checks] == load_problem(shipped(name)).tensor_names()


def test_a_perturbation_runs_only_what_lies_downstream_of_it():
    """The prefix cache on a graph: moving conv's weight runs conv and what reads it,
    never the other branch (pool, flat, fc come from the unperturbed pass)."""
    problem = load_problem(shipped("fork_sum"))
    trace, grads = analytic_pass(problem, problem_params(problem))
    objective = NetworkObjective.build(problem, trace, grads, problem_params(problem, np.float64))
    objective.losses("conv.weight", np.arange(4), np.full(4, 1e-3))
    assert objective.copies_through == {"conv": 4, "conv_flat": 4, "head": 4}
    objective.copies_through.clear()
    objective.losses("fc.bias", np.arange(2), np.full(2, 1e-3))
    assert objective.copies_through == {"fc": 2, "head": 2}


@pytest.mark.parametrize("name", GRAPH_CONFIGS)
def test_float32_graphs_pass(name):
    config = yaml.safe_load(shipped(name).read_text())
    config.pop("expect")  # figures given to float64 precision
    assert gc.check({**config, "dtype": "float32"}).passed


def test_only_selects_a_named_input():
    report = gc.check(shipped("rnn_unrolled"), only=["input.h0", "Uh1.*"])
    assert [c.name for c in report.checks] == ["input.h0", "Uh1.weight"]
    assert set(report.skipped) >= {"input.x1", "Wx1.weight"}


def test_json_junit_and_table_name_graph_tensors(tmp_path):
    junit = tmp_path / "r.xml"
    result = CliRunner().invoke(
        cli,
        ["run", str(shipped("rnn_unrolled")), "--json", "-", "--junit", str(junit)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["input.h0"]["layer"] is None and checks["input.h0"]["shape"] == [2]
    assert checks["Uh1.weight"]["layer"] == "Uh1"
    assert [v["name"] for v in report["layers"]][:4] == ["Wx1", "Uh1", "a1", "h1"]
    cases = {c.get("name") for c in ET.parse(junit).getroot().iter("testcase")}
    assert {"input.x1", "Wx1.bias", "expect input.h0.grad"} <= cases
    table = CliRunner().invoke(cli, ["run", str(shipped("rnn_unrolled")), "--no-color"])
    assert re.search(r"input\.h0\s+\|\s+\(2\)", table.output)  # plain: ASCII borders


def test_kinks_on_a_fork_pass_and_are_counted():
    """A ReLU at exactly 0, read by two layers: the kink is proven, not a failure."""
    report = gc.check(
        graph(
            [
                {"type": "relu", "name": "r"},
                {"type": "dense", "name": "a", "out_features": 2},
                {"type": "dense", "name": "b", "out_features": 2, "inputs": ["r"]},
                {"type": "add", "name": "s", "inputs": ["a", "b"]},
            ],
            input=[0.0, 1.5, -0.5],
        )
    )
    assert report.passed
    assert report.check("input").kinks == 1


# --------------------------------------------------------------------------- blame


class Bugged(Layer):
    """Another layer with one wrong gradient: dx of one input (``slot``) or one
    parameter's gradient scaled by ``factor``; everything else is the layer's own."""

    def __init__(self, inner: Layer, slot: int | None = 0, param: str | None = None):
        self.inner, self.slot, self.param = inner, slot, param
        self.factor = 1.5
        self.param_names = inner.param_names
        for attr in ("n_inputs", "batch_independent", "input_kind", "geometry"):
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))

    def forward(self, x, params):
        return self.inner.forward(x, params)

    def backward(self, dy, cache, params):
        dx, grads = self.inner.backward(dy, cache, params)
        if self.param is not None:
            grads = {**grads, self.param: grads[self.param] * self.factor}
        elif isinstance(dx, tuple):
            dx = tuple(d * self.factor if k == self.slot else d for k, d in enumerate(dx))
        else:
            dx = dx * self.factor
        return dx, grads


def bugged(name: str, node: str, **how):
    problem = load_problem(shipped(name))
    spec = problem.network.node(node)
    spec.layer = Bugged(spec.layer, **how)
    return problem


def dx_cases():
    for name in GRAPH_CONFIGS:
        problem = load_problem(shipped(name))
        for node in problem.network:
            for slot in range(len(node.inputs)):
                yield pytest.param(name, node.name, slot, id=f"{name}-{node.name}-dx{slot}")


@pytest.mark.parametrize(("name", "node", "slot"), list(dx_cases()))
def test_a_wrong_dx_in_any_node_is_blamed_on_that_node(name, node, slot):
    report = run_check(bugged(name, node, slot=slot))
    assert not report.passed
    assert report.blamed_layers() == [node]
    own = next(v for v in report.layers if v.name == node)
    assert "factor" in (own.diagnosis or "") and "1.5" in own.diagnosis
    for c in report.checks:
        assert c.passed or c.consequence_of == node, (c.name, c.consequence_of)


def param_cases():
    for name in GRAPH_CONFIGS:
        problem = load_problem(shipped(name))
        for node in problem.network:
            for p in node.params:
                yield pytest.param(name, node.name, p, id=f"{name}-{node.name}-{p}")


@pytest.mark.parametrize(("name", "node", "param"), list(param_cases()))
def test_a_wrong_parameter_gradient_in_any_node_is_that_node(name, node, param):
    problem = bugged(name, node, slot=None, param=param)
    owner = problem.network.node(node).owner
    report = run_check(problem)
    tensor = report.check(f"{owner}.{param}")
    if np.all(np.abs(tensor.analytic) < 1e-12):
        pytest.skip("a gradient that is 0 (c1.bias before batchnorm): no factor shows")
    assert not tensor.passed and tensor.consequence_of is None
    assert report.blamed_layers() == [node]  # the use that is wrong, not its siblings


def test_a_wrong_backward_inside_a_residual_branch_is_blamed_on_it_not_its_sibling():
    """Two branches read one value; the conv in the second one has a wrong dx."""
    cfg = {
        "seed": 3,
        "input": {"shape": [2, 2, 4, 4], "batched": True},
        "layers": [
            {"type": "conv2d", "name": "stem", "out_channels": 2, "kernel_size": 3, "padding": 1},
            {"type": "tanh", "name": "h"},
            {"type": "conv2d", "name": "left", "out_channels": 2, "kernel_size": 3, "padding": 1},
            {
                "type": "conv2d",
                "name": "right",
                "inputs": ["h"],
                "out_channels": 2,
                "kernel_size": 1,
            },
            {"type": "add", "name": "join", "inputs": ["left", "right"]},
            {"type": "add", "name": "skip", "inputs": ["h", "join"]},
            {"type": "flatten"},
            {"type": "dense", "out_features": 3},
        ],
        "loss": {"type": "softmax_cross_entropy", "target": [0, 2]},
    }
    problem = problem_from_dict(cfg)
    problem.network.node("right").layer = Bugged(problem.network.node("right").layer)
    report = run_check(problem)
    assert report.blamed_layers() == ["right"]
    failing = {c.name: c.consequence_of for c in report.checks if not c.passed}
    assert set(failing) == {"input", "stem.weight", "stem.bias"}  # below the bug only
    assert set(failing.values()) == {"right"}
    assert report.check("left.weight").passed and report.check("right.weight").passed


# --------------------------------------------------------------------------- explain


def explained(name: str) -> str:
    result = CliRunner().invoke(cli, ["explain", str(shipped(name)), "--no-color"])
    assert result.exit_code == 0, result.output
    return re.sub(r"[ \t]+\n", "\n", result.output)


def test_explain_shows_a_fork_as_the_sum_of_its_readers():
    text = explained("fork_sum")
    assert "fork: pool is read by flat and conv, so its delta is the SUM of what each" in text
    assert "dE/d(pool) = (via flat) + (via conv)" in text
    for line in (
        "dE/d(pool)[0,0,0] = via flat + via conv\n          = 0.5 + 3 = 3.5000",
        "dE/d(pool)[0,0,1] = via flat + via conv\n          = 2 + (-3) = -1.0000",
        "dE/d(pool)[0,1,0] = via flat + via conv\n          = -1 + 6 = 5.0000",
        "dE/d(pool)[0,1,1] = via flat + via conv\n          = -2 + 1.5 = -0.5000",
    ):
        assert line in text
    assert "4. conv (conv2d)  reads pool  (1, 2, 2) -> (1, 1, 1)" in text


def test_explain_shows_add_copying_its_delta_and_a_fork_at_the_input():
    text = explained("residual_block")
    assert "add copies its delta, unchanged, to every input" in text
    assert "to input (input 0)" in text and "to c2 (input 1)" in text
    assert "fork: input is read by c1 and skip" in text
    assert "dE/d(input)[0,0,1] = via c1 + via skip\n          = -0.2778 + 0 = -0.2778" in text


def test_explain_shows_a_shared_weight_as_the_sum_over_its_uses():
    e = explain(load_problem(shipped("rnn_unrolled")))
    owner = next(s for s in e.steps if s.name == "Uh1")
    (uses,) = owner.uses
    assert [label for label, _ in uses.parts] == ["Uh1", "Uh2", "Uh3"]
    problem = load_problem(shipped("rnn_unrolled"))
    _, grads = analytic_pass(problem, problem_params(problem))
    np.testing.assert_allclose(sum(g for _, g in uses.parts), grads.params["Uh1"]["weight"])
    assert all(s.agrees for s in uses.sums.sums)
    text = explained("rnn_unrolled")
    assert "shared weight: Uh1, Uh2 and Uh3 use Uh1's weight, so its" in text
    assert "dE/dweight = (by Uh1) + (by Uh2) + (by Uh3)" in text
    assert "5. Wx2 (dense)  reads input.x2  (1) -> (2)  shares Wx1's parameters" in text
    assert "dE/d(input.h0)" in text and e.input_grads["input.h0"].shape == (2,)


def test_explain_of_a_stack_says_nothing_of_graphs():
    text = explained("example_c_pool_dense")
    assert "reads" not in text and "fork" not in text and "shares" not in text


def test_layers_command_and_schema_know_the_multi_input_layers():
    result = CliRunner().invoke(cli, ["layers", "--no-color"])
    for name in ("add", "multiply", "concat"):
        assert re.search(rf"{name}\s+\|\s+layer\s+\|\s+inputs", result.output), name
    schema = config_schema()
    assert "inputs" in schema["$defs"]["layer.add"]["required"]
    assert "share" in schema["$defs"]["layer.dense"]["properties"]
    assert "share" not in schema["$defs"]["layer.relu"]["properties"]
