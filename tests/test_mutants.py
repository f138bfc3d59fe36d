"""The mutation suite: deliberately broken layers must be caught, blamed and explained, and
correct layers at extreme scales must pass.

Each ``tests/mutants/<name>.py`` is a plugin with one bug people really make (marked
``# BUG:``); ``<name>.yaml`` puts it in a small network of correct built-in layers, in a
layer named ``mutant`` (or as the loss), and says in its header what must happen. Every
mutant runs in-process through ``gradcheck_cli.check`` at default settings and must exit
1, fail exactly the expected tensors, blame exactly the mutant's layer (every other layer
passing), and mark the failures below it as its consequences. Every control (a valid
subgradient at a kink, a correct layer at an extreme scale, in float32, at near-ties or
saturated) must exit 0 with no layer blamed. One mutant and one control also run through
the installed ``gradcheck`` command.

The classes of issue 10 are each proven on several layers, batch sizes and dtypes, so
that the rule is shown to hold for the class, not for one example.

Run ``python tests/test_mutants.py [--method taylor | --eps 1e-7 ...]`` for the table.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from conftest import registry_kept
from installed import GRADCHECK

import gradcheck_cli as gc

HERE = Path(__file__).parent / "mutants"

BELOW_FC1 = frozenset({"input", "fc1.weight", "fc1.bias"})
BELOW_CONV1 = frozenset({"input", "conv1.weight", "conv1.bias"})
EVERY_TENSOR = frozenset({"input", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"})


class Mutant(NamedTuple):
    """What a mutant must do: the layer blamed, the tensors that fail, words that some
    failing tensor's or the blamed layer's diagnosis holds (None: not checked), and its
    bug class."""

    blamed: str
    failing: frozenset[str]
    words: str | None
    kind: str


def _m(blamed: str, failing, words: str | None, kind: str) -> Mutant:
    return Mutant(blamed, frozenset(failing), words, kind)


#: Tensors of correct layers below a wrong dx fail as consequences, except where the bug
#: keeps a sum: conv1.bias reads only the sum of its delta, which a kernel flip, a
#: misplaced stride or a permuted pool routing leave unchanged.
MUTANTS: dict[str, Mutant] = {
    # structural bugs (issue 3): one wrong index, flip, factor or routing each
    "conv_noflip": _m("mutant", {"input", "conv1.weight"}, None, "structural"),
    "conv_dw_offbyone": _m("mutant", {"mutant.weight"}, "shifted by 1 along axis 2", "structural"),
    "conv_stride_dx": _m("mutant", {"input", "conv1.weight"}, None, "structural"),
    "conv_padding_crop": _m(
        "mutant", {"input"}, "shifted by 1 along axis 1 and 1 along axis 2", "structural"
    ),
    "conv_bias_mean": _m("mutant", {"mutant.bias"}, "analytic = 1/32 x numeric", "structural"),
    "conv_dw_flipped": _m("mutant", {"mutant.weight"}, "kernel flip", "structural"),
    "dense_transposed": _m("mutant", {"mutant.weight"}, "transposed", "structural"),
    "dense_batch_mean": _m("mutant", {"mutant.weight"}, "mean vs sum over the batch", "structural"),
    "maxpool_all": _m("mutant", BELOW_CONV1, None, "structural"),
    "maxpool_wrong": _m("mutant", {"input", "conv1.weight"}, None, "structural"),
    "avgpool_nodiv": _m("mutant", {"input"}, "analytic = 4 x numeric", "structural"),
    "softmax_nocross": _m("mutant", BELOW_FC1, None, "structural"),
    "sigmoid_wrongval": _m("mutant", BELOW_FC1, None, "structural"),
    "tanh_wrongval": _m("mutant", BELOW_FC1, None, "structural"),
    "leaky_wrongside": _m("mutant", BELOW_FC1, None, "structural"),
    "dropout_noscale": _m("mutant", BELOW_FC1, "factor 2 too few", "structural"),
    "mse_nohalf": _m("loss", EVERY_TENSOR, "factor 2 too few", "structural"),
    "mse_sign": _m("loss", EVERY_TENSOR, "flipped sign", "structural"),
    "elu_negative": _m("mutant", {"input"}, "only where the input is negative", "structural"),
    # issue 10: gradients off by a factor 1 + 1e-5
    "dense_dw_factor": _m("mutant", {"mutant.weight"}, "off by a factor 1.00001", "factor"),
    "conv_dx_factor": _m("mutant", BELOW_CONV1, "off by a factor 1.00001", "factor"),
    "conv_dw_factor": _m("mutant", {"mutant.weight"}, "off by a factor 1.00001", "factor"),
    "tanh_factor": _m("mutant", BELOW_FC1, "off by a factor 1.00001", "factor"),
    # issue 10: an extra 1e-7 on every element
    "dense_dw_offset": _m("mutant", {"mutant.weight"}, "a small constant added", "offset"),
    "conv_db_offset": _m("mutant", {"mutant.bias"}, "a small constant added", "offset"),
    "sigmoid_dx_offset": _m("mutant", BELOW_FC1, "a small constant added", "offset"),
    "conv_dx_offset": _m("mutant", BELOW_CONV1, "a small constant added", "offset"),
    # issue 10: clipped derivatives of saturated units
    "sigmoid_clip_saturated": _m("mutant", BELOW_FC1, "only where saturated", "saturated"),
    "sigmoid_floor": _m("mutant", {"input"}, "only where saturated", "saturated"),
    "tanh_clip_saturated": _m("mutant", BELOW_CONV1, "only where saturated", "saturated"),
    # issue 10: a backward wrong only in float32 (its float64 run is a control below)
    "sigmoid_half_cache": _m("mutant", {"fc1.weight", "fc1.bias"}, None, "float32"),
    "dense_half_dw": _m("mutant", {"mutant.weight"}, None, "float32"),
    "tanh_half_derivative": _m("mutant", BELOW_CONV1, None, "float32"),
    # issue 10: one element of a smooth layer's gradient wrong by a relative 1e-6
    "dense_one_element": _m("mutant", {"mutant.weight"}, None, "one element"),
    "conv_one_element": _m("mutant", {"mutant.weight"}, None, "one element"),
    "tanh_one_element": _m("mutant", {"input"}, None, "one element"),
}

#: Correct layers that must pass (exit 0, no layer blamed), by what makes them hard.
CONTROLS: dict[str, str] = {
    "relu_ge": "kink: ReLU' taken as 1 at exact zeros",
    "maxpool_last_tie": "kink: ties given to the last maximum",
    "extreme_near_ties": "max pool over values 1e-9 apart",
    "extreme_near_ties_conv": "near-ties through conv and ReLU, batch of 2",
    "extreme_big_input_dense": "inputs of 1e4",
    "extreme_big_input_conv": "an image of 1e4 through conv, ReLU, max pool",
    "extreme_big_input_float32": "inputs of 1e4, float32",
    "extreme_l2_tiny": "L2 normalisation of values near 1e-6",
    "extreme_l2_tiny_float32": "L2 normalisation near 1e-6, float32",
    "extreme_loss_1e6": "a loss of 1e6 of cancelling terms",
    "extreme_loss_1e6_float32": "an MSE loss of 1e6, float32",
    "extreme_exp": "exp(x) for x up to 38",
    "extreme_exp_float32": "exp(x) for x up to 38, float32",
    "extreme_steep_tanh": "tanh(1e4 x) near 0",
    "extreme_steep_tanh_float32": "tanh(1e4 x) near 0, float32",
    "extreme_saturated_sigmoid": "sigmoid units saturated up to |x| = 40",
    "extreme_saturated_float32": "saturated sigmoid and tanh, float32",
    "float32_stack": "conv, ReLU, max pool, dense in float32",
    "float32_stack_batched": "strided conv, leaky ReLU, pool, dense, float32, batch of 4",
    "float32_stack_avgpool": "conv, tanh, average pool, conv, dense, float32",
    "float32_sigmoid_tanh": "the half-precision mutants' float32 counterpart",
    "sigmoid_half_cache_float64": "a mutant that is right in float64",
}

#: The bug classes --method taylor must see with a first-order remainder (order 1): it
#: looks at one random direction per tensor, whose remainder a relative error of 1e-5
#: does not lift out of the h^2 term.
TAYLOR_KINDS = ("structural", "saturated")


class Run(NamedTuple):
    exit_code: int
    report: dict[str, Any] | None
    error: str


@pytest.fixture(scope="module", autouse=True)
def restore_registry():
    """The mutants register their layers in-process: take them away afterwards."""
    with registry_kept():
        yield


def run(name: str, **options: Any) -> Run:
    """One config through ``gradcheck_cli.check``: (exit code, JSON report, error)."""
    try:
        report = gc.check(HERE / f"{name}.yaml", **options)
    except gc.GradcheckError as e:
        return Run(int(getattr(e, "exit_code", 2)), None, f"{type(e).__name__}: {e}")
    return Run(int(report.exit_code), report.to_dict(), "")


def run_all(names, **options: Any) -> dict[str, Run]:
    return {name: run(name, **options) for name in names}


@pytest.fixture(scope="module")
def runs():
    return run_all([*MUTANTS, *CONTROLS])


@pytest.fixture(scope="module")
def taylor_runs():
    names = [n for n, m in MUTANTS.items() if m.kind in TAYLOR_KINDS]
    return run_all([*names, "relu_ge", "maxpool_last_tie"], method="taylor")


def failing(report: dict[str, Any]) -> set[str]:
    return {c["name"] for c in report["checks"] if not c["passed"]}


def blamed(report: dict[str, Any]) -> list[str]:
    return [v["name"] for v in report["layers"] if not v["passed"]]


def diagnoses(report: dict[str, Any]) -> list[str]:
    """Every diagnosis of a failing tensor and of a blamed layer."""
    tensors = [c["diagnosis"] or "" for c in report["checks"] if not c["passed"]]
    return tensors + [v["diagnosis"] or "" for v in report["layers"] if not v["passed"]]


def verdict(name: str, r: Run) -> dict[str, bool]:
    """Caught (exit 1), right tensor(s), right layer: the three parts of the score."""
    m = MUTANTS[name]
    if r.report is None:
        return {"caught": False, "tensor": False, "layer": False}
    consequences_ok = all(
        c["consequence_of"] == m.blamed
        for c in r.report["checks"]
        if not c["passed"] and c["layer"] != m.blamed
    )
    return {
        "caught": r.exit_code == 1,
        "tensor": failing(r.report) == m.failing,
        "layer": blamed(r.report) == [m.blamed] and consequences_ok,
    }


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught_on_the_right_tensor_and_layer(name, runs):
    r = runs[name]
    assert r.report is not None, f"no report (exit {r.exit_code}): {r.error}"
    m = MUTANTS[name]
    assert r.exit_code == 1 and r.report["exit_code"] == 1
    assert failing(r.report) == m.failing
    assert blamed(r.report) == [m.blamed]
    assert len(r.report["layers"]) > 1  # the other layers were checked, and passed
    for c in r.report["checks"]:
        if not c["passed"] and c["layer"] != m.blamed:
            assert c["consequence_of"] == m.blamed, c["name"]
    if m.words is not None:
        assert any(m.words in d for d in diagnoses(r.report)), diagnoses(r.report)


@pytest.mark.parametrize("name", list(CONTROLS))
def test_a_correct_layer_passes(name, runs):
    r = runs[name]
    assert r.exit_code == 0, r.error or failing(r.report or {"checks": []})
    assert r.report is not None and r.report["passed"]
    assert blamed(r.report) == []


@pytest.mark.parametrize("name", ["relu_ge", "maxpool_last_tie"])
def test_another_valid_subgradient_at_a_kink_is_counted_as_a_kink(name, runs):
    assert sum(c["kinks"] for c in runs[name].report["checks"]) > 0


@pytest.mark.parametrize("name", [n for n, m in MUTANTS.items() if m.kind in TAYLOR_KINDS])
def test_taylor_method_catches_the_mutant_with_order_one(name, taylor_runs):
    r = taylor_runs[name]
    assert r.exit_code == 1 and r.report is not None, r.error
    m = MUTANTS[name]
    orders = {c["name"]: c["taylor_order"] for c in r.report["checks"] if not c["passed"]}
    assert set(orders) == m.failing
    assert all(o is not None and 0.8 < o < 1.3 for o in orders.values()), orders
    for c in r.report["checks"]:
        if c["passed"]:
            assert c["taylor_order"] is None or c["taylor_order"] >= 1.8, c["name"]
    assert blamed(r.report) == [m.blamed]


@pytest.mark.parametrize("name", ["relu_ge", "maxpool_last_tie"])
def test_controls_pass_under_the_taylor_method(name, taylor_runs):
    assert taylor_runs[name].exit_code == 0, taylor_runs[name].error


@pytest.mark.parametrize(("name", "code"), [("conv_one_element", 1), ("extreme_exp", 0)])
def test_the_installed_command_gives_the_same_verdict(name, code, runs):
    """One mutant and one control through a real process: exit code and JSON agree with
    the in-process run."""
    proc = subprocess.run(
        [*GRADCHECK, "run", str(HERE / f"{name}.yaml"), "--json", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == code, proc.stderr
    report = json.loads(proc.stdout)
    assert failing(report) == failing(runs[name].report)
    assert blamed(report) == blamed(runs[name].report)


def test_every_mutant_has_one_marked_bug_and_every_class_several_variants():
    assert len(MUTANTS) >= 30
    for name in MUTANTS:
        source = (HERE / f"{name}.py").read_text()
        assert source.count("# BUG") == 1, name
        assert f"plugins: [{name}.py]" in (HERE / f"{name}.yaml").read_text(), name
    for name in CONTROLS:  # a control's own plugins are correct (a mutant's may run right)
        text = (HERE / f"{name}.yaml").read_text()
        own = [p for p in HERE.glob("*.py") if f"{p.name}]" in text and p.stem not in MUTANTS]
        assert all("# BUG" not in p.read_text() for p in own), name
    kinds = [m.kind for m in MUTANTS.values()]
    for kind in ("factor", "offset", "saturated", "float32", "one element"):
        assert kinds.count(kind) >= 3, kind


def test_every_config_in_the_folder_is_a_mutant_or_a_control():
    assert {p.stem for p in HERE.glob("*.yaml")} == {*MUTANTS, *CONTROLS}


def score(**options: Any) -> str:
    """The detection score, as the README quotes it (options: ``check`` options)."""
    results = run_all([*MUTANTS, *CONTROLS], **options)
    lines = [f"{'mutant':<24} {'class':<12} caught  tensor  layer"]
    rows = {name: verdict(name, results[name]) for name in MUTANTS}
    for name, v in rows.items():
        marks = ["yes" if v[k] else "NO" for k in ("caught", "tensor", "layer")]
        kind = MUTANTS[name].kind
        lines.append(f"{name:<24} {kind:<12} {marks[0]:<7} {marks[1]:<7} {marks[2]}")
    lines.append(f"\n{'control':<28} exit  what")
    for name, what in CONTROLS.items():
        r = results[name]
        lines.append(f"{name:<28} {r.exit_code:<5} {what}")
    total = len(rows)
    counts = {k: sum(v[k] for v in rows.values()) for k in ("caught", "tensor", "layer")}
    passing = sum(results[n].exit_code == 0 and not blamed(results[n].report) for n in CONTROLS)
    lines.append(
        f"\ncaught {counts['caught']}/{total}, right tensor {counts['tensor']}/{total}, "
        f"right layer {counts['layer']}/{total}; correct layers passing "
        f"{passing}/{len(CONTROLS)} ({len(CONTROLS) - passing} false alarms)"
    )
    return "\n".join(lines)


def _options(argv: list[str]) -> dict[str, Any]:
    """``--method taylor --eps 1e-7`` -> {"method": "taylor", "eps": "1e-7"}."""
    keys = [a.lstrip("-").replace("-", "_") for a in argv[::2]]
    return dict(zip(keys, argv[1::2], strict=True))


if __name__ == "__main__":
    print(score(**_options(sys.argv[1:])))
