"""The network model (gradcheck_cli/network.py) and the engine on graphs built by hand:
a fork, a multi-input node and a shared parameter need nothing outside the model."""

from __future__ import annotations

import numpy as np
import pytest
from engine_toys import Add, Affine, Tanh, make_graph

from gradcheck_cli.engine import run_check
from gradcheck_cli.engine.passes import analytic_pass, forward, problem_params
from gradcheck_cli.network import Network, Node
from gradcheck_cli.protocol import Layer


def _node(name, inputs=(), share=None):
    return Node(
        name,
        "x",
        Layer(),
        {"w": np.zeros(2)} if share is None else {},
        (2,),
        (2,),
        inputs=tuple(inputs),
        share=share,
    )


def residual() -> Network:
    """input -> a -> b, and c = a + b (a fork at a), d reads c."""
    return Network(
        {"input": (2,)},
        [_node("a"), _node("b"), _node("c", ("a", "b")), _node("d", ("c",))],
    )


def test_readers_and_downstream_of_a_fork():
    net = residual()
    assert [(n.name, s) for n, s in net.readers("a")] == [("b", 0), ("c", 0)]
    assert [n.name for n in net.downstream("a")] == ["b", "c", "d"]
    assert [n.name for n in net.downstream("b.w")] == ["b", "c", "d"]
    assert [n.name for n in net.downstream("input")] == ["a", "b", "c", "d"]
    assert net.cached("b.w") == {"input", "a"}
    assert net.copy_values("b.w") == ["a", "b", "c", "d"]
    assert net.output == "d"


def test_a_shared_parameter_is_one_tensor_used_by_every_sharer():
    net = Network({"input": (2,)}, [_node("a"), _node("b", share="a")])
    assert net.tensor_names() == ["input", "a.w"]
    assert [n.name for n in net.users("a")] == ["a", "b"]
    assert [n.name for n in net.downstream("a.w")] == ["a", "b"]


@pytest.mark.parametrize(
    "nodes, message",
    [
        ([_node("a", ("nope",))], "unknown value 'nope'"),
        ([_node("a", ("b",)), _node("b")], "comes later"),
    ],
)
def test_a_network_refuses_unknown_and_later_inputs(nodes, message):
    with pytest.raises(ValueError, match=message):
        Network({"input": (2,)}, nodes)


def numeric_gradients(problem, eps=1e-6) -> dict[str, np.ndarray]:
    """Plain central differences, one full forward per evaluation: the reference."""
    params = problem_params(problem)
    out = {}
    for tensor in problem.tensor_names():
        if tensor == "input":
            base = problem.x
        else:
            owner, p = tensor.rsplit(".", 1)
            base = params[owner][p]
        g = np.zeros_like(base)
        for i in range(base.size):
            for sign in (1, -1):
                moved = base.copy()
                moved.flat[i] += sign * eps
                if tensor == "input":
                    f = forward(problem, moved, params).loss
                else:
                    f = forward(
                        problem, problem.x, {**params, owner: {**params[owner], p: moved}}
                    ).loss
                g.flat[i] += sign * f / (2 * eps)
        out[tensor] = g
    return out


def graph(bug=1.0, share=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 4))
    nodes = [
        ("fc1", Affine(4), None, None),
        ("act", Tanh(), None, None),
        ("left", Affine(4), ["act"], None),  # a fork: act is read by left and right
        ("right", Affine(4), ["act"], "left" if share else None),
        ("join", Add(bug=bug), ["left", "right"], None),
        ("skip", Add(), ["join", "fc1"], None),  # a residual connection around everything
    ]
    return make_graph(nodes, x, rng.standard_normal((3, 4)), seed=seed)


@pytest.mark.parametrize("share", [False, True], ids=["own", "shared"])
def test_graph_gradients_are_right_and_pass_the_check(share):
    problem = graph(share=share)
    trace, grads = analytic_pass(problem, problem_params(problem))
    reference = numeric_gradients(problem)
    analytic = {
        "input": grads.dx,
        **{f"{o}.{p}": g for o, ps in grads.params.items() for p, g in ps.items()},
    }
    assert set(analytic) == set(reference)
    for name, want in reference.items():
        np.testing.assert_allclose(analytic[name], want, rtol=1e-6, atol=1e-8, err_msg=name)
    report = run_check(problem)
    assert report.passed, [(c.name, c.failed) for c in report.checks]
    assert [c.name for c in report.checks] == problem.tensor_names()
    assert report.blamed_layers() == []


def test_a_fork_gets_the_sum_of_its_readers():
    problem = graph()
    _, grads = analytic_pass(problem, problem_params(problem))
    np.testing.assert_array_equal(
        grads.deltas["act"], grads.contributions[("left", 0)] + grads.contributions[("right", 0)]
    )


def test_a_wrong_backward_in_one_branch_is_blamed_on_that_node():
    problem = graph(bug=2.0)  # join sends twice the delta back to its second input: right
    report = run_check(problem)
    assert not report.passed
    assert report.blamed_layers() == ["join"]
    failing = {c.name: c.consequence_of for c in report.checks if not c.passed}
    assert "left.weight" not in failing  # the sibling branch is right
    assert failing["right.weight"] == "join"
    assert failing["input"] == "join"
