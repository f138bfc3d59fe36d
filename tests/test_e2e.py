"""Every shipped config through the real CLI in a subprocess, and the JSON contract."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from installed import GRADCHECK

import gradcheck_cli as gc

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(
    p
    for p in (ROOT / "configs").rglob("*.yaml")
    if "bench" not in p.parts  # the benchmark network is run by benchmarks/, not here
)

CONTRACT_KEYS = {
    "schema",
    "config",
    "passed",
    "exit_code",
    "loss",
    "settings",
    "checks",
    "expectations",
    "timing",
}
CHECK_KEYS = {
    "name",
    "layer",
    "param",
    "shape",
    "checked",
    "failed",
    "kinks",
    "passed",
    "max_abs_error",
    "max_rel_error",
    "analytic",
    "numeric",
}
SETTINGS_KEYS = {"eps", "atol", "rtol", "method", "mode", "dtype", "seed"}


def gradcheck(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*GRADCHECK, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def run_json(config: Path, *args: str) -> tuple[int, dict]:
    proc = gradcheck("run", config, "--json", "-", *args)
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_the_worked_examples_are_all_shipped():
    names = {p.name for p in SHIPPED}
    for required in (
        "example_a.yaml",
        "example_b_network.yaml",
        "example_b_alone.yaml",
        "example_c_pool_dense.yaml",
        "example_d_stack.yaml",
        "example_d_batched.yaml",
        "swish.yaml",
    ):
        assert required in names


@pytest.mark.parametrize("config", SHIPPED, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_shipped_config_passes(config, clean_registry):
    """In this process, through the API (the command line is the same engine; the
    installed command is tried on a few of them below)."""
    report = gc.check(config)
    assert report.passed and report.exit_code == 0, report.summary()
    assert report.checks, "a shipped config must check something"


#: A stack with expectations, a graph, and plugin function pairs: the installed command.
THROUGH_THE_CLI = [
    "example_a.yaml",
    "residual_block.yaml",
    "examples/cs231n_functions/cs231n_net.yaml",
]


@pytest.mark.parametrize("name", THROUGH_THE_CLI)
def test_shipped_configs_pass_through_the_real_cli(name):
    code, report = run_json(ROOT / "configs" / name)
    assert code == 0, json.dumps(report, indent=1)[:3000]
    assert report["passed"] is True and report["exit_code"] == 0
    assert report["checks"], "a shipped config must check something"


def test_json_report_has_the_contract_keys():
    _, report = run_json(ROOT / "configs/example_a.yaml")
    assert set(report) >= CONTRACT_KEYS
    assert report["schema"] == "gradcheck-report/1"
    assert set(report["settings"]) >= SETTINGS_KEYS
    assert report["settings"]["method"] == "central" and report["settings"]["mode"] == "full"
    for check in report["checks"]:
        assert set(check) >= CHECK_KEYS
    assert {"total_s", "forward_passes"} <= set(report["timing"])
    assert report["timing"]["forward_passes"] > 0
    for e in report["expectations"]:
        assert {"name", "passed", "max_abs_error", "expected", "actual"} <= set(e)


def test_example_a_kernel_gradient_equals_the_published_figures():
    _, report = run_json(ROOT / "configs/example_a.yaml")
    conv = next(c for c in report["checks"] if c["name"] == "conv1.weight")
    assert conv["shape"] == [2, 2]  # reported in the shape the user wrote
    published = np.array([[0.044606, 0.094061], [0.011262, 0.068288]])
    np.testing.assert_allclose(np.array(conv["analytic"]), published, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.array(conv["numeric"]), published, rtol=0, atol=1e-6)


def test_example_b_alone_reproduces_d11_to_d22_exactly():
    _, report = run_json(ROOT / "configs/example_b_alone.yaml")
    grad = next(c for c in report["checks"] if c["name"] == "input")["analytic"]
    np.testing.assert_allclose(
        grad, [0.0364182, 0.068628, 0.04675125, -0.06818625], rtol=0, atol=1e-9
    )


def test_example_b_network_routes_the_deltas_to_the_published_positions():
    _, report = run_json(ROOT / "configs/example_b_network.yaml")
    delta = next(e for e in report["expectations"] if e["name"] == "conv1.delta")
    actual = np.array(delta["actual"])
    assert actual.shape == (4, 4)
    nonzero = sorted(zip(*np.nonzero(actual), strict=True))
    assert nonzero == [(0, 2), (1, 1), (2, 1), (3, 3)]


def test_sampled_elements_are_null_in_the_json():
    _, report = run_json(ROOT / "configs/example_d_stack.yaml", "--sample", "3")
    fc = next(c for c in report["checks"] if c["name"] == "fc.weight")
    flat = np.array(fc["numeric"], dtype=object).ravel().tolist()
    assert fc["checked"] == 3 and sum(v is not None for v in flat) == 3
    assert report["settings"]["mode"] == "sample"


def test_seed_option_seeds_the_values_the_config_leaves_out():
    _, one = run_json(ROOT / "configs/example_d_stack.yaml", "--seed", "1")
    _, two = run_json(ROOT / "configs/example_d_stack.yaml", "--seed", "2")
    _, again = run_json(ROOT / "configs/example_d_stack.yaml", "--seed", "1")
    assert one["loss"] != two["loss"]
    assert one["loss"] == again["loss"]
    assert one["settings"]["seed"] == 1


def test_a_wrong_expectation_exits_1_and_names_it(tmp_path):
    text = (ROOT / "configs/example_a.yaml").read_text()
    bad = tmp_path / "a.yaml"
    bad.write_text(text.replace("conv1.bias.grad: [0.0836]", "conv1.bias.grad: [0.0936]"))
    code, report = run_json(bad)
    assert code == 1 and report["passed"] is False
    failed = [e["name"] for e in report["expectations"] if not e["passed"]]
    assert failed == ["conv1.bias.grad"]
    assert all(c["passed"] for c in report["checks"])


def test_human_output_names_every_tensor_and_ends_with_the_verdict():
    proc = gradcheck("run", "configs/example_b_network.yaml", "--no-color")
    assert proc.returncode == 0
    for name in ("input", "conv1.weight", "conv1.bias", "fc.weight", "fc.bias"):
        assert name in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("PASS")
    assert "\x1b[" not in proc.stdout
