"""The config loader: YAML -> validated Problem, and every issue with file, line and path."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gradcheck_cli import protocol
from gradcheck_cli.config import load_problem, problem_from_dict
from gradcheck_cli.errors import ConfigError, ConfigIssue
from gradcheck_cli.problem import Method, Mode

EXAMPLE_A = """\
name: seed-conv-5x5
input:
  - [0.51, 0.90, 0.88, 0.84, 0.05]
  - [0.40, 0.62, 0.22, 0.59, 0.10]
  - [0.11, 0.20, 0.74, 0.33, 0.14]
  - [0.47, 0.01, 0.85, 0.70, 0.09]
  - [0.76, 0.19, 0.72, 0.17, 0.57]
layers:
  - type: conv2d
    name: conv1
    weight: [[-0.13, 0.15], [-0.55, 0.60]]
    bias: [0.03]
loss:
  type: upstream
  grad:
    - [0, 0, 0.0686, 0]
    - [0, 0.0364, 0, 0]
    - [0, 0.0467, 0, 0]
    - [0, 0, 0, -0.0681]
check:
  eps: 1e-6
expect:
  conv1.weight.grad: [[0.044606, 0.094061], [0.011262, 0.068288]]
  conv1.delta: [[0, 0, 0.0686, 0], [0, 0.0364, 0, 0], [0, 0.0467, 0, 0], [0, 0, 0, -0.0681]]
  tolerance: {atol: 2e-4}
"""

# A small valid stack the error tests below break one key at a time.
DENSE = """\
input: [1.0, 2.0, 3.0]
layers:
  - {type: dense, name: fc, out_features: 2}
loss: {type: mse, target: [0.5, -0.5]}
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str):
    return load_problem(write(tmp_path, text))


def issues_of(tmp_path: Path, text: str) -> list[ConfigIssue]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_problem(path)
    assert all(issue.file == str(path) for issue in info.value.issues)
    return info.value.issues


def the_issue(issues: list[ConfigIssue], path: str) -> ConfigIssue:
    found = [i for i in issues if i.path == path]
    assert found, f"no issue at {path!r}; got: {[str(i) for i in issues]}"
    return found[0]


def assert_issue(issues, path: str, line: int | None, *words: str) -> None:
    issue = the_issue(issues, path)
    assert issue.line == line, str(issue)
    for word in words:
        assert word in issue.message, str(issue)


# --- valid configs --------------------------------------------------------------------


def test_worked_example_a_keeps_internal_and_user_shapes(tmp_path):
    p = load(tmp_path, EXAMPLE_A)
    assert p.name == "seed-conv-5x5"
    assert p.dtype == "float64" and p.x.dtype == np.float64
    assert p.x.shape == (1, 1, 5, 5) and not p.batched
    assert p.input_user_shape == (5, 5)
    (conv,) = p.layers
    assert (conv.name, conv.type, conv.line) == ("conv1", "conv2d", 9)
    assert conv.in_shape == (1, 5, 5) and conv.out_shape == (1, 4, 4)
    assert conv.params["weight"].shape == (1, 1, 2, 2)
    assert conv.user_shapes["weight"] == (2, 2)
    np.testing.assert_allclose(conv.params["weight"][0, 0], [[-0.13, 0.15], [-0.55, 0.60]])
    np.testing.assert_allclose(conv.params["bias"], [0.03])
    # kernel_size and out_channels were inferred from the 2x2 weight
    assert conv.layer.out_channels == 1
    assert p.loss.type == "upstream" and p.loss.reduction == "sum"
    assert p.loss.target.shape == (1, 1, 4, 4)
    assert p.settings.eps == pytest.approx(1e-6)
    assert [e.key for e in p.expectations] == ["conv1.weight.grad", "conv1.delta"]
    assert [e.line for e in p.expectations] == [23, 24]
    assert p.expectations[1].value.shape == (4, 4)  # as written; conv output is (1, 4, 4)
    assert p.expect_atol == pytest.approx(2e-4) and p.expect_rtol == 0.0
    assert p.tensor_names() == ["input", "conv1.weight", "conv1.bias"]


def test_worked_example_a_runs_through_the_engine(tmp_path):
    from gradcheck_cli.engine import run_check

    report = run_check(load(tmp_path, EXAMPLE_A))
    assert all(c.failed == 0 for c in report.checks)
    assert all(e.passed for e in report.expectations)


def test_exponent_strings_are_numbers_everywhere(tmp_path):
    p = load(
        tmp_path,
        """\
        input: [1e-3, "2e-3", 3]
        layers:
          - {type: leaky_relu, negative_slope: 1e-2}
        loss: {type: mse, target: [1e0, 0, 0]}
        check: {eps: 1e-7, atol: 1e-9, rtol: 1e-4, time_budget: 5e0}
        expect:
          loss: 1e-1
          tolerance: {atol: 1e-5, rtol: 1e-3}
        """,
    )
    np.testing.assert_allclose(p.x, [[1e-3, 2e-3, 3.0]])
    assert p.layers[0].layer.negative_slope == pytest.approx(1e-2)
    s = p.settings
    assert (s.eps, s.atol, s.rtol) == pytest.approx((1e-7, 1e-9, 1e-4))
    assert s.time_budget == pytest.approx(5.0) and s.mode is Mode.BUDGET
    assert (p.expect_atol, p.expect_rtol) == pytest.approx((1e-5, 1e-3))
    assert p.expectations[0].value == pytest.approx(0.1)


def test_defaults_names_seeded_params_and_bias_false(tmp_path):
    text = """\
    seed: 7
    input: {shape: [1, 6, 6]}
    layers:
      - {type: conv2d, out_channels: 2, kernel_size: [3, 3], bias: false}
      - {type: relu}
      - {type: conv2d, out_channels: 1, kernel_size: 2}
      - {type: flatten}
      - {type: dense, out_features: 3}
    loss: {type: softmax_cross_entropy, target: 2}
    """
    p = load(tmp_path, text)
    assert [s.name for s in p.layers] == ["conv2d_1", "relu_1", "conv2d_2", "flatten_1", "dense_1"]
    assert list(p.layers[0].params) == ["weight"]  # bias: false
    assert p.layers[0].params["weight"].shape == (2, 1, 3, 3)
    assert p.layers[4].in_shape == (9,) and p.layers[4].params["weight"].shape == (3, 9)
    assert p.x.shape == (1, 1, 6, 6) and p.input_user_shape == (1, 6, 6)
    assert p.loss.target.shape == (1, 3)  # class index 2 -> one-hot
    assert p.settings.seed == 7
    again = load(tmp_path, text)  # everything seeded: same values twice
    np.testing.assert_array_equal(p.x, again.x)
    np.testing.assert_array_equal(p.layers[4].params["weight"], again.layers[4].params["weight"])


def test_weight_says_the_sizes_a_student_leaves_out(tmp_path):
    p = load(
        tmp_path,
        """\
        input: {shape: [2, 5, 5]}
        layers:
          - type: conv2d
            weight: {file: k.npy}
          - {type: flatten}
          - {type: dense, weight: [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27]]}
        loss: {type: upstream, grad: [1.0]}
        """.replace("k.npy", str(_save(tmp_path / "k.npy", np.ones((3, 2, 3, 3))))),
    )
    conv, _, dense = p.layers
    assert conv.out_shape == (3, 3, 3)
    assert dense.out_shape == (1,) and dense.params["weight"].shape == (1, 27)


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def test_two_d_input_to_a_pool_is_one_channel(tmp_path):
    p = load(
        tmp_path,
        """\
        input: [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
        layers: [{type: maxpool2d, kernel_size: 2}]
        loss: {type: upstream, grad: [[1, 0], [0, 1]]}
        expect:
          maxpool2d_1.output: [[6, 8], [14, 16]]
          input.grad: [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
        """,
    )
    assert p.x.shape == (1, 1, 4, 4) and p.input_user_shape == (4, 4)
    assert p.layers[0].out_shape == (1, 2, 2)
    assert p.loss.target.shape == (1, 1, 2, 2)


def test_batched_input_target_and_dropout_batch_size(tmp_path):
    p = load(
        tmp_path,
        """\
        input: {value: [[1, 2], [3, 4], [5, 6]], batched: true}
        layers:
          - {type: dense, out_features: 3}
          - {type: dropout, p: 0.25, seed: 1}
          - {type: softmax}
        loss: {type: cross_entropy, target: [0, 2, 1], reduction: mean}
        expect:
          input.grad: [[0, 0], [0, 0], [0, 0]]
          dense_1.output: [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
        """,
    )
    assert p.batched and p.batch_size == 3
    assert p.x.shape == (3, 2) and p.input_user_shape == (3, 2)
    assert p.layers[1].layer.batch_size == 3
    assert p.loss.target.shape == (3, 3) and p.loss.reduction == "mean"
    np.testing.assert_array_equal(p.loss.target.argmax(axis=1), [0, 2, 1])


def test_batched_random_and_file_inputs(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(8.0).reshape(2, 4))
    np.save(tmp_path / "g.npy", np.ones((4, 2, 3)))
    p = load(
        tmp_path,
        """\
        input: {file: x.npy, batched: true}
        layers: [{type: tanh}]
        loss: {type: upstream, grad: [[1, 1, 1, 1], [1, 1, 1, 1]]}
        """,
    )
    assert p.x.shape == (2, 4) and p.batched
    p = load(
        tmp_path,
        """\
        input: {shape: [4, 2, 3], batched: true}
        layers: [{type: relu}]
        loss: {type: upstream, grad: {file: g.npy}}
        """,
    )
    assert p.x.shape == (4, 2, 3) and p.input_user_shape == (4, 2, 3)
    assert p.loss.target.shape == (4, 2, 3)


def test_npy_and_npz_arrays_relative_to_the_config(tmp_path):
    sub = tmp_path / "cfg"
    sub.mkdir()
    np.save(sub / "x.npy", np.arange(4, dtype=np.int64))
    np.savez(sub / "w.npz", fc=np.full((2, 4), 0.5), b=np.array([1.0, -1.0]))
    p = load_problem(
        write(
            sub,
            """\
            input: {file: x.npy}
            layers:
              - {type: dense, name: fc, weight: {file: w.npz, key: fc}, bias: {file: w.npz, key: b}}
            loss: {type: mse, target: [0, 0]}
            """,
        )
    )
    assert p.x.dtype == np.float64
    np.testing.assert_array_equal(p.x, [[0, 1, 2, 3]])
    np.testing.assert_array_equal(p.layers[0].params["weight"], np.full((2, 4), 0.5))
    np.testing.assert_array_equal(p.layers[0].params["bias"], [1.0, -1.0])


def test_float32_is_warned_and_cast(tmp_path):
    p = load(tmp_path, "dtype: float32\n" + DENSE)
    assert p.dtype == "float32"
    assert p.x.dtype == np.float32 and p.layers[0].params["weight"].dtype == np.float32
    assert p.loss.target.dtype == np.float32
    assert any("float32 is too coarse" in w for w in p.warnings)


def test_check_block_becomes_settings(tmp_path):
    p = load(
        tmp_path,
        DENSE
        + """\
check:
  method: taylor
  only: fc.*
  sample: 3
  strict_kinks: true
  max_memory: 512MiB
""",
    )
    s = p.settings
    assert s.method is Method.TAYLOR and s.mode is Mode.SAMPLE and s.sample == 3
    assert s.only == ("fc.*",) and s.strict_kinks and s.max_memory == 512 * 2**20
    assert s.seed == 0
    fast = load(tmp_path, "seed: 4\n" + DENSE + "check: {fast: true, max_memory: 1GB, seed: 9}\n")
    assert fast.settings.mode is Mode.FAST and fast.settings.max_memory == 10**9
    assert fast.settings.seed == 9 and fast.seed == 4
    assert load(tmp_path, "seed: 4\n" + DENSE).settings.seed == 4


def test_problem_from_dict_accepts_numpy_and_has_no_lines(tmp_path):
    doc = {
        "input": np.ones(3),
        "layers": [{"type": "dense", "out_features": 2}],
        "loss": {"type": "mse", "target": np.zeros(2)},
    }
    p = problem_from_dict(doc)
    assert p.x.shape == (1, 3) and p.path == "<dict>"
    assert p.layers[0].line is None
    with pytest.raises(ConfigError) as info:
        problem_from_dict({**doc, "layers": [{"type": "dense", "out_feature": 2}]}, source="api")
    issue = the_issue(info.value.issues, "layers[0].out_feature")
    assert issue.line is None and issue.file == "api"
    assert "did you mean 'out_features'" in issue.message


# --- errors: one key at a time ----------------------------------------------------------


# One key broken at a time (the file, the line, the key path and the fix named) is the
# invalid-config corpus's job: tests/bad_configs/key_*.yaml, run by test_bad_configs.py.


def test_the_stack_the_corpus_breaks_is_valid(tmp_path):
    load(tmp_path, DENSE)
    load(tmp_path, DENSE.replace("name: fc, ", ""))


def test_conv_weight_shape_message_names_the_axes(tmp_path):
    issues = issues_of(
        tmp_path,
        """\
        input: {shape: [1, 28, 28]}
        layers:
          - type: conv2d
            out_channels: 6
            kernel_size: 5
            weight: [[1, 2, 3], [1, 2, 3], [1, 2, 3]]
        loss: {type: upstream, grad: 1}
        """,
    )
    assert_issue(
        issues,
        "layers[0].weight",
        6,
        "weight has shape [3, 3] but this layer needs [6, 1, 5, 5] "
        "(out_channels, in_channels, kh, kw)",
    )


def test_layer_range_errors_point_at_their_key(tmp_path):
    issues = issues_of(
        tmp_path,
        """\
        input: {shape: [1, 8, 8]}
        layers:
          - type: conv2d
            out_channels: 2
            kernel_size: 3
            stride: 0
          - {type: maxpool2d, kernel_size: 2}
        loss: {type: upstream, grad: 1}
        """,
    )
    assert_issue(issues, "layers[0].stride", 6, "must be an integer >= 1")
    issues = issues_of(
        tmp_path,
        """\
        input: {shape: [1, 8, 8]}
        layers:
          - {type: conv2d, out_channels: 2, kernel_size: 3}
          - type: maxpool2d
            kernel_size: 20
        loss: {type: upstream, grad: 1}
        """,
    )
    assert_issue(issues, "layers[1].kernel_size", 5, "larger than the padded input 6x6")


def test_many_issues_are_reported_together(tmp_path):
    issues = issues_of(
        tmp_path,
        """\
        nmae: x
        input: [[1, 2], [3]]
        layers:
          - {type: dense, out_features: 2, kernal: 3}
          - {type: relu, name: input}
          - {type: conv}
        loss: {type: mse}
        check: {eps: -1}
        """,
    )
    paths = [i.path for i in issues]
    for expected in [
        "nmae",
        "input",
        "layers[0].kernal",
        "layers[1].name",
        "layers[2].type",
        "loss.target",
        "check.eps",
    ]:
        assert expected in paths
    assert [i.line for i in issues if i.path == "layers[2].type"] == [6]
    # the message lists every issue, each with file:line
    text = str(ConfigError(issues))
    assert text.count("config.yaml:") == len(issues)


def test_shape_inference_stops_at_the_first_unknown_shape(tmp_path):
    issues = issues_of(
        tmp_path,
        """\
        input: {shape: [1, 4, 4]}
        layers:
          - {type: conv2d, out_channels: 1, kernel_size: 9}
          - {type: dense, out_features: 2}
        loss: {type: upstream, grad: [1, 1]}
        """,
    )
    assert [i.path for i in issues] == ["layers[0].kernel_size"]  # no follow-on noise


# YAML that does not parse (tabs, an unclosed bracket, empty, several documents):
# tests/bad_configs/yaml_*.yaml.


def test_duplicate_keys_are_reported_with_other_issues(tmp_path):
    issues = issues_of(
        tmp_path,
        """\
        input: [1, 2, 3]
        input: [1, 2]
        layers:
          - {type: dense, out_features: 2, out_features: 3}
        loss: {type: mse, target: [0, 0]}
        """,
    )
    assert_issue(issues, "input", 2, "duplicate key 'input'", "line 1")
    assert_issue(issues, "layers[0].out_features", 4, "duplicate key 'out_features'")
    assert_issue(issues, "loss.target", 5, "[2]", "[3]")  # the later value was used


def test_python_tags_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    issues = issues_of(
        tmp_path,
        f"""\
        input: [1, 2]
        layers: [{{type: relu}}]
        loss: {{type: mse, target: !!python/object/apply:os.system ["touch {marker}"]}}
        """,
    )
    assert len(issues) == 1 and issues[0].line == 3
    assert "!!python/object/apply:os.system is not allowed" in issues[0].message
    assert "plugins" in issues[0].message
    assert not marker.exists()


def test_array_file_errors(tmp_path):
    np.savez(tmp_path / "w.npz", conv1=np.ones((2, 3)), fc=np.ones(2))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "nan.npy", np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0]]))
    np.save(tmp_path / "text.npy", np.array(["a", "b"]))
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    issues = issues_of(
        tmp_path,
        """\
        input: {file: missing.npy}
        layers:
          - {type: dense, out_features: 2, weight: {file: w.npz, key: conv}}
          - {type: dense, out_features: 2, weight: {file: w.npz}}
          - {type: dense, out_features: 2, weight: {file: obj.npy}}
          - {type: dense, out_features: 2, weight: {file: nan.npy}}
          - {type: dense, out_features: 2, weight: {file: bad.npy}}
          - {type: dense, out_features: 2, weight: {file: text.npy}}
          - {type: dense, out_features: 2, weight: {file: w.npy, key: x}}
        loss: {type: mse, target: [0, 0]}
        """,
    )
    assert_issue(issues, "input.file", 1, "file not found", str(tmp_path / "missing.npy"))
    assert_issue(issues, "layers[0].weight.key", 3, "no array 'conv'", "did you mean 'conv1'")
    assert_issue(issues, "layers[1].weight.file", 4, "holds 2 arrays", "conv1, fc")
    assert_issue(issues, "layers[2].weight.file", 5, "pickled", "never loaded")
    assert_issue(issues, "layers[3].weight", 6, "NaN or Inf", "[1, 0]")
    assert_issue(issues, "layers[4].weight.file", 7, "could not read bad.npy")
    assert_issue(issues, "layers[5].weight.file", 8, "dtype <U1", "real numbers")
    assert_issue(issues, "layers[6].weight.file", 9, "file not found")


def test_batched_loss_target_must_carry_the_batch_axis(tmp_path):
    issues = issues_of(
        tmp_path,
        """\
        input: {value: [[1, 2], [3, 4], [5, 6]], batched: true}
        layers: [{type: dense, out_features: 3}, {type: softmax}]
        loss: {type: cross_entropy, target: [0, 2]}
        """,
    )
    assert_issue(issues, "loss.target", 3, "batched (N=3)", "batch axis first", "[2]")


def test_missing_or_unreadable_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_problem(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="folder"):
        load_problem(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_problem(tmp_path / "latin1.yaml")
    with pytest.raises(ConfigError, match="mapping"):
        problem_from_dict([1, 2])  # type: ignore[arg-type]


# --- plugins ------------------------------------------------------------------------------

SWISH = """\
import numpy as np
import gradcheck_cli as gc
from swish_helper import DEFAULT_BETA


@gc.register_layer("swish_t")
class Swish(gc.Layer):
    def __init__(self, beta: float = DEFAULT_BETA):
        self.beta = beta

    def forward(self, x, params):
        s = 1.0 / (1.0 + np.exp(-self.beta * x))
        return x * s, (x, s)

    def backward(self, dy, cache, params):
        x, s = cache
        return dy * (s + self.beta * x * s * (1.0 - s)), {}
"""


def test_plugin_file_relative_to_the_config(tmp_path, clean_registry):
    folder = tmp_path / "project"
    (folder / "plugins").mkdir(parents=True)
    (folder / "plugins" / "swish.py").write_text(SWISH)
    (folder / "plugins" / "swish_helper.py").write_text("DEFAULT_BETA = 1.0\n")
    path_before = list(sys.path)
    p = load_problem(
        write(
            folder,
            """\
            plugins: [plugins/swish.py]
            input: [0.5, -1.0]
            layers:
              - {type: swish_t, beta: 2e-1}
            loss: {type: upstream, grad: [1, 1]}
            """,
        )
    )
    assert p.layers[0].type == "swish_t" and p.layers[0].layer.beta == pytest.approx(0.2)
    assert protocol.ORIGINS[("layer", "swish_t")] == str(folder / "plugins" / "swish.py")
    assert protocol._origin.get() == "built-in"
    assert sys.path == path_before  # the plugin's folder was on sys.path only while importing
    # loading twice re-imports without complaint
    assert load_problem(folder / "config.yaml").layers[0].type == "swish_t"


def test_plugin_module_name(tmp_path, clean_registry, monkeypatch):
    (tmp_path / "my_plugin_mod_t.py").write_text(
        SWISH.replace("from swish_helper import DEFAULT_BETA", "DEFAULT_BETA = 1.0")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = """\
    plugins: my_plugin_mod_t
    input: [0.5, -1.0]
    layers: [{type: swish_t}]
    loss: {type: upstream, grad: [1, 1]}
    """
    assert load(tmp_path, text).layers[0].type == "swish_t"
    assert protocol.ORIGINS[("layer", "swish_t")] == "my_plugin_mod_t"
    assert load(tmp_path, text).layers[0].type == "swish_t"  # cached module: still fine


def test_plugin_failures(tmp_path, clean_registry):
    (tmp_path / "boom.py").write_text("X = 1\nraise RuntimeError('boom')\n")
    (tmp_path / "nothing.py").write_text("X = 1\n")
    (tmp_path / "syntax.py").write_text("def f(:\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    issues = issues_of(
        tmp_path,
        """\
        plugins:
          - boom.py
          - nothing.py
          - missing.py
          - syntax.py
          - exits.py
          - no_such_module_xyz
        input: [1, 2]
        layers: [{type: swish_t}]
        loss: {type: upstream, grad: [1, 1]}
        """,
    )
    assert_issue(issues, "plugins[0]", 2, "boom.py failed to import", "RuntimeError: boom", ":2")
    assert_issue(issues, "plugins[1]", 3, "registered no layer or loss", "register_layer")
    assert_issue(issues, "plugins[2]", 4, "not found", str(tmp_path / "missing.py"))
    assert_issue(issues, "plugins[3]", 5, "SyntaxError")
    assert_issue(issues, "plugins[4]", 6, "SystemExit")
    assert_issue(issues, "plugins[5]", 7, "no module named 'no_such_module_xyz'")
    assert_issue(issues, "layers[0].type", 9, "unknown layer type 'swish_t'", "plugin failed")
    assert protocol._origin.get() == "built-in"
    assert not any(m.startswith("gradcheck_plugin_boom") for m in sys.modules)


def test_conveniences_and_warnings(tmp_path):
    p = load(
        tmp_path,
        """\
        input: [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
        layers:
          - {type: conv2d, name: c, kernel_size: 2, out_channels: 1, bias: 0.5}
        loss: {type: upstream, grad: [[1, 0], [0, 1]]}
        expect:
          c.bias.grad: 2
          c.output: [[0, 0], [0, 0]]
        """,
    )
    assert p.layers[0].params["bias"].shape == (1,) and p.layers[0].user_shapes["bias"] == ()
    assert p.loss.target.shape == (1, 1, 2, 2)


def test_check_only_that_matches_nothing_is_an_issue(tmp_path):
    """It would check nothing and pass, as --only and the Python API refuse it too."""
    issues = issues_of(tmp_path, DENSE + "check:\n  only: [nope.*, fc]\n")
    assert [i.path for i in issues] == ["check.only", "check.only"]
    assert all(i.line == 6 for i in issues)
    assert "'nope.*' matches no tensor" in issues[0].message and "input" in issues[0].message
    assert "did you mean 'fc.*'?" in issues[1].message


def test_problem_from_dict_resolves_files_against_base_dir(tmp_path):
    np.save(tmp_path / "x.npy", np.ones(3))
    doc = {
        "input": {"file": "x.npy"},
        "layers": [{"type": "relu"}],
        "loss": {"type": "upstream", "grad": [1, 1, 1]},
    }
    assert problem_from_dict(doc, base_dir=tmp_path).x.shape == (1, 3)
    with pytest.raises(ConfigError, match="file not found"):
        problem_from_dict(doc, base_dir=tmp_path / "elsewhere")


def test_module_plugin_that_is_really_a_file_gets_a_hint(tmp_path, clean_registry):
    (tmp_path / "layers_here.py").write_text("X = 1\n")
    issues = issues_of(tmp_path, "plugins: [layers_here]\n" + DENSE)
    assert_issue(issues, "plugins[0]", 1, "no module named 'layers_here'", "write layers_here.py")


@pytest.mark.parametrize("x", [0.7, -2.5, 1e-3, 40.0])
def test_a_number_is_an_input_of_one_value(tmp_path, x):
    """Contract section 2: an array may be written as a number, the input too. The input
    is one example of shape (), its gradient is reported in that shape, and it is the
    hand-derived (sigmoid(x) - t) * sigmoid(x) * (1 - sigmoid(x)) of E = (sigmoid(x) - t)^2 / 2;
    a layer that needs a flat vector still says to add a flatten."""
    from gradcheck_cli.engine import run_check

    t = 0.2
    p = load(
        tmp_path, f"input: {x}\nlayers: [{{type: sigmoid}}]\nloss: {{type: mse, target: {t}}}\n"
    )
    report = run_check(p)
    (check,) = report.checks
    s = 1 / (1 + np.exp(-x))
    assert check.analytic.shape == () and check.checked_mask.all() and check.passed
    assert float(check.analytic) == pytest.approx((s - t) * s * (1 - s), rel=1e-12)
    with pytest.raises(ConfigError, match="add `- {type: flatten}`"):
        load(
            tmp_path,
            f"input: {x}\nlayers: [{{type: dense, out_features: 2}}]\n"
            "loss: {type: mse, target: [0, 1]}\n",
        )
    flat = load(
        tmp_path,
        f"input: {x}\nlayers: [{{type: flatten}}, {{type: dense, out_features: 2}}]\n"
        "loss: {type: softmax_cross_entropy, target: 1}\n",
    )
    assert all(c.passed for c in run_check(flat).checks)
