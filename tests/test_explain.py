"""``gradcheck explain``: the worked examples' arithmetic, from the engine's own values.

The published figures are the reference: the routed delta map of example B, the kernel
gradient of example A, the sums of example C. Nothing here compares with output the
explainer itself produced.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from gradcheck_cli import Layer, protocol, register_layer
from gradcheck_cli.cli import cli
from gradcheck_cli.config import load_problem, problem_from_dict
from gradcheck_cli.engine.explain import (
    MAX_SUMS,
    Accumulation,
    LocalDerivative,
    Routing,
    explain,
)
from gradcheck_cli.layers.conv import Conv2d
from gradcheck_cli.render.explain import SMALL, fmt, render_explanation

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"

#: Worked example B's routed delta map at conv1's output, as published (4 decimals).
PUBLISHED_D = np.array(
    [[0, 0, 0.0686, 0], [0, 0.0364, 0, 0], [0, 0.0467, 0, 0], [0, 0, 0, -0.0681]]
)
#: Worked example A's kernel gradient, as published (exact for the published d).
PUBLISHED_DW = np.array([[0.044606, 0.094061], [0.011262, 0.068288]])


@pytest.fixture
def registry():
    """Types a test registers are removed afterwards (other tests list the built-ins)."""
    saved = (dict(protocol.LAYERS), dict(protocol.LOSSES), dict(protocol.ORIGINS))
    yield
    for live, old in zip((protocol.LAYERS, protocol.LOSSES, protocol.ORIGINS), saved, strict=True):
        live.clear()
        live.update(old)


def run(*args: str):
    return CliRunner().invoke(cli, ["explain", *args], catch_exceptions=False)


def text_of(renderable) -> str:
    console = Console(color_system=None, width=120, highlight=False)
    with console.capture() as cap:
        console.print(renderable)
    return cap.get()


def block_after(output: str, heading: str, rows: int) -> list[list[str]]:
    """The number rows (row index stripped) of the first matrix printed after heading."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if heading in line)
    body = []
    for line in lines[start + 1 :]:
        cells = line.split()
        if cells and cells[0].isdigit() and len(cells) > 1 and not cells[1].startswith("+"):
            if all(re.fullmatch(r"\d+", c) for c in cells):  # the column header
                continue
            body.append(cells[1:])
            if len(body) == rows:
                return body
    raise AssertionError(f"no {rows}-row matrix after {heading!r}")


# --- worked example B: the published delta map -------------------------------------


def test_example_b_conv1_delta_is_the_published_map():
    e = explain(load_problem(CONFIGS / "example_b_network.yaml"))
    conv1 = e.steps[0]
    assert conv1.name == "conv1"
    d = conv1.delta.reshape(4, 4)
    # the same positions are nonzero, and the values agree to the published 4 decimals
    assert np.array_equal(d != 0, PUBLISHED_D != 0)
    assert np.max(np.abs(d - PUBLISHED_D)) < 1e-4


def test_example_b_cli_prints_the_published_map():
    result = run(str(CONFIGS / "example_b_network.yaml"), "--no-color")
    assert result.exit_code == 0, result.output
    printed = block_after(result.output, "delta dE/d(conv1 output)", 4)
    values = np.array([[float(c) for c in row] for row in printed])
    assert np.array_equal(values != 0, PUBLISHED_D != 0)
    assert np.max(np.abs(values - PUBLISHED_D)) < 1e-4 + 5e-5  # printed rounded to 4 places
    # exact zeros print as 0, not 0.0000: the routing pattern stays visible
    assert printed[0][0] == "0"
    # and the published figure itself, from the config's expect: block, beside it
    expected = block_after(result.output, "expect conv1.delta", 4)
    assert np.array_equal(np.array([[float(c) for c in r] for r in expected]), PUBLISHED_D)
    assert "expect conv1.delta (from the config): agrees" in result.output


def test_example_b_max_pool_routes_to_the_published_positions():
    e = explain(load_problem(CONFIGS / "example_b_network.yaml"))
    pool = e.steps[1]
    (routing,) = [d for d in pool.details if isinstance(d, Routing)]
    sources = {r.window: r.source for r in routing.routes}
    # d11 at (1,1), d12 at (0,2), d21 at (2,1), d22 at (3,3)
    assert sources == {(0, 0): (1, 1), (0, 1): (0, 2), (1, 0): (2, 1), (1, 1): (3, 3)}
    published = {(0, 0): 0.0364182, (0, 1): 0.068628, (1, 0): 0.04675125, (1, 1): -0.06818625}
    for r in routing.routes:
        assert abs(r.grad - published[r.window]) < 1e-4
        assert r.rows == (2 * r.window[0], 2 * r.window[0] + 1)
        # the window's maximum is what the pool output holds
        assert r.maximum == pool.output[0, r.window[0], r.window[1]]


# --- worked example A: the kernel gradient as sums ----------------------------------


def test_example_a_kernel_gradient_sums():
    e = explain(load_problem(CONFIGS / "example_a.yaml"))
    kernel, bias = [d for d in e.steps[0].details if isinstance(d, Accumulation)][:2]
    assert "sum_{i<4} sum_{j<4} d[i,j] * o[i+m, j+n]" in kernel.formula
    assert [s.target for s in kernel.sums] == [
        "dE/dw[0,0]",
        "dE/dw[0,1]",
        "dE/dw[1,0]",
        "dE/dw[1,1]",
    ]
    for s, published in zip(kernel.sums, PUBLISHED_DW.reshape(-1), strict=True):
        assert len(s.terms) == 4  # the four nonzero deltas, nothing else
        assert s.agrees
        assert abs(s.total - published) < 1e-9
    # w[0,0] reads o[i, j] at each nonzero d[i, j]
    first = kernel.sums[0]
    assert [t[1].label for t in first.terms] == ["o[0,2]", "o[1,1]", "o[2,1]", "o[3,3]"]
    assert [t[1].value for t in first.terms] == [0.88, 0.62, 0.20, 0.70]
    assert abs(bias.sums[0].total - 0.0836) < 1e-12


def test_a_wrong_conv_backward_shows_as_a_disagreeing_sum(registry):
    @register_layer("explain_test_bad_conv")
    class BadConv(Conv2d):
        def backward(self, dy, cache, params):
            dx, grads = super().backward(dy, cache, params)
            grads["weight"] = grads["weight"] * 2.0  # the classic doubled accumulation
            return dx, grads

    doc = {
        "input": [[[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 1.0, 1.0]]],  # (C, H, W)
        "layers": [
            {
                "type": "explain_test_bad_conv",
                "name": "conv1",
                "out_channels": 1,
                "kernel_size": 2,
                "weight": [[[[1, -1], [2, 0.5]]]],  # (out, in, kh, kw)
                "bias": [0],
            }
        ],
        "loss": {"type": "upstream", "grad": [[[1, 2], [3, 4]]]},
    }
    e = explain(problem_from_dict(doc))
    kernel = e.steps[0].details[0]
    assert isinstance(kernel, Accumulation)
    assert not any(s.agrees for s in kernel.sums if s.total)
    # the textbook sum is right (example C: dE/dw[0,0] = 9), backward gave twice it
    assert kernel.sums[0].total == 9 and kernel.sums[0].value == 18
    assert "but the layer's backward gave 18.0000" in text_of(render_explanation(e))


# --- worked example C: sums, not products; unread pixels get 0 ----------------------


def test_example_c_conv_input_pixel_gets_the_sum():
    e = explain(load_problem(CONFIGS / "example_c_conv_sum.yaml"))
    inputs = [d for d in e.steps[0].details if isinstance(d, Accumulation)][-1]
    centre = next(s for s in inputs.sums if s.target == "dE/do[1,1]")
    # 1*0.5 + 2*2 + 3*(-1) + 4*1 = 5.5, read by all four outputs
    assert len(centre.terms) == 4 and centre.total == 5.5 and centre.agrees
    assert sorted(t[1].value for t in centre.terms) == [-1.0, 0.5, 1.0, 2.0]


def test_example_c_unread_pixels_are_exactly_zero():
    e = explain(load_problem(CONFIGS / "example_c_unread.yaml"))
    inputs = [d for d in e.steps[0].details if isinstance(d, Accumulation)][-1]
    unread = [s for s in inputs.sums if s.count == 0]
    assert sorted(s.target for s in unread) == [
        "dE/do[0,2]",
        "dE/do[1,2]",
        "dE/do[2,0]",
        "dE/do[2,1]",
        "dE/do[2,2]",
    ]
    assert all(s.total == 0 and s.value == 0 for s in unread)
    assert "nothing reads it" in text_of(render_explanation(e))


def test_example_c_pooled_neurons_get_different_gradients():
    e = explain(load_problem(CONFIGS / "example_c_pool_dense.yaml"))
    fc = e.steps[-1]
    inputs = fc.details[0]
    assert inputs.formula.startswith("grad(P_j) = sum_{i<3} grad(FC_i) * W[i,j]")
    totals = [s.total for s in inputs.sums]
    assert totals == pytest.approx([-0.1, 1.1, 0.9, 1.7], abs=1e-12)
    assert all(len(s.terms) == 3 for s in inputs.sums)  # FC gradients 2, 3 and 6
    assert [f.value for f in inputs.sums[0].terms[0]] == [2.0, 0.1]


def test_dense_before_an_activation_shows_f_prime():
    doc = {
        "input": [0.5, -1.0],
        "layers": [
            {"type": "dense", "name": "fc", "weight": [[1.0, 2.0], [-1.0, 0.5]], "bias": [0, 0]},
            {"type": "sigmoid", "name": "act"},
        ],
        "loss": {"type": "upstream", "grad": [2.0, 3.0]},
    }
    e = explain(problem_from_dict(doc))
    fc, act = e.steps
    inputs = fc.details[0]
    assert "grad(FC_i) * f'(z_i) * W[i,j]" in inputs.formula
    w = np.array([[1.0, 2.0], [-1.0, 0.5]])
    z = w @ np.array([0.5, -1.0])
    s = 1 / (1 + np.exp(-z))
    g = np.array([2.0, 3.0])
    for j, total in enumerate(x.total for x in inputs.sums):
        by_hand = sum(g[i] * s[i] * (1 - s[i]) * w[i, j] for i in range(2))
        assert total == pytest.approx(by_hand, rel=1e-12)
        assert [len(t) for t in inputs.sums[j].terms] == [3, 3]
    (derivative,) = [d for d in act.details if isinstance(d, LocalDerivative)]
    np.testing.assert_allclose(derivative.derivative, s * (1 - s), rtol=1e-12)


# --- batches, sizes, precision ----------------------------------------------------


def test_batched_config_explains_one_example_and_its_share():
    problem = load_problem(CONFIGS / "example_d_batched.yaml")
    shares = []
    for k in range(problem.batch_size):
        e = explain(problem, k)
        assert e.batched and e.example == k
        np.testing.assert_array_equal(e.input, problem.x[k])
        shares.append(e.steps[0].grads["weight"])
    # the examples' shares add up to the batch gradient the check uses
    from gradcheck_cli.engine.passes import analytic_pass, problem_params

    _, grads = analytic_pass(problem, problem_params(problem))
    np.testing.assert_allclose(sum(shares), grads.params["conv1"]["weight"], atol=1e-14)


def test_example_option_and_its_range():
    path = str(CONFIGS / "example_d_batched.yaml")
    ok = run(path, "--example", "3", "--no-color")
    assert ok.exit_code == 0
    assert "example 3 of a batch of 4" in ok.output
    bad = run(path, "--example", "4")
    assert bad.exit_code == 2
    assert "--example 4" in bad.output and "0 to 3" in bad.output
    unbatched = run(str(CONFIGS / "example_a.yaml"), "--example", "1")
    assert unbatched.exit_code == 2 and "not batched" in unbatched.output


def test_large_tensors_print_as_statistics(tmp_path):
    config = tmp_path / "big.yaml"
    config.write_text(
        "input: {shape: [2, 8, 8]}\n"
        "layers: [{type: conv2d, out_channels: 3, kernel_size: 3}, {type: relu}]\n"
        "loss: {type: mse, target: {file: t.npy}}\n"
    )
    np.save(tmp_path / "t.npy", np.zeros((3, 6, 6)))
    result = run(str(config), "--no-color")
    assert result.exit_code == 0, result.output
    problem = load_problem(config)
    x = problem.x[0]
    assert x.size > SMALL
    line = next(line for line in result.output.splitlines() if line.strip().startswith("input:"))
    assert "shape (2, 8, 8)" in line
    for word, value in (("min", x.min()), ("max", x.max()), ("mean", x.mean())):
        assert f"{word} {fmt(float(value))}" in line
    assert f"norm {fmt(float(np.linalg.norm(x)))}" in line
    # 108 kernel entries: the formula, but not 108 sums
    assert "too many to list" in result.output and "dE/dw[0,0,0,0] =" not in result.output
    assert MAX_SUMS < 3 * 2 * 3 * 3


def test_precision_sets_the_decimals():
    result = run(str(CONFIGS / "example_b_network.yaml"), "--precision", "6", "--no-color")
    assert result.exit_code == 0
    printed = block_after(result.output, "delta dE/d(conv1 output)", 4)
    nonzero = [c for row in printed for c in row if c != "0"]
    assert len(nonzero) == 4
    assert all(re.fullmatch(r"-?0\.\d{6}", c) for c in nonzero)
    values = np.array([[float(c) for c in row] for row in printed])
    e = explain(load_problem(CONFIGS / "example_b_network.yaml"))
    assert np.max(np.abs(values - e.steps[0].delta.reshape(4, 4))) <= 5e-7


def test_fmt_switches_to_scientific_for_tiny_and_huge_values():
    assert fmt(0.0686, 4) == "0.0686"
    assert fmt(0.0) == "0"
    assert fmt(1.5e-7, 4) == "1.500e-07"
    assert fmt(2.5e7, 4) == "2.500e+07"
    assert math.isclose(float(fmt(-0.068184, 4)), -0.0682)


# --- errors, like run --------------------------------------------------------------


def test_bad_config_exits_2_exactly_like_run(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        "input: [1, 2]\nlayers:\n  - {type: dense, out_feature: 2}\nloss: {type: mse}\n"
    )
    explained = run(str(config))
    checked = CliRunner().invoke(cli, ["run", str(config)])
    assert explained.exit_code == checked.exit_code == 2
    assert explained.output == checked.output
    assert "layers[0].out_feature" in explained.output and "Traceback" not in explained.output


def test_nan_in_the_forward_pass_exits_3(tmp_path):
    config = tmp_path / "nan.yaml"
    config.write_text(
        "input: [-1.0, -2.0]\nlayers: [{type: relu}]\n"
        "loss: {type: cross_entropy, target: [1.0, 0.0]}\n"
    )
    result = run(str(config))
    assert result.exit_code == 3
    assert "could not be carried out" in result.output


def test_plain_output_has_no_escape_codes():
    result = run(str(CONFIGS / "example_c_dropout.yaml"), "--no-color")
    assert result.exit_code == 0
    assert "\x1b" not in result.output
    assert "kept units" in result.output


def test_renderer_is_pure(capsys):
    e = explain(load_problem(CONFIGS / "example_b_alone.yaml"))
    renderable = render_explanation(e)
    assert capsys.readouterr() == ("", "")
    assert "Backward pass" in text_of(renderable)


def test_help_has_an_example():
    result = CliRunner().invoke(cli, ["explain", "--help"])
    assert result.exit_code == 0
    assert "gradcheck explain configs/example_b_network.yaml" in result.output


class _Identity(Layer):
    """A plugin layer the explainer knows nothing about."""

    def forward(self, x, params):
        return x, None

    def backward(self, dy, cache, params):
        return dy, {}


def test_plugin_layers_get_output_and_delta(registry):
    register_layer("explain_test_identity")(_Identity)
    doc = {
        "input": [1.0, 2.0],
        "layers": [{"type": "explain_test_identity", "name": "same"}],
        "loss": {"type": "upstream", "grad": [0.5, -0.5]},
    }
    e = explain(problem_from_dict(doc))
    (step,) = e.steps
    assert step.details == []
    np.testing.assert_array_equal(step.delta, [0.5, -0.5])
    np.testing.assert_array_equal(e.input_grad, [0.5, -0.5])


def test_float32_rounding_is_not_a_disagreement():
    """A float32 backward rounds; its sums still agree with the exact float64 ones."""
    doc = {
        "dtype": "float32",
        "seed": 1,
        "input": {"shape": [1, 4, 4]},
        "layers": [
            {"type": "conv2d", "name": "conv1", "out_channels": 2, "kernel_size": 2},
            {"type": "flatten"},
            {"type": "dense", "name": "fc", "out_features": 3},
        ],
        "loss": {"type": "mse", "target": [0.5, -0.5, 1.0]},
    }
    e = explain(problem_from_dict(doc))
    sums = [
        s for step in e.steps for d in step.details if isinstance(d, Accumulation) for s in d.sums
    ]
    assert len(sums) > 10
    assert all(s.agrees for s in sums)
    assert "backward gave" not in text_of(render_explanation(e))
