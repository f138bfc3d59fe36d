"""cs231n-style function pairs and function losses, checked from YAML with no glue code
(``type: functions``, ``loss: {type: function}``; contract section 2)."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gradcheck_cli as gc
import gradcheck_cli.losses  # noqa: F401  (registers the built-in losses)
from gradcheck_cli.cli import cli
from gradcheck_cli.cli.layers import registered_types
from gradcheck_cli.engine.passes import reduce_losses, reduced_dy
from gradcheck_cli.problem import LossSpec
from gradcheck_cli.protocol import LOSSES

EXAMPLE = Path(__file__).resolve().parent.parent / "configs/examples/cs231n_functions"
NET = EXAMPLE / "cs231n_net.yaml"


def run(config: Path, *args: str) -> tuple[int, dict | None, str]:
    """Exit code, JSON report (None when the run stopped before one) and stderr."""
    result = CliRunner().invoke(cli, ["run", str(config), "--json", "-", "--no-color", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, report, result.stderr


@pytest.fixture
def example(tmp_path) -> Path:
    """A copy of the shipped example, to plant bugs in its layers.py."""
    shutil.copytree(EXAMPLE, tmp_path / "ex")
    return tmp_path / "ex"


def plant(folder: Path, old: str, new: str) -> None:
    path = folder / "layers.py"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


# --- the shipped example ---------------------------------------------------------------


def test_the_cs231n_example_checks_from_yaml_alone():
    report = gc.check(NET)
    assert report.passed
    assert {c.name for c in report.checks} >= {"input", "conv.w", "fc1.w", "bn.gamma", "fc2.b"}
    problems = {v.name: [p.kind for p in v.problems] for v in report.layers if v.problems}
    # bn_param gets running statistics written into it: no finding, args are fresh copies;
    # the classic relu_backward zeroes dout in place: a warning, and nothing fails
    assert problems == {"relu1": ["mutates_dy"], "relu2": ["mutates_dy"]}
    assert all(v.passed for v in report.layers)


@pytest.mark.parametrize(
    "layer, old, new",
    [
        (  # convolution instead of cross-correlation in the backward: a flipped kernel
            "conv",
            "dx_pad[:, :, rows, cols] += np.tensordot(d, w, axes=([1], [0]))",
            "dx_pad[:, :, rows, cols] += np.tensordot(d, w[:, :, ::-1, ::-1], axes=([1], [0]))",
        ),
        (  # the path through the batch variance forgotten
            "bn",
            "dx = (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0)) / std",
            "dx = (dx_hat - dx_hat.mean(axis=0)) / std",
        ),
        ("loss", "    dx /= N\n", ""),  # a loss that averages but whose dscores sums
    ],
    ids=["conv-flipped-kernel", "bn-variance-path-missing", "loss-mean-vs-sum"],
)
def test_a_planted_bug_is_caught_and_blamed_on_its_layer(example, layer, old, new):
    plant(example, old, new)
    code, report, _ = run(example / "cs231n_net.yaml")
    assert code == 1 and report is not None
    verdicts = {v["name"]: v["passed"] for v in report["layers"]}
    assert verdicts[layer] is False
    assert [name for name, ok in verdicts.items() if not ok] == [layer]
    wrong = [c for c in report["checks"] if not c["passed"]]
    assert wrong and all(c.get("consequence_of") in (None, layer) for c in wrong)
    assert any(c["name"] == "input" and c.get("consequence_of") == layer for c in wrong)


# --- what a function's mistakes look like ----------------------------------------------

AT = r"affine_backward is at .*layers\.py:\d+"


@pytest.mark.parametrize(
    "old, new, words",
    [
        (
            "    return dx, dw, db\n\n\ndef relu_forward",
            "    return dx, dw\n\n\ndef relu_forward",
            r"layer 'fc2': affine_backward returned 2 values; expected 3 \(dx, then dw, db for "
            r"params w, b in the order forward takes them\); " + AT,
        ),
        (
            "dw = x.reshape(x.shape[0], -1).T.dot(dout)",
            "dw = dout.T.dot(x.reshape(x.shape[0], -1))",
            r"layer 'fc\d': affine_backward returned dw of shape \[\d+, \d+\], expected "
            r"\[\d+, \d+\] \(the shape of w\); " + AT,
        ),
        (
            "dx = dout.dot(w.T).reshape(x.shape)",
            "dx = dout.dot(w.T)",
            r"layer 'fc1': affine_backward returned dx of shape \[4, 18\], expected "
            r"\[4, 2, 3, 3\] \(the shape of x\)",
        ),
        (
            "db = np.sum(dout, axis=0)",
            "db = None  # TODO",
            r"affine_backward returned None for db; expected an array of shape \[\d\], the "
            "shape of b",
        ),
        (
            "    dx = dout.dot(w.T).reshape(x.shape)",
            "    dx = dout.dot(w.T).reshape(x.shape)\n    assert dx.ndim == 2, 'flat'",
            r"layer 'fc1': affine_backward raised AssertionError: flat \(at .*layers\.py:\d+, "
            r"in affine_backward: assert dx.ndim == 2, 'flat'\)",
        ),
        (
            "loss = -log_probs[np.arange(N), y].sum() / N",
            "loss = -log_probs[np.arange(N), y + 5].sum() / N",
            r"cs231n_net\.yaml:\d+: loss: layer 'loss': softmax_loss raised IndexError: .* "
            r"\(at .*layers\.py:\d+, in softmax_loss: ",
        ),
    ],
    ids=["count", "dw-shape", "dx-shape", "none", "raises", "loss-raises"],
)
def test_a_function_mistake_is_reported_against_its_layer(example, old, new, words):
    plant(example, old, new)
    code, _, stderr = run(example / "cs231n_net.yaml")
    assert code == 2
    assert re.search(words, " ".join(stderr.split())), stderr


def test_a_forward_that_fails_on_load_points_at_its_key(example):
    plant(example, "out = np.maximum(0, x)", "out = np.maximum(0, x) + undefined_name")
    code, _, stderr = run(example / "cs231n_net.yaml")
    assert code == 2
    assert re.search(
        r"cs231n_net\.yaml:\d+: layers\[1\]\.forward: relu_forward raised NameError: .*"
        r"'undefined_name'.* \(at .*layers\.py:\d+, in relu_forward: ",
        " ".join(stderr.split()),
    ), stderr


def config(tmp_path: Path, body: str, plugin: str | None = None) -> Path:
    if plugin is not None:
        (tmp_path / "fns.py").write_text(textwrap.dedent(plugin))
    path = tmp_path / "net.yaml"
    path.write_text(textwrap.dedent(body))
    return path


AFFINE = """\
    import numpy as np

    def affine_forward(x, w, b):
        return x.dot(w) + b, (x, w)

    def affine_backward(dout, cache):
        x, w = cache
        return dout.dot(w.T), x.T.dot(dout), dout.sum(axis=0)

    def relu_forward(x):
        return np.maximum(x, 0), x

    def relu_backward(dout, cache):
        return (np.where(cache > 0, dout, 0),)   # a 1-tuple is fine too

    def mse_sum(y, t):
        assert t.dtype.kind == "f", t.dtype
        return 0.5 * ((y - t) ** 2).sum(), y - t
"""


def test_config_mistakes_name_file_line_and_key(tmp_path):
    path = config(
        tmp_path,
        """\
        plugins: [fns.py]
        input: {value: [[1.0, 2.0], [0.5, -1.0]], batched: true}
        layers:
          - type: functions
            forward: affine_forwad
            backward: affine_backward
            params: {b: [0, 0], w: {shape: [2, 2]}}
          - {type: functions, forward: relu_forward, backward: relu_backward, params: [1]}
          - {type: functions, forward: relu_forward, backward: np, args: {pad: 1}}
          - {type: functions, forward: affine_forward, backward: affine_backward,
             params: {w: {shape: [2, 0]}, b: {shape: [2], scales: 2}}}
        loss: {type: function, function: mse, target: [[0, 1], [1, 0]]}
        """,
        AFFINE,
    )
    code, _, stderr = run(path)
    text = " ".join(stderr.split())
    assert code == 2
    for expected in (
        r"net\.yaml:5: layers\[0\]\.forward: no function 'affine_forwad' in the plugins "
        r"\(fns\.py\); did you mean 'affine_forward'\?",
        r"net\.yaml:8: layers\[1\]\.params: must be a mapping of the parameters",
        r"net\.yaml:9: layers\[2\]\.backward: 'np' in fns\.py is a module, not a function",
        r"net\.yaml:9: layers\[2\]\.args: must be a list",
        r"net\.yaml:11: layers\[3\]\.params\.w\.shape: must be a list of positive integers",
        r"net\.yaml:11: layers\[3\]\.params\.b\.scales: unknown key 'scales' .*did you mean "
        r"'scale'\?",
        r"net\.yaml:12: loss\.function: no function 'mse' in the plugins \(fns\.py\); did you "
        r"mean 'mse_sum'\?",
    ):
        assert re.search(expected, text), expected + "\n" + stderr


def test_params_in_another_order_than_forward_takes_them_are_refused(tmp_path):
    path = config(
        tmp_path,
        """\
        plugins: [fns.py]
        input: {value: [[1.0, 2.0], [0.5, -1.0]], batched: true}
        layers:
          - type: functions
            forward: affine_forward
            backward: affine_backward
            params: {b: [0, 0], w: {shape: [2, 2]}}
        loss: {type: function, function: mse_sum, target: [[0, 1], [1, 0]]}
        """,
        AFFINE,
    )
    code, _, stderr = run(path)
    assert code == 2
    assert "net.yaml:7: layers[0].params: are handed to affine_forward in the order written " in (
        " ".join(stderr.split())
    )
    assert "(b, w), but it takes them as w, b" in stderr


def test_a_plugin_of_functions_alone_is_accepted_and_floats_stay_floats(tmp_path):
    path = config(
        tmp_path,
        """\
        plugins: [fns.py]
        input: {value: [[1.0, 2.0], [0.5, -1.0], [0.3, 0.2]], batched: true}
        layers:
          - {type: functions, name: fc, forward: affine_forward, backward: affine_backward,
             params: {w: {shape: [2, 3], scale: 0.5}, b: [0.1, 0, -0.1]}}
          - {type: functions, name: act, forward: relu_forward, backward: relu_backward}
        loss: {type: function, function: mse_sum, target: [[0.5, 1, 0], [1, 0, 0], [0, 0, 1]]}
        """,
        AFFINE,
    )
    code, report, stderr = run(path)
    assert code == 0, stderr
    assert report is not None and report["warnings"] == []


# --- reductions --------------------------------------------------------------------------

SOFTMAX = """\
    import numpy as np

    def affine_forward(x, w, b):
        return x.dot(w) + b, (x, w)

    def affine_backward(dout, cache):
        x, w = cache
        return dout.dot(w.T), x.T.dot(dout), dout.sum(axis=0)

    def _softmax(x, y):
        assert y.dtype.kind == "i", y.dtype          # labels arrive as integers
        p = np.exp(x - x.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        d = p.copy()
        d[np.arange(len(y)), y] -= 1
        return -np.log(p[np.arange(len(y)), y]), d

    def softmax_loss_sum(x, y):
        losses, d = _softmax(x, y)
        return losses.sum(), d

    def softmax_loss_mean(x, y):
        losses, d = _softmax(x, y)
        return losses.mean(), d / len(y)
"""
X = np.array([[0.5, -1.2], [1.5, 0.3], [-0.7, 0.8], [0.2, 0.1]])
W = np.array([[0.3, -0.8, 0.5], [1.1, 0.4, -0.6]])
B = np.array([0.1, 0.0, -0.2])
Y = np.array([2, 0, 1, 1])


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_a_function_loss_is_its_own_value_for_either_reduction(tmp_path, reduction):
    """E and every gradient are the function's own (the engine never divides again), and
    agree with an independent computation and with the built-in softmax_cross_entropy."""
    layers = [
        {"type": "functions", "name": "fc", "forward": "affine_forward",
         "backward": "affine_backward", "params": {"w": W.tolist(), "b": B.tolist()}},
    ]  # fmt: skip
    (tmp_path / "fns.py").write_text(textwrap.dedent(SOFTMAX))
    doc = {
        "plugins": [str(tmp_path / "fns.py")],
        "input": {"value": X.tolist(), "batched": True},
        "layers": layers,
        "loss": {"type": "function", "function": f"softmax_loss_{reduction}",
                 "target": Y.tolist(), "reduction": reduction},
    }  # fmt: skip
    report = gc.check(doc)
    assert report.passed

    scores = X @ W + B
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    n = 1 if reduction == "sum" else len(Y)
    loss = -np.log(p[np.arange(len(Y)), Y]).sum() / n
    dscores = (p - np.eye(3)[Y]) / n
    assert report.loss == pytest.approx(loss, rel=1e-14)
    np.testing.assert_allclose(report.check("fc.w").analytic, X.T @ dscores, rtol=1e-13)
    np.testing.assert_allclose(report.check("fc.b").analytic, dscores.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(report.check("input").analytic, dscores @ W.T, rtol=1e-13)

    built_in = {"type": "softmax_cross_entropy", "target": Y.tolist(), "reduction": reduction}
    twin = gc.check({**doc, "loss": built_in})
    assert twin.loss == pytest.approx(report.loss, rel=1e-14)
    for name in ("fc.w", "fc.b", "input"):
        np.testing.assert_allclose(
            report.check(name).analytic, twin.check(name).analytic, rtol=1e-13
        )


# --- batch_independent, listing ------------------------------------------------------------


def test_batch_independent_is_an_option_the_probe_checks(tmp_path, example):
    text = (example / "cs231n_net.yaml").read_text()
    fast = text.replace("backward: affine_backward\n", "backward: affine_backward\n"
                        "    batch_independent: true\n")  # fmt: skip
    fast = fast.replace("backward: batchnorm_backward\n", "backward: batchnorm_backward\n"
                        "    batch_independent: true\n")  # fmt: skip
    assert fast.count("batch_independent: true") == text.count("batch_independent: true") + 3
    (example / "fast.yaml").write_text(fast)
    code, report, _ = run(example / "fast.yaml")
    assert code == 0 and report is not None
    kinds = {v["name"]: [p["kind"] for p in v["problems"]] for v in report["layers"]}
    assert kinds["bn"] == ["not_batch_independent"]  # a false claim: warned, then one at a time
    assert kinds["fc1"] == [] and kinds["fc2"] == []
    _, plain, _ = run(example / "cs231n_net.yaml")
    assert plain is not None
    for mine, theirs in zip(report["checks"], plain["checks"], strict=True):
        np.testing.assert_array_equal(mine["analytic"], theirs["analytic"])


def test_layers_lists_the_functions_layer_and_the_function_loss():
    rows = {(r.kind, r.name): r for r in registered_types()}
    layer, loss = rows[("layer", "functions")], rows[("loss", "function")]
    assert [f.split("=")[0] for f in layer.fields][:4] == ["forward", "backward", "params", "args"]
    assert [f.split("=")[0] for f in loss.fields] == ["function", "reduction"]
    assert loss.arrays == ("target",)


def test_a_function_loss_sees_one_whole_batch_at_a_time():
    """The engine may stack P copies of the batch into one call; the function is called
    once per copy, and under reduction: mean the engine's mean gives back its value."""
    calls = []

    def total(x, y):
        calls.append((len(x), y.dtype.kind))
        return float(x.sum()), np.full_like(x, 0.5)

    loss = LOSSES["function"](total, "mean")
    target = loss.prepare_target(np.array([0.0, 1.0, 2.0]), (2,))
    x = np.arange(18.0).reshape(9, 2)
    losses, _ = loss.forward(x, np.tile(target, 3))
    assert calls == [(3, "i")] * 3
    per_copy = reduce_losses(losses, 3, "mean")
    np.testing.assert_allclose(per_copy, [x[:3].sum(), x[3:6].sum(), x[6:].sum()], rtol=1e-15)
    _, cache = loss.forward(x[:3], target)  # the analytic pass: the batch itself
    spec = LossSpec("function", loss, target, reduction="mean")
    np.testing.assert_allclose(reduced_dy(spec, loss.backward(cache)), 0.5, rtol=1e-15)


def test_a_function_pair_asked_to_share_is_told_why_not(tmp_path):
    """share: on a function pair is refused with the reason (its parameters are the
    params written on it) at the share: line, not only as a missing argument."""
    config = tmp_path / "net.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            plugins: [{EXAMPLE / "layers.py"}]
            input: {{shape: [2, 3], batched: true}}
            layers:
              - type: functions
                name: fc1
                forward: affine_forward
                backward: affine_backward
                params: {{w: {{shape: [3, 3], scale: 0.5}}, b: [0, 0, 0]}}
              - {{type: functions, name: fc2, forward: affine_forward,
                 backward: affine_backward, share: fc1}}
            loss: {{type: mse, target: [[0, 0, 0], [1, 1, 1]]}}
            """
        )
    )
    code, report, stderr = run(config)
    assert code == 2 and report is not None
    assert re.search(r"net\.yaml:10: layers\[1\]\.share: a function pair cannot share", stderr)
