"""The mutation suite: deliberately broken layers must be caught, blamed and explained.

Each ``tests/mutants/<name>.py`` is a plugin with one bug people really make (marked
``# BUG:``); ``<name>.yaml`` puts it in a small network of correct built-in layers, in a
layer named ``mutant`` (or as the loss). Every config runs through the real CLI at
default settings and must exit 1, fail exactly the expected tensors, blame exactly the
mutant's layer (every other layer passing), and mark the failures below it as its
consequences. Two controls pick another valid subgradient at a kink and must pass.

Run ``python tests/test_mutants.py [run options, e.g. --method taylor]`` for the
detection score.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from installed import GRADCHECK

HERE = Path(__file__).parent / "mutants"

BELOW_FC1 = {"input", "fc1.weight", "fc1.bias"}
EVERY_TENSOR = {"input", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}

#: mutant: (blamed layer, tensors that must fail, words the diagnosis must hold or None).
#: Tensors of correct layers below a wrong dx fail as consequences, except where the bug
#: keeps a sum: conv1.bias reads only the sum of its delta, which a kernel flip, a
#: misplaced stride or a permuted pool routing leave unchanged.
MUTANTS: dict[str, tuple[str, set[str], str | None]] = {
    "conv_noflip": ("mutant", {"input", "conv1.weight"}, None),
    "conv_dw_offbyone": ("mutant", {"mutant.weight"}, "shifted by 1 along axis 2"),
    "conv_stride_dx": ("mutant", {"input", "conv1.weight"}, None),
    "conv_padding_crop": ("mutant", {"input"}, "shifted by 1 along axis 1 and 1 along axis 2"),
    "conv_bias_mean": ("mutant", {"mutant.bias"}, "analytic = 1/32 x numeric"),
    "conv_dw_flipped": ("mutant", {"mutant.weight"}, "kernel flip"),
    "dense_transposed": ("mutant", {"mutant.weight"}, "transposed"),
    "dense_batch_mean": ("mutant", {"mutant.weight"}, "mean vs sum over the batch"),
    "maxpool_all": ("mutant", {"input", "conv1.weight", "conv1.bias"}, None),
    "maxpool_wrong": ("mutant", {"input", "conv1.weight"}, None),
    "avgpool_nodiv": ("mutant", {"input"}, "analytic = 4 x numeric"),
    "softmax_nocross": ("mutant", BELOW_FC1, None),
    "sigmoid_wrongval": ("mutant", BELOW_FC1, None),
    "tanh_wrongval": ("mutant", BELOW_FC1, None),
    "leaky_wrongside": ("mutant", BELOW_FC1, None),
    "dropout_noscale": ("mutant", BELOW_FC1, "factor 2 too few"),
    "mse_nohalf": ("loss", EVERY_TENSOR, "factor 2 too few"),
    "mse_sign": ("loss", EVERY_TENSOR, "flipped sign"),
}
#: Valid subgradients at kinks, on inputs full of zeros and ties: must pass.
CONTROLS = ("relu_ge", "maxpool_last_tie")


def run_cli(name: str, *options: str) -> tuple[int, dict[str, Any] | None, str]:
    """``python -m gradcheck_cli run <name>.yaml --json - [options]``: (exit, JSON, stderr)."""
    config = str(HERE / f"{name}.yaml")
    proc = subprocess.run(
        [*GRADCHECK, "run", config, "--json", "-", *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = None
    return proc.returncode, report, proc.stderr


def run_all(*options: str) -> dict[str, tuple[int, dict[str, Any] | None, str]]:
    """Every mutant and control through the CLI, two at a time."""
    names = [*MUTANTS, *CONTROLS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda n: run_cli(n, *options), names)
        return dict(zip(names, results, strict=True))


@pytest.fixture(scope="module")
def runs():
    return run_all()


@pytest.fixture(scope="module")
def taylor_runs():
    return run_all("--method", "taylor")


def verdict(name: str, rc: int, report: dict[str, Any] | None) -> dict[str, bool]:
    """Caught (exit 1), right tensor(s), right layer: the three parts of the score."""
    blamed, expected, _ = MUTANTS[name]
    if report is None:
        return {"caught": False, "tensor": False, "layer": False}
    failing = {c["name"] for c in report["checks"] if not c["passed"]}
    wrong_layers = [v["name"] for v in report["layers"] if not v["passed"]]
    consequences_ok = all(
        c["consequence_of"] == blamed
        for c in report["checks"]
        if not c["passed"] and c["layer"] != blamed
    )
    return {
        "caught": rc == 1 and not report["passed"],
        "tensor": failing == expected,
        "layer": wrong_layers == [blamed] and consequences_ok,
    }


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught_on_the_right_tensor_and_layer(name, runs):
    rc, report, stderr = runs[name]
    assert report is not None, f"no JSON report (exit {rc}): {stderr}"
    blamed, expected, words = MUTANTS[name]
    failing = {c["name"] for c in report["checks"] if not c["passed"]}
    assert rc == 1 and report["exit_code"] == 1, stderr
    assert failing == expected
    assert [v["name"] for v in report["layers"] if not v["passed"]] == [blamed]
    assert len(report["layers"]) > 1  # the other layers were checked, and passed
    for c in report["checks"]:
        if not c["passed"] and c["layer"] != blamed:
            assert c["consequence_of"] == blamed, c["name"]
    if words is not None:
        diagnoses = [c["diagnosis"] or "" for c in report["checks"] if not c["passed"]]
        assert any(words in d for d in diagnoses), diagnoses


@pytest.mark.parametrize("name", list(MUTANTS))
def test_taylor_method_catches_the_mutant_with_order_one(name, taylor_runs):
    rc, report, stderr = taylor_runs[name]
    assert rc == 1 and report is not None, stderr
    blamed, expected, _ = MUTANTS[name]
    failing = {c["name"]: c["taylor_order"] for c in report["checks"] if not c["passed"]}
    assert set(failing) == expected
    assert all(o is not None and 0.8 < o < 1.3 for o in failing.values()), failing
    for c in report["checks"]:
        if c["passed"]:
            assert c["taylor_order"] is None or c["taylor_order"] >= 1.8, c["name"]
    assert [v["name"] for v in report["layers"] if not v["passed"]] == [blamed]


@pytest.mark.parametrize("name", CONTROLS)
def test_controls_pass_under_the_taylor_method(name, taylor_runs):
    rc, report, stderr = taylor_runs[name]
    assert rc == 0, stderr


@pytest.mark.parametrize("name", CONTROLS)
def test_another_valid_subgradient_at_a_kink_passes(name, runs):
    rc, report, stderr = runs[name]
    assert rc == 0, stderr
    assert report is not None and report["passed"]
    assert all(v["passed"] for v in report["layers"])
    assert sum(c["kinks"] for c in report["checks"]) > 0  # the kinks were really there


def test_suite_has_at_least_fifteen_mutants_each_with_one_marked_bug():
    assert len(MUTANTS) >= 15
    for name in MUTANTS:
        source = (HERE / f"{name}.py").read_text()
        assert source.count("# BUG") == 1, name
        assert f"plugins: [{name}.py]" in (HERE / f"{name}.yaml").read_text(), name
    for name in CONTROLS:
        assert "# BUG" not in (HERE / f"{name}.py").read_text()


def score(*options: str) -> str:
    """The detection score, as the README quotes it (options: extra ``run`` options)."""
    results = run_all(*options)
    rows = {name: verdict(name, *results[name][:2]) for name in MUTANTS}
    lines = [f"{'mutant':<20} caught  tensor  layer"]
    for name, v in rows.items():
        marks = ["yes" if v[k] else "NO" for k in ("caught", "tensor", "layer")]
        lines.append(f"{name:<20} {marks[0]:<7} {marks[1]:<7} {marks[2]}")
    total = len(rows)
    counts = {k: sum(v[k] for v in rows.values()) for k in ("caught", "tensor", "layer")}
    controls = sum(results[n][0] == 0 for n in CONTROLS)
    lines.append(
        f"caught {counts['caught']}/{total}, right tensor {counts['tensor']}/{total}, "
        f"right layer {counts['layer']}/{total}; controls passing {controls}/{len(CONTROLS)}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(score(*sys.argv[1:]))
