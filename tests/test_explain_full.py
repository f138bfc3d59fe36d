"""``gradcheck explain`` in full: every term on request, zero terms accounted for, the
loss's delta by its rule (p - y), the full-convolution identity and a gradient-descent
step. References are hand computations and the worked examples' published figures,
never the explainer's own output."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck_cli.cli import cli
from gradcheck_cli.cli.explain import DEFAULT_TERMS
from gradcheck_cli.config import load_problem, problem_from_dict
from gradcheck_cli.engine.explain import (
    MAX_SUMS,
    Accumulation,
    BadEntry,
    FullConvolution,
    LossDerivation,
    explain,
    listing_for,
)
from gradcheck_cli.engine.sums import Listing
from gradcheck_cli.render.explain import render_explanation

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
PUBLISHED_DW = np.array([[0.044606, 0.094061], [0.011262, 0.068288]])


def run(*args: str):
    return CliRunner().invoke(cli, ["explain", "--no-color", *args])


def accumulations(step) -> list[Accumulation]:
    return [d for d in step.details if isinstance(d, Accumulation)]


def full_conv(step) -> FullConvolution:
    (found,) = [d for d in step.details if isinstance(d, FullConvolution)]
    return found


def accounted(s) -> int:
    return len(s.terms) + s.omitted + sum(s.zeros.values())


def conv_config(h: int, w: int, k: int, stride: int = 1, pad: int = 0, cin=1, cout=1, seed=0):
    """A conv2d under an upstream gradient of seeded values (2 decimals, some 0)."""
    rng = np.random.default_rng(seed)
    size = cout * ((h + 2 * pad - k) // stride + 1) * ((w + 2 * pad - k) // stride + 1)
    grad = rng.standard_normal(size).round(2) * (rng.random(size) < 0.7)
    return {
        "input": rng.standard_normal((cin, h, w)).round(2).tolist(),
        "layers": [
            {
                "type": "conv2d",
                "name": "conv1",
                "out_channels": cout,
                "kernel_size": k,
                "stride": stride,
                "padding": pad,
                "weight": rng.standard_normal((cout, cin, k, k)).round(2).tolist(),
                "bias": [0.0] * cout,
            },
            {"type": "flatten"},
        ],
        "loss": {"type": "upstream", "grad": grad.tolist()},
    }


# --- every term, on request ----------------------------------------------------------


def test_the_16_entry_limit_is_the_cli_default():
    assert DEFAULT_TERMS == MAX_SUMS


def test_a_6x6_example_lists_every_term_of_its_kernel_gradient_on_request():
    # example D: 6x6 input, two 3x3 kernels (18 entries) over 4x4 positions
    problem = load_problem(CONFIGS / "example_d_stack.yaml")
    default = accumulations(explain(problem).steps[0])[0]
    assert default.entries == 18 and default.sums == []
    text = run(str(CONFIGS / "example_d_stack.yaml")).output
    assert "(18 entries: too many to list term by term; --terms all lists them" in text
    kernel = accumulations(explain(problem, listing=Listing(None)).steps[0])[0]
    assert len(kernel.sums) == 18
    o = problem.x[0]
    trace_delta = explain(problem).steps[0].delta  # (2, 4, 4)
    for s, (k, c, m, n) in zip(kernel.sums, np.ndindex(2, 1, 3, 3), strict=True):
        assert s.count == 16 and accounted(s) == 16 and s.agrees
        by_hand = sum(trace_delta[k, i, j] * o[c, i + m, j + n] for i in range(4) for j in range(4))
        assert s.total == pytest.approx(by_hand, rel=1e-12, abs=1e-15)
    assert "dE/dw[1,0,2,2] =" in run(str(CONFIGS / "example_d_stack.yaml"), "--terms", "all").output


def test_terms_n_sets_both_limits():
    problem = load_problem(CONFIGS / "example_d_stack.yaml")
    kernel = accumulations(explain(problem, listing=Listing(18)).steps[0])[0]
    assert len(kernel.sums) == 18
    kernel = accumulations(explain(problem, listing=Listing(20)).steps[0])[0]
    few = accumulations(explain(problem, listing=Listing(2)).steps[0])
    assert few[0].sums == [] and all(accounted(s) == s.count for s in kernel.sums)


def test_zero_terms_are_counted_and_named():
    # example B's kernel: 16 positions, 12 with delta 0
    e = explain(load_problem(CONFIGS / "example_b_network.yaml"))
    kernel = accumulations(e.steps[0])[0]
    for s in kernel.sums:
        assert len(s.terms) == 4 and s.zeros == {"delta": 12} and accounted(s) == s.count == 16
    text = run(str(CONFIGS / "example_b_network.yaml")).output
    assert "d[3,3]*o[3,3] + 12 terms with delta 0" in text


def test_a_single_zero_term_is_named_in_the_singular(tmp_path):
    doc = {
        "input": [[1.0, 0.0], [2.0, 3.0]],
        "layers": [
            {
                "type": "conv2d",
                "name": "c",
                "out_channels": 1,
                "kernel_size": 1,
                "weight": [[2.0]],
                "bias": [0.0],
            }
        ],
        "loss": {"type": "upstream", "grad": [[1.0, 1.0], [1.0, 1.0]]},
    }
    e = explain(problem_from_dict(doc))
    (s,) = accumulations(e.steps[0])[0].sums
    assert s.zeros == {"input": 1} and len(s.terms) == 3 and s.total == 6.0
    assert "+ 1 term with input 0" in run_text(e)


def run_text(e) -> str:
    from rich.console import Console

    console = Console(color_system=None, width=200, highlight=False)
    with console.capture() as cap:
        console.print(render_explanation(e))
    return cap.get()


# --- --entry ------------------------------------------------------------------------


def test_an_entry_is_written_out_whatever_its_tensors_size():
    problem = load_problem(CONFIGS / "example_d_stack.yaml")
    listing = listing_for(problem, MAX_SUMS, ["conv1.weight[1, 0, 2, 2]", "input[0, 1, :2]"])
    e = explain(problem, listing=listing)
    kernel, _, inputs = accumulations(e.steps[0])[:3]
    assert [s.target for s in kernel.sums] == ["dE/dw[1,0,2,2]"]
    assert [s.target for s in inputs.sums] == ["dE/do[0,1,0]", "dE/do[0,1,1]"]
    assert all(s.agrees and accounted(s) == s.count for s in kernel.sums + inputs.sums)
    # the same entries in the full convolution, and by a 2-D spelling of the input
    assert [s.target for s in full_conv(e.steps[0]).sums.sums] == ["dE/do[0,1,0]", "dE/do[0,1,1]"]


def test_an_entry_may_use_the_shape_it_was_written_in():
    problem = load_problem(CONFIGS / "example_a.yaml")  # a 2-D kernel and a 5x5 input
    a = listing_for(problem, MAX_SUMS, ["conv1.weight[1, 0]", "input[4, 4]"])
    b = listing_for(problem, MAX_SUMS, ["conv1.weight[0, 0, 1, 0]", "input[0, 4, 4]"])
    assert a == b and a.entries == {"conv1.weight": frozenset({2}), "input": frozenset({24})}


@pytest.mark.parametrize(
    "entry, words",
    [
        ("conv9.weight", ["no tensor 'conv9.weight'", "did you mean 'conv1.weight'"]),
        ("conv1.weight[2]", ["index 2 is out of range for axis 0 of size 2"]),
        ("conv1.weight[[0, 1]]", ["fancy indexing"]),
    ],
)
def test_bad_entries_name_what_exists(entry, words):
    with pytest.raises(BadEntry) as info:
        listing_for(load_problem(CONFIGS / "example_d_stack.yaml"), 16, [entry])
    for word in words:
        assert word in str(info.value)


def test_an_entry_with_no_sums_says_who_computes_it_and_what_has_sums():
    result = run(str(CONFIGS / "example_d_stack.yaml"), "--entry", "relu1.delta[0]")
    assert result.exit_code == 2
    assert "relu1.delta: its delta is what pool1 (maxpool2d) sends back" in result.output
    assert "entries with sums:" in result.output and "conv1.weight" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("value, ok", [("all", True), ("3", True), ("0", False), ("x", False)])
def test_terms_takes_all_or_a_positive_integer(value, ok):
    result = run(str(CONFIGS / "example_a.yaml"), "--terms", value)
    assert (result.exit_code == 0) is ok, result.output


# --- the loss's delta: p - y ---------------------------------------------------------


def test_softmax_cross_entropy_delta_is_p_minus_y_with_the_numbers():
    doc = {
        "input": [1.0, 2.0, 0.5],
        "layers": [
            {
                "type": "dense",
                "name": "fc",
                "out_features": 3,
                "weight": np.eye(3).tolist(),
                "bias": [0.0, 0.0, 0.0],
            }
        ],
        "loss": {"type": "softmax_cross_entropy", "target": 1},
    }
    e = explain(problem_from_dict(doc))
    d = e.loss_delta
    assert d.expression == "p - y" and d.key == "fc" and d.agrees
    z = np.array([1.0, 2.0, 0.5])
    p = np.exp(z) / np.exp(z).sum()
    y = np.array([0.0, 1.0, 0.0])
    assert [x.value for x in d.entries] == pytest.approx(p - y, rel=1e-14)
    assert [x.values for x in d.entries] == [
        pytest.approx({"p": p[i], "y": y[i]}) for i in range(3)
    ]
    text = run_text(e)
    assert f"dE/dz[1] = p[1] - y[1] = {p[1]:.4f} - 1 = {p[1] - 1:.4f}" in text


def test_cross_entropy_after_a_softmax_layer_shows_p_minus_y_at_its_input():
    e = explain(load_problem(CONFIGS / "example_d_stack.yaml"))
    probs = e.steps[-1]
    (after,) = [d for d in probs.details if isinstance(d, LossDerivation)]
    assert after.expression == "p - y" and after.key == "fc" and after.agrees
    p = probs.output
    np.testing.assert_allclose([x.value for x in after.entries], p - np.eye(3)[1], rtol=1e-12)
    np.testing.assert_allclose([x.actual for x in after.entries], e.steps[-2].delta, rtol=1e-12)
    assert e.loss_delta.expression == "-y / p"


def test_a_mean_reduction_divides_the_rule_by_n():
    problem = load_problem(CONFIGS / "example_d_batched.yaml")  # softmax_cross_entropy, mean
    assert problem.loss.reduction == "mean" and problem.batch_size > 1
    e = explain(problem, 1)
    d = e.loss_delta
    assert d.divisor == problem.batch_size and d.agrees
    p = np.array([x.values["p"] for x in d.entries])
    y = np.array([x.values["y"] for x in d.entries])
    np.testing.assert_allclose([x.value for x in d.entries], (p - y) / problem.batch_size)
    assert f") / {problem.batch_size} = " in run_text(e)


# --- the full-convolution identity ---------------------------------------------------


def test_full_convolution_by_hand():
    # d = [[1, 0], [0, 2]] over w = [[1, -1], [2, 0.5]]: each d[i,j] stamps d * w at (i, j)
    doc = {
        "input": [[1, 2, 0], [0, 1, 3], [2, 1, 1]],
        "layers": [
            {
                "type": "conv2d",
                "name": "conv1",
                "out_channels": 1,
                "kernel_size": 2,
                "weight": [[1, -1], [2, 0.5]],
                "bias": [0],
            }
        ],
        "loss": {"type": "upstream", "grad": [[1, 0], [0, 2]]},
    }
    f = full_conv(explain(problem_from_dict(doc)).steps[0])
    np.testing.assert_array_equal(f.rotated[0, 0], [[0.5, 2], [-1, 1]])
    np.testing.assert_array_equal(
        f.padded[0], [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(f.result[0], [[1, -1, 0], [2, 2.5, -2], [0, 4, 1]])
    assert f.agrees and len(f.sums.sums) == 9 and all(s.agrees for s in f.sums.sums)


def _dx_by_definition(x, w, d, stride, pad):
    """dE/dx[c, r, s] = sum over outputs (k, i, j) whose window covers (r, s) of d * w."""
    c_in, h, wd = x.shape
    k_out, ho, wo = d.shape
    kh, kw = w.shape[2:]
    dx = np.zeros((c_in, h, wd))
    for k, i, j in np.ndindex(k_out, ho, wo):
        for c, m, n in np.ndindex(c_in, kh, kw):
            r, s = i * stride + m - pad, j * stride + n - pad
            if 0 <= r < h and 0 <= s < wd:
                dx[c, r, s] += d[k, i, j] * w[k, c, m, n]
    return dx


@settings(max_examples=25, deadline=None)
@given(
    st.integers(3, 7),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 1),
    st.integers(1, 2),
    st.integers(1, 2),
)
def test_the_identity_holds_for_every_stride_padding_and_channel_count(
    h, k, stride, pad, cin, cout
):
    if k > h + 2 * pad:
        return
    doc = conv_config(h, h + 1, k, stride, pad, cin, cout)
    problem = problem_from_dict(doc)
    step = explain(problem).steps[0]
    f = full_conv(step)
    x = problem.x[0]
    w = np.asarray(doc["layers"][0]["weight"])
    by_hand = _dx_by_definition(x, w, step.delta, stride, pad)
    np.testing.assert_allclose(f.result, by_hand, atol=1e-12)
    assert f.agrees
    said = " ".join(f.steps)
    assert ("dilated" in said) is (stride > 1)
    assert ("cut from each side" in said) is (pad > 0)


def test_the_identity_is_printed_with_its_numbers():
    text = run(str(CONFIGS / "example_c_conv_sum.yaml")).output
    assert "full convolution of d with w = d zero-padded by" in text
    assert "rot180(w)" in text and "equals what the layer's backward gave" in text


# --- --lr ------------------------------------------------------------------------------


def test_lr_shows_one_gradient_descent_step_of_example_a():
    problem = load_problem(CONFIGS / "example_a.yaml")
    step = explain(problem, lr=0.1).descent
    weight = next(p for p in step.params if p.name == "conv1.weight")
    w = np.array([[-0.13, 0.15], [-0.55, 0.60]])
    np.testing.assert_allclose(weight.updated, w - 0.1 * PUBLISHED_DW, atol=1e-12)
    bias = next(p for p in step.params if p.name == "conv1.bias")
    assert bias.updated[0] == pytest.approx(0.03 - 0.1 * 0.0836, abs=1e-12)
    text = run(str(CONFIGS / "example_a.yaml"), "--lr", "0.1").output
    assert "Gradient-descent step, lr 0.1" in text
    assert "weight[0,0] = -0.13 - 0.1 * 0.0446 = -0.1345" in text


def test_lr_uses_the_whole_batch_gradient_and_shared_parameters_once():
    problem = load_problem(CONFIGS / "rnn_unrolled.yaml")
    step = explain(problem, lr=0.5).descent
    from gradcheck_cli.engine.passes import analytic_pass, problem_params

    _, grads = analytic_pass(problem, problem_params(problem))
    names = [p.name for p in step.params]
    assert len(names) == len(set(names)) == len(problem.network.param_tensors())
    for p in step.params:
        owner, param = p.name.rsplit(".", 1)
        g = grads.params[owner][param].reshape(p.value.shape)
        np.testing.assert_allclose(p.updated, p.value - 0.5 * g, rtol=1e-14)


def test_lr_must_be_positive():
    assert run(str(CONFIGS / "example_a.yaml"), "--lr", "0").exit_code == 2


# --- warnings -----------------------------------------------------------------------------


def test_explain_shows_the_configs_warnings(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            input: {shape: [1, 5, 5]}
            layers:
              - {type: maxpool2d, name: pool1, kernel_size: 2}
              - {type: flatten}
            loss: {type: upstream, grad: [1, 2, 3, 4]}
            """
        )
    )
    text = run(str(path)).output
    assert "warning: " in text and "never reads input row 4 and column 4" in text
