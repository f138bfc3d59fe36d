"""Warnings for configs that are valid but probably do not mean what they say, each one
line naming the key with the file and line, in the run's output and the JSON report."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

import gradcheck_cli as gc
from gradcheck_cli import protocol
from gradcheck_cli.cli import cli
from gradcheck_cli.config import load_problem
from gradcheck_cli.config.semantics import unread
from gradcheck_cli.errors import ConfigError
from gradcheck_cli.layers._windows import Geometry, fold


def write(tmp_path: Path, text: str, name: str = "net.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(path: Path, *args: str):
    return CliRunner().invoke(cli, ["run", str(path), "--no-color", *args])


@pytest.fixture
def registry():
    saved = (dict(protocol.LAYERS), dict(protocol.LOSSES), dict(protocol.ORIGINS))
    path = list(sys.path)
    yield
    for live, old in zip((protocol.LAYERS, protocol.LOSSES, protocol.ORIGINS), saved, strict=True):
        live.clear()
        live.update(old)
    sys.path[:] = path


# --- cross_entropy fed something that is not probabilities ------------------------

LOGITS = """\
input: [1.0, 2.0, 3.0]
layers:
  - {type: dense, name: fc, out_features: 3, bias: [0, 0, 0],
     weight: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}
loss:
  type: cross_entropy
  target: 1
"""


def test_cross_entropy_on_logits_warns_and_suggests_softmax_cross_entropy(tmp_path):
    path = write(tmp_path, LOGITS)
    report = gc.check(path)
    (warning,) = [w for w in report.warnings if "cross_entropy" in w]
    assert warning.startswith(f"{path}:6: loss.type: cross_entropy takes probabilities")
    assert "outside [0, 1]" in warning and "sums to 6 in example 0, not 1" in warning
    assert "use softmax_cross_entropy (on logits)" in warning
    result = run(path, "--json", str(tmp_path / "r.json"))
    assert "warning: " + warning.split(": cross_entropy")[0] in result.output
    assert warning in json.loads((tmp_path / "r.json").read_text())["warnings"]


def test_cross_entropy_on_a_softmax_output_does_not_warn(tmp_path):
    text = LOGITS.replace("loss:", "  - {type: softmax}\nloss:")
    assert not [w for w in gc.check(write(tmp_path, text)).warnings if "cross_entropy" in w]


def test_cross_entropy_on_values_that_do_not_sum_to_one_warns(tmp_path):
    # sigmoid outputs are in [0, 1] but are no distribution over the classes
    text = LOGITS.replace("loss:", "  - {type: sigmoid}\nloss:")
    (warning,) = [w for w in gc.check(write(tmp_path, text)).warnings if "cross_entropy" in w]
    assert "outside" not in warning and "sums to 2.564 in example 0, not 1" in warning


def test_logits_that_make_the_loss_nan_say_why(tmp_path):
    path = write(tmp_path, LOGITS.replace("[1.0, 2.0, 3.0]", "[1.0, -2.0, 3.0]"))
    result = run(path)
    assert result.exit_code == 3
    assert "the loss contains NaN or Inf" in result.output
    assert "use softmax_cross_entropy" in result.output


# --- windows that leave rows or columns unread -------------------------------------


def test_max_pool_2_over_5x5_warns_of_the_last_row_and_column(tmp_path):
    path = write(
        tmp_path,
        """\
        input: {shape: [1, 5, 5]}
        layers:
          - {type: maxpool2d, name: pool1, kernel_size: 2}
          - {type: flatten}
        loss: {type: upstream, grad: [1, 2, 3, 4]}
        """,
    )
    (warning,) = load_problem(path).warnings
    assert warning.startswith(f"{path}:3: layers[0] (pool1): maxpool2d with kernel 2, stride 2")
    assert "over a 5x5 input never reads input row 4 and column 4" in warning
    report = gc.check(path)
    assert warning in report.warnings and report.passed  # a warning, not a failure


def test_windows_that_tile_the_input_do_not_warn(tmp_path):
    path = write(
        tmp_path,
        """\
        input: {shape: [2, 6, 6]}
        layers:
          - {type: conv2d, out_channels: 1, kernel_size: 3, padding: 1, stride: 1}
          - {type: avgpool2d, kernel_size: 2}
          - {type: maxpool2d, kernel_size: 3}
          - {type: flatten}
        loss: {type: upstream, grad: [1]}
        """,
    )
    assert load_problem(path).warnings == []


@given(
    st.integers(1, 9),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(0, 2),
)
def test_unread_positions_are_those_no_window_folds_back_onto(size, kernel, stride, pad):
    if kernel > size + 2 * pad:
        return
    g = Geometry(kernel, 1, stride, 1, pad, 0)
    ho = (size + 2 * pad - kernel) // stride + 1
    reads = fold(np.ones((1, 1, kernel, 1, ho, 1)), (size, 1), g)[0, 0, :, 0]
    assert unread(size, kernel, stride, pad) == [int(p) for p in np.flatnonzero(reads == 0)]


# --- a plugin whose __init__ takes a reserved key ----------------------------------

PLUGIN = """\
import gradcheck_cli as gc


@gc.register_layer("scaled")
class Scaled(gc.Layer):
    def __init__(self, name, scale: float = 1.0):
        self.scale = scale

    def forward(self, x, params):
        return x * self.scale, None

    def backward(self, dy, cache, params):
        return dy * self.scale, {}


@gc.register_layer("scaled_opt")
class ScaledOpt(Scaled):
    def __init__(self, inputs=None, scale: float = 1.0):
        self.scale = scale
"""


def test_a_plugin_init_that_requires_a_reserved_key_is_told_so(tmp_path, registry):
    (tmp_path / "mine.py").write_text(PLUGIN)
    path = write(
        tmp_path,
        """\
        plugins: [mine.py]
        input: [1.0, 2.0]
        layers:
          - {type: scaled, name: s1, scale: 2}
        loss: {type: upstream, grad: [1, 1]}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_problem(path)
    (issue,) = [str(i) for i in info.value.issues]
    assert issue.startswith(f"{path}:4: layers[0]: Scaled.__init__ (mine.py:6) takes `name`")
    assert "the layer's reserved key" in issue and "missing 1 required" not in issue


def test_an_optional_reserved_key_is_a_warning(tmp_path, registry):
    (tmp_path / "mine.py").write_text(PLUGIN)
    path = write(
        tmp_path,
        """\
        plugins: [mine.py]
        input: [1.0, 2.0]
        layers:
          - {type: scaled_opt}
        loss: {type: upstream, grad: [1, 1]}
        """,
    )
    (warning,) = load_problem(path).warnings
    assert warning.startswith(f"{path}:4: layers[0]: ScaledOpt.__init__ (mine.py:18) takes")
    assert "`inputs`, which is the layer's reserved key" in warning


# --- relative errors at the noise floor ---------------------------------------------

BIAS_BEFORE_BATCHNORM = """\
seed: 3
input: {value: [[1.0, 2.0], [0.5, -1.0], [2.0, 0.3], [0.1, 0.2]], batched: true}
layers:
  - {type: dense, name: fc, out_features: 3}
  - {type: batchnorm, name: bn}
loss: {type: mse, target: [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]}
"""


def test_a_zero_gradient_at_the_noise_floor_reads_both_0_not_a_relative_error_of_1(tmp_path):
    # batchnorm removes the mean, so the bias before it has a true gradient of exactly 0
    path = write(tmp_path, BIAS_BEFORE_BATCHNORM)
    result = run(path, "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if line.strip().startswith("fc.bias"))
    assert "both ~0" in row and "1.00e+00" not in row
    data = json.loads((tmp_path / "r.json").read_text())
    bias = next(c for c in data["checks"] if c["name"] == "fc.bias")
    assert bias["max_rel_error"] == 1.0  # the contract's number stays in the JSON
    (warning,) = [w for w in data["warnings"] if "both ~0" in w]
    assert warning.startswith(f"{path}:4: fc.bias: max rel err 1.00e+00 is from 3 elements")
    verbose = run(path, "-v").output.split("fc.bias (3): PASS")[1].split("bn.gamma")[0]
    rows = [line for line in verbose.splitlines() if line.strip().startswith("(")]
    assert len(rows) == 3 and all("both ~0" in row and "1.00e+00" not in row for row in rows)


def test_real_relative_errors_are_shown_as_they_are(tmp_path):
    report = gc.check(write(tmp_path, BIAS_BEFORE_BATCHNORM))
    weight = report.check("fc.weight")
    assert not weight.noise_floor_mask.any()
    assert weight.max_rel_error_above_floor == weight.max_rel_error > 0


# --- the did-you-mean never swaps a loss for one of another kind silently -----------


@pytest.mark.parametrize(
    "typo, proposed, other",
    [
        ("CrossEntropyLoss", "'cross_entropy' (on probabilities", "'softmax_cross_entropy' d"),
        ("softmax_crossentropy", "'softmax_cross_entropy' (on logits", "'cross_entropy' d"),
    ],
)
def test_a_proposed_loss_says_what_it_reads_and_how_its_neighbour_differs(
    tmp_path, typo, proposed, other
):
    path = write(tmp_path, LOGITS.replace("type: cross_entropy", f"type: {typo}"))
    with pytest.raises(ConfigError) as info:
        load_problem(path)
    (issue,) = [str(i) for i in info.value.issues]
    assert f"did you mean {proposed}" in issue and other in issue


def test_a_layer_named_as_the_loss_lists_the_losses_with_what_they_read(tmp_path):
    path = write(tmp_path, LOGITS.replace("type: cross_entropy", "type: softmax"))
    with pytest.raises(ConfigError) as info:
        load_problem(path)
    (issue,) = [str(i) for i in info.value.issues]
    assert "'softmax' is a layer, not a loss" in issue
    assert "cross_entropy (on probabilities" in issue
    assert "softmax_cross_entropy (on logits" in issue
