"""Purity probes (engine/purity.py), gradcheck's own copies (engine/passes.py) and the
dtype protocol, through ``gradcheck_cli.check`` on small configs.

Every bug class of issue 10 in several variants (tests/purity_plugins/, each bug
marked ``# BUG:``): the right exit, the right tensors failing, the right layer blamed and
the problem named by kind. And the correct counterparts: cs231n's relu_backward that
zeroes dout in place, a batch norm with a false ``batch_independent`` claim, a layer that
reuses its output buffer, and every built-in layer and loss, which must probe clean.
"""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from engine_toys import Add, Affine, make_graph
from installed import GRADCHECK
from layer_cases import LAYER_CASES, MULTI_CASES, case, network_config
from test_builtins_through_engine import CS231N, LOSS_CASES

import gradcheck_cli as gc
from gradcheck_cli import protocol
from gradcheck_cli.api import load
from gradcheck_cli.cli import cli
from gradcheck_cli.engine import purity, run_check
from gradcheck_cli.engine.explain import explain
from gradcheck_cli.engine.passes import analytic_pass, problem_params
from gradcheck_cli.errors import NondeterministicError, NumericalError, PluginError

PLUGINS = Path(__file__).parent / "purity_plugins"
X = {"value": [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [-0.3, 0.8, 0.1]], "batched": True}
TARGET = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]
BELOW = {"input", "fc1.weight", "fc1.bias"}  # the tensors below the layer under test


@pytest.fixture(autouse=True)
def _registry():
    """Plugins register in the process-wide registry (and one replaces mse): restore it."""
    import gradcheck_cli.layers
    import gradcheck_cli.losses  # noqa: F401  (the built-ins, registered before the snapshot)

    saved = dict(protocol.LAYERS), dict(protocol.LOSSES), dict(protocol.ORIGINS)
    yield
    for live, old in zip((protocol.LAYERS, protocol.LOSSES, protocol.ORIGINS), saved, strict=True):
        live.clear()
        live.update(old)


def stack(mid: str, plugin: str = "impure_layers.py", before: str | None = "sigmoid", **over):
    """input -> fc1 (dense) -> prev (``before``) -> mutant (``mid``) -> fc2 (dense) -> mse."""
    layers = [{"type": "dense", "name": "fc1", "out_features": 4}]
    if before:
        layers.append({"type": before, "name": "prev"})
    layers += [{"type": mid, "name": "mutant"}, {"type": "dense", "name": "fc2", "out_features": 2}]
    config = {
        "seed": 1,
        "plugins": [str(PLUGINS / plugin)],
        "input": X,
        "layers": layers,
        "loss": {"type": "mse", "target": TARGET},
    }
    return {**config, **over}


def with_loss(loss: str) -> dict:
    """input -> fc1 -> prev (sigmoid, which keeps its output) -> ``loss``."""
    return {
        "seed": 1,
        "plugins": [str(PLUGINS / "impure_losses.py")],
        "input": X,
        "layers": [
            {"type": "dense", "name": "fc1", "out_features": 2},
            {"type": "sigmoid", "name": "prev"},
        ],
        "loss": {"type": loss, "target": TARGET},
    }


def failing(report) -> set[str]:
    return {c.name for c in report.checks if not c.passed}


def problems(report, layer: str) -> dict[str, bool]:
    """kind -> fails the check, for one layer's problems."""
    verdict = next(v for v in report.layers if v.name == layer)
    return {p.kind: p.failure for p in verdict.problems}


def assert_corrupted_by(report, tensors: set[str], culprit: str) -> None:
    for name in tensors:
        check = report.check(name)
        assert check.corrupted_by == culprit and check.diagnosis, name


# --- a forward that writes into its input ----------------------------------------------


@pytest.mark.parametrize(
    "mutant", ["inplace_mul", "inplace_add", "inplace_ufunc_out", "inplace_later"]
)
def test_writing_into_the_input_corrupts_the_saved_activation_before_it(mutant):
    report = gc.check(stack(mutant))  # prev is a sigmoid, which keeps its output
    assert not report.passed and report.exit_code == 1
    assert report.blamed_layers() == ["mutant"]
    assert failing(report) == BELOW
    assert_corrupted_by(report, BELOW, "mutant")
    assert report.check("fc1.weight").consequence_of == "mutant"
    assert "saved activation of layer 'prev'" in report.check("input").diagnosis
    assert problems(report, "mutant") == {"mutates_input": True}


def test_a_write_that_changes_a_saved_activation_fails_even_with_no_gradient_changed():
    # an in-place ReLU after tanh zeroes tanh's saved negatives, exactly where no gradient
    # flows: PyTorch refuses it ("modified by an inplace operation"), and so does gradcheck
    report = gc.check(stack("inplace_relu", before="tanh"))
    assert failing(report) == set()
    assert not report.passed and report.exit_code == 1
    assert report.blamed_layers() == ["mutant"]
    verdict = next(v for v in report.layers if v.name == "mutant")
    assert verdict.own_backward_ok and verdict.impure
    assert "saved activation of layer 'prev'" in verdict.diagnosis


def test_a_write_into_the_input_that_nothing_keeps_is_only_a_warning():
    report = gc.check(stack("inplace_mul", before=None))  # fc1 keeps its input, not its output
    assert report.passed and report.blamed_layers() == []
    assert problems(report, "mutant") == {"mutates_input": False}
    assert any("writes into its input (fc1)" in w for w in report.warnings)


@pytest.mark.parametrize("mutant_first", [True, False], ids=["mutant-first", "mutant-last"])
@pytest.mark.parametrize("mutant", ["inplace_mul", "inplace_relu"])
def test_writing_into_a_value_another_layer_reads_fails(mutant, mutant_first):
    """A fork: fc1's output is read by the mutant and by fc2, joined by an add."""
    protocol.LAYERS.pop(mutant, None)
    gc.check(stack(mutant, before=None))  # registers the plugin's layers
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    branches = [("m", protocol.LAYERS[mutant](), ["fc1"], None), ("fc2", Affine(4), ["fc1"], None)]
    nodes = [
        ("fc1", Affine(4), None, None),
        *(branches if mutant_first else branches[::-1]),
        ("join", Add(), ["m", "fc2"], None),
    ]
    report = run_check(make_graph(nodes, x, target))
    assert not report.passed and report.blamed_layers() == ["m"]
    assert failing(report)  # which ones depends on the order the branches run in
    assert {report.check(t).corrupted_by for t in failing(report)} == {"m"}
    assert next(v for v in report.layers if v.name == "m").problems[0].kind == "mutates_input"


# --- writing into a parameter ----------------------------------------------------------


@pytest.mark.parametrize(
    "mutant, where, below",
    [
        ("gain_drift", "forward", BELOW),  # backward then uses the moved gain
        ("gain_sgd_in_backward", "backward", BELOW),  # a second backward uses it
        ("bias_drift", "forward", set()),  # nothing else depends on the bias
    ],
)
def test_a_parameter_written_in_place_fails_that_parameter_and_its_layer(mutant, where, below):
    report = gc.check(stack(mutant))
    param = "mutant.bias" if mutant == "bias_drift" else "mutant.gain"
    assert not report.passed and report.blamed_layers() == ["mutant"]
    assert failing(report) == {param, *below}
    assert_corrupted_by(report, {param, *below}, "mutant")
    assert f"in its {where}" in report.check(param).diagnosis
    assert problems(report, "mutant")["mutates_params"] is True


# --- a backward that answers differently when called again -------------------------------


@pytest.mark.parametrize("mutant", ["buffer_attr", "buffer_global"])
def test_a_gradient_buffer_never_zeroed_fails_the_parameter(mutant):
    report = gc.check(stack(mutant))
    assert not report.passed and report.blamed_layers() == ["mutant"]
    assert failing(report) == {"mutant.gain"}  # dx is right: the layers below are too
    assert_corrupted_by(report, {"mutant.gain"}, "mutant")
    assert "called again" in report.check("mutant.gain").diagnosis
    assert problems(report, "mutant") == {"backward_not_repeatable": True}


def test_a_dx_buffer_never_zeroed_fails_every_tensor_below():
    report = gc.check(stack("buffer_dx"))
    assert report.blamed_layers() == ["mutant"]
    assert failing(report) == BELOW
    assert_corrupted_by(report, BELOW, "mutant")


def test_a_backward_that_writes_into_its_cache_is_not_repeatable():
    report = gc.check(stack("sigmoid_cache_inplace"))
    assert report.blamed_layers() == ["mutant"]
    assert failing(report) == BELOW
    assert problems(report, "mutant") == {"mutates_cache": False, "backward_not_repeatable": True}


# --- a forward that is not deterministic ---------------------------------------------------


@pytest.mark.parametrize(
    "mutant", ["dropout_fresh_mask", "dropout_rng_in_init", "call_counter", "noisy"]
)
def test_a_nondeterministic_forward_cannot_be_checked(mutant):
    with pytest.raises(NondeterministicError) as err:
        gc.check(stack(mutant))
    assert isinstance(err.value, NumericalError) and err.value.exit_code == 3
    assert err.value.layer == "mutant"
    assert "different outputs for the same input" in str(err.value)
    assert "seed" in str(err.value)


# --- writing into dy: a warning -----------------------------------------------------------


@pytest.mark.parametrize("layer", ["cs231n_relu", "tanh_dy_ufunc"])
def test_writing_into_dy_is_a_warning_and_changes_nothing_gradcheck_reports(layer):
    clean = stack("relu" if layer == "cs231n_relu" else "tanh", before=None)
    delta = explain(load(clean)).steps[1].delta  # dE/d(mutant's output), example 0
    config = stack(layer, plugin="correct_layers.py", before=None)
    right = _deltas(load(clean), "mutant")  # the built-in's, for the whole batch
    config["expect"] = {"mutant.delta": right.tolist(), "tolerance": {"atol": 1e-12}}
    report = gc.check(config)
    assert report.passed and report.exit_code == 0
    assert report.expectations[0].passed
    assert problems(report, "mutant") == {"mutates_dy": False}
    assert any("writes into dy" in w and "read by two layers" in w for w in report.warnings)
    shown = explain(load(config)).steps[1].delta  # explain shows the right delta too
    np.testing.assert_array_equal(shown, delta)
    if layer == "cs231n_relu":  # the old bug would have shown zeros where the input is <= 0
        x = explain(load(config)).steps[0].output
        assert np.any(delta[x <= 0] != 0)


def _deltas(problem, layer: str) -> np.ndarray:
    _, grads = analytic_pass(problem, problem_params(problem))
    return grads.deltas[layer]


def test_writing_into_dy_at_a_fork_is_still_only_a_warning():
    gc.check(stack("cs231n_relu", plugin="correct_layers.py", before=None))  # registers it
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    nodes = [
        ("fc1", Affine(4), None, None),
        ("r", protocol.LAYERS["cs231n_relu"](), ["fc1"], None),
        ("fc2", Affine(4), ["fc1"], None),
        ("join", Add(), ["r", "fc2"], None),
    ]
    report = run_check(make_graph(nodes, x, target))
    assert report.passed, failing(report)
    assert problems(report, "r") == {"mutates_dy": False}


# --- batch_independent claimed by a layer whose rows mix ------------------------------------


def test_a_false_batch_independent_claim_is_warned_and_checked_the_slow_way():
    x = {"value": np.linspace(-1.0, 2.0, 12).reshape(4, 3).tolist(), "batched": True}
    target = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.2, 0.1]]
    config = stack("batchnorm_claims_independent", plugin="correct_layers.py", before=None)
    config.update(input=x, loss={"type": "mse", "target": target})
    report = gc.check(config)
    assert report.passed and report.blamed_layers() == []
    assert problems(report, "mutant") == {"not_batch_independent": False}
    assert any("batch_independent" in w for w in report.warnings)


def test_without_the_override_the_false_claim_would_fail_a_correct_layer(monkeypatch):
    """The probe's override is what lets the batch norm above be checked: without it its
    perturbed copies mix with each other, which the copies probe then finds
    (engine/interference.py: the check cannot be carried out) rather than the check
    failing a correct layer."""
    monkeypatch.setattr(purity, "_mixes_rows", lambda *args: None)
    x = {"value": np.linspace(-1.0, 2.0, 12).reshape(4, 3).tolist(), "batched": True}
    target = [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.2, 0.1]]
    config = stack("batchnorm_claims_independent", plugin="correct_layers.py", before=None)
    config.update(input=x, loss={"type": "mse", "target": target})
    with pytest.raises(NondeterministicError, match="perturbed copies"):
        gc.check(config)


def test_a_function_pair_that_takes_no_other_batch_size_is_checked_one_copy_at_a_time():
    """A mask of the batch's shape in its args, and batch_independent: true: stacked
    copies make it raise (a broadcast error), which once stopped the run with exit 2.
    That disproves the claim: a warning, and the check runs one copy at a time."""
    x = {"value": [[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], "batched": True}
    config = {
        "plugins": [str(PLUGINS / "correct_layers.py")],
        "input": x,
        "layers": [
            {"type": "dense", "name": "d", "out_features": 3},
            {
                "type": "functions",
                "name": "mk",
                "forward": "masked_forward",
                "backward": "masked_backward",
                "args": [{"mask": [[2, 2, 0], [2, 0, 0]]}],
                "batch_independent": True,
            },
        ],
        "loss": {"type": "upstream", "grad": [[1, 2, 3], [4, 5, 6]]},
    }
    report = gc.check(config)
    assert report.passed and problems(report, "mk") == {"not_batch_independent": False}
    assert any("raised on copies of the batch stacked" in w for w in report.warnings)


@pytest.mark.parametrize("bug", [False, True])
def test_a_row_that_depends_on_its_position_is_caught_by_the_stacked_probe(bug):
    """A seeded dropout whose mask is drawn for x.shape claims batch_independent: with
    row 0 changed its other rows stay (the first probe passes it), but with two copies stacked
    they come out with other masks. Caught, it is checked one copy at a time: the
    correct one passes with the warning, the one that forgets 1 / p fails, blamed. (Once
    it passed with exit 0 on the stacked copies' meaningless numbers, the bug too.)"""
    config = stack("seeded_dropout_claims_independent", plugin="correct_layers.py")
    config["layers"][2]["bug"] = bug
    report = gc.check(config)
    assert problems(report, "mutant") == {"not_batch_independent": False}
    if bug:
        assert report.failed and report.blamed_layers() == ["mutant"]
    else:
        assert report.passed and report.blamed_layers() == []


# --- gradcheck's own copies on the numeric side --------------------------------------------


def test_a_layer_that_returns_a_buffer_it_reuses_is_defended_not_blamed():
    problem = load(stack("output_buffer", plugin="correct_layers.py"))
    report = run_check(problem)
    assert report.passed and report.blamed_layers() == []
    assert not any(v.problems for v in report.layers)  # harmless in a training step
    assert problem.network.node("mutant").defended


def test_clean_nodes_run_undefended_on_the_hot_path():
    problem = load(stack("inplace_mul"))
    run_check(problem)
    assert [n.name for n in problem.network if n.defended] == ["mutant"]


# --- dtypes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutant, words",
    [
        ("complex_output", "y has complex dtype complex128"),
        ("complex_grad", "dgain has complex dtype complex128"),
        ("complex_dx", "dx has complex dtype complex128"),
        ("float32_output", "y is float32 in a float64 check"),
        ("float32_grad", "dgain is float32 in a float64 check"),
        ("object_grad", "dgain has dtype object"),
        ("int_dx", "dx has dtype int64"),
        ("bool_output", "y has dtype bool"),
    ],
)
def test_a_wrong_dtype_is_a_protocol_error_naming_the_layer_array_and_dtype(mutant, words):
    with pytest.raises(PluginError) as err:
        gc.check(stack(mutant, plugin="dtype_layers.py", before=None))
    assert err.value.exit_code == 2 and err.value.layer == "mutant"
    assert words in str(err.value)


@pytest.mark.parametrize(
    "loss, words",
    [
        ("mse_float32", "losses is float32 in a float64 check"),
        ("mse_complex_dy", "dy has complex dtype complex128"),
    ],
)
def test_a_loss_of_the_wrong_dtype_is_a_protocol_error_against_the_loss(loss, words):
    with pytest.raises(PluginError) as err:
        gc.check(with_loss(loss))
    assert err.value.layer == "loss" and words in str(err.value)


def test_a_float64_result_in_a_float32_check_is_accepted():
    report = gc.check({**stack("float64_in_float32", plugin="dtype_layers.py"), "dtype": "float32"})
    assert report.passed


# --- the loss ----------------------------------------------------------------------------------


def test_a_loss_that_writes_into_y_is_blamed():
    report = gc.check(with_loss("mse_inplace_y"))  # y is the sigmoid's saved output
    assert report.blamed_layers() == ["loss"]
    assert failing(report) == BELOW
    assert_corrupted_by(report, BELOW, "loss")
    assert problems(report, "loss") == {"mutates_input": True}


def test_a_loss_whose_backward_is_not_repeatable_is_blamed():
    report = gc.check(with_loss("mse_buffer"))
    assert report.blamed_layers() == ["loss"]
    assert failing(report) == BELOW
    assert problems(report, "loss") == {"backward_not_repeatable": True}


def test_a_nondeterministic_loss_cannot_be_checked():
    with pytest.raises(NondeterministicError) as err:
        gc.check(with_loss("mse_noisy"))
    assert err.value.layer == "loss"


# --- every built-in probes clean ----------------------------------------------------------------


def _probed(config: dict):
    problem = load(config)
    trace, grads = analytic_pass(problem, problem_params(problem))
    return problem, purity.probe(problem, trace, grads, everything=True)


#: every case of the shared table (tests/layer_cases.py), with a batch of 3 and of 1, but
#: a batchnorm of one value per statistic, which the config refuses
PROBED = [
    (c.id, batch)
    for c in LAYER_CASES + MULTI_CASES
    for batch in (3, 1)
    if not (batch == 1 and c.type == "batchnorm" and len(c.in_shape) == 1)
]


@pytest.mark.parametrize(("case_id", "batch"), PROBED)
def test_every_built_in_layer_probes_clean(case_id, batch):
    config = network_config(case(case_id), batch)
    problem, found = _probed(config)
    assert found.problems == {name: [] for name in found.problems}
    assert found.corrupted == {}
    assert not any(n.defended or n.mixes_rows for n in problem.network)


@pytest.mark.parametrize("kind", sorted(LOSS_CASES))
def test_every_built_in_loss_probes_clean(kind):
    head = [{"type": "softmax"}] if kind == "cross_entropy" else []
    config = {
        "seed": 3,
        "plugins": [CS231N],
        "input": {"shape": [3, 6], "batched": True},
        "layers": [{"type": "dense", "out_features": 3}, *head],
        "loss": LOSS_CASES[kind],
    }
    problem, found = _probed(config)
    assert found.problems == {name: [] for name in found.problems}
    assert not problem.loss.defended


# --- a plugin that registers a built-in name -------------------------------------------------


def test_a_plugin_that_replaces_a_built_in_is_named_in_a_warning_with_both_origins():
    config = {**with_loss("mse"), "plugins": [str(PLUGINS / "shadow_mse.py")]}
    for _ in range(2):  # the second load replaces the first's class, still not the built-in
        report = gc.check(config)
        (warning,) = [w for w in report.warnings if "replaces" in w]
        assert "loss type 'mse'" in warning and "built-in loss 'mse'" in warning
        assert "gradcheck_cli.losses.mse.MSE" in warning
        assert str(PLUGINS / "shadow_mse.py") in warning and "MyMSE" in warning


def test_a_plugin_of_new_names_gets_no_such_warning():
    assert not [w for w in gc.check(stack("inplace_mul", before=None)).warnings if "replaces" in w]


# --- the command line and the JSON report ------------------------------------------------------


def _yaml(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.mark.parametrize(
    "config, code",
    [
        (stack("inplace_mul"), 1),
        (stack("buffer_attr"), 1),
        (stack("cs231n_relu", plugin="correct_layers.py", before=None), 0),
        (stack("dropout_fresh_mask"), 3),
        (stack("object_grad", plugin="dtype_layers.py", before=None), 2),
        (stack("complex_grad", plugin="dtype_layers.py", before=None), 2),
    ],
    ids=["mutates-input", "buffer", "dy-warning", "nondeterministic", "object-grad", "complex"],
)
def test_the_cli_exit_codes(tmp_path, config, code):
    result = CliRunner().invoke(cli, ["run", str(_yaml(tmp_path, config)), "--no-color"])
    assert result.exit_code == code, result.output
    if code in (2, 3):
        assert "layer 'mutant'" in result.output and "Traceback" not in result.output


def test_the_json_report_lists_each_layers_problems(tmp_path):
    path = _yaml(tmp_path, stack("inplace_mul"))
    result = CliRunner().invoke(cli, ["run", str(path), "--json", "-", "-q"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    layers = {v["name"]: v for v in data["layers"]}
    (problem,) = layers["mutant"]["problems"]
    assert problem["kind"] == "mutates_input" and problem["severity"] == "error"
    assert "saved activation of layer 'prev'" in problem["message"]
    assert layers["fc1"]["problems"] == [] and layers["mutant"]["passed"] is False
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["fc1.weight"]["corrupted_by"] == "mutant" and not checks["fc1.weight"]["passed"]
    assert checks["fc2.weight"]["corrupted_by"] is None


def test_the_table_says_which_layer_is_impure_and_warns_of_dy(tmp_path):
    result = CliRunner().invoke(
        cli, ["run", str(_yaml(tmp_path, stack("inplace_mul"))), "--no-color"]
    )
    assert "impure" in result.output and "blamed layer: mutant" in result.output
    path = _yaml(tmp_path, stack("cs231n_relu", plugin="correct_layers.py", before=None))
    result = CliRunner().invoke(cli, ["run", str(path), "--no-color"])
    assert (
        result.exit_code == 0
        and "warning: layer 'mutant': backward writes into dy" in result.output
    )


def test_an_impure_layer_fails_the_run_even_when_only_excludes_what_it_corrupts(tmp_path):
    path = _yaml(tmp_path, stack("inplace_mul"))
    result = CliRunner().invoke(cli, ["run", str(path), "--only", "fc2.*", "-q"])
    assert result.exit_code == 1
    assert "FAIL: 1 impure layer (mutant); blamed layer: mutant" in result.output


def test_a_nondeterministic_forward_is_exit_3_across_the_worker_s_pipe(tmp_path):
    """The installed command runs the check in a worker process and gets its errors
    through a pipe: NondeterministicError arrives whole (exit 3 naming the layer and
    where it is written), never as an unpicklable internal error (exit 4)."""
    path = _yaml(tmp_path, stack("dropout_fresh_mask"))
    result = subprocess.run(
        [*GRADCHECK, "run", str(path), "--no-color"], capture_output=True, text=True
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "layer 'mutant'" in result.stderr and "Traceback" not in result.stderr
    assert "internal error" not in result.stderr


def test_nondeterministic_error_survives_pickling():
    plain = NondeterministicError("act", "two calls differ")
    located = NondeterministicError("act", "two calls differ").locate("net.yaml", 7, "layers[1]")
    for error in (plain, located):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is NondeterministicError and str(back) == str(error)
        assert (back.layer, back.file, back.line) == (error.layer, error.file, error.line)


# --- a built-in whose method a plugin replaced ------------------------------------------------


@pytest.mark.parametrize("where", ["class", "instance"])
def test_a_built_in_running_a_plugins_method_is_probed(monkeypatch, where):
    """Hunt 18: a plugin replaced the built-in tanh's forward with one writing into its
    input, after a sigmoid that keeps its output; the probes skipped the built-in by its
    class's module and the check passed with fc1.weight 10% off. A layer whose methods
    are not all gradcheck's own is probed like a plugin's: it fails, blamed."""
    from gradcheck_cli.engine.own import own_code
    from gradcheck_cli.layers import activations

    def fused_tanh_forward(self, x, params):
        np.tanh(x, out=x)  # writes into the sigmoid's saved output
        return x, activations.OutputCache(x)

    config = {
        "seed": 2,
        "input": {"shape": [4, 6], "batched": True},
        "layers": [
            {"type": "dense", "name": "fc1", "out_features": 5},
            {"type": "sigmoid", "name": "sg"},
            {"type": "tanh", "name": "th"},
            {"type": "dense", "name": "fc2", "out_features": 3},
        ],
        "loss": {"type": "mse", "target": np.linspace(0, 1, 12).reshape(4, 3).tolist()},
    }
    assert gc.check(config).passed  # the built-in as it is
    if where == "class":
        monkeypatch.setattr(activations.Tanh, "forward", fused_tanh_forward)
        assert not own_code(activations.Tanh())
        report = gc.check(config)
    else:
        problem = load(config)
        node = next(n for n in problem.network if n.name == "th")
        node.layer.forward = fused_tanh_forward.__get__(node.layer)
        assert not own_code(node.layer)
        report = run_check(problem)
    assert not report.passed and report.blamed_layers() == ["th"]
    assert own_code(activations.Sigmoid())


def test_an_output_buffer_shared_between_layers_fails_the_first_blamed():
    """Hunt 18: two instances writing their outputs into one module-level buffer; the
    dense layer after the first keeps its input, which the second overwrites, so the real
    network's fc2.weight gradient is wrong while gradcheck's copies hid it (exit 0). A
    layer that reuses its output memory now has the real network run, and fails when
    that corrupts something (``overwrites_output``)."""
    plugin = str(PLUGINS / "hidden_state.py")
    target = np.linspace(0, 1, 12).reshape(4, 3).tolist()
    config = {
        "seed": 3,
        "plugins": [plugin],
        "input": {"shape": [4, 6], "batched": True},
        "layers": [
            {"type": "dense", "name": "fc1", "out_features": 5},
            {"type": "shared_buffer_tanh", "name": "rb1"},
            {"type": "dense", "name": "fc2", "out_features": 5},
            {"type": "shared_buffer_tanh", "name": "rb2"},
            {"type": "dense", "name": "out", "out_features": 3},
        ],
        "loss": {"type": "mse", "target": target},
    }
    report = gc.check(config)
    assert not report.passed and report.blamed_layers() == ["rb1"]
    assert [c.name for c in report.checks if not c.passed] == ["fc2.weight"]
    assert problems(report, "rb1") == {"overwrites_output": True}
    # one such layer alone: its buffer is overwritten only by its own next call, after
    # the layer behind it was done with it, as in training: passes
    config["layers"][3] = {"type": "tanh", "name": "t2"}
    assert gc.check(config).passed
