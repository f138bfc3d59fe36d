"""``Report.summary()``: the verdict first and what went wrong, in a few lines however
large the network (issue 13, item 5)."""

from __future__ import annotations

import numpy as np
from _report_factory import failing_report, passing_report, tensor_check
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck_cli.render.summary import MAX_LINES
from gradcheck_cli.report import LayerVerdict, RunError


def test_a_passing_report_is_its_verdict_and_config():
    lines = passing_report().summary().splitlines()
    assert lines[0].startswith("PASS: 3 tensors, 30 elements checked") and "(exit 0)" in lines[0]
    assert lines[-1] == "config: configs/ok.yaml (ok-net)"
    assert len(lines) == 2


def test_a_failing_report_names_failing_tensors_blame_and_expectations():
    report = failing_report()
    text = report.summary()
    lines = text.splitlines()
    assert lines[0].startswith("FAIL: 2 of 3 tensors disagree") and lines[0].endswith("(exit 1)")
    assert "  - blamed layer conv1 (conv2d)" in lines
    weight = next(x for x in lines if "conv1.weight (3, 4)" in x)
    assert "9 of 10 elements fail" in weight and "looks like a transposed kernel" in weight
    assert any("input (2, 2)" in x and "consequence of conv1" in x for x in lines)
    # own failures before consequences
    assert lines.index(weight) < next(i for i, x in enumerate(lines) if "input (2, 2)" in x)
    assert "  - expectation conv1.weight.grad: off by up to 5.00e-01" in lines


def test_an_error_report_says_the_error_with_file_line_and_key():
    report = failing_report()
    report.checks, report.expectations, report.layers = [], [], []
    report.error = RunError(
        "config",
        "net.yaml:7: layers[1].stride: must be an integer >= 1, got 0\nsecond issue",
        file="net.yaml",
        line=7,
        key="layers[1].stride",
    )
    lines = report.summary().splitlines()
    assert lines[0].startswith("ERROR") and lines[0].endswith("(exit 2)")
    assert lines[1].startswith("  - error (config): net.yaml:7: layers[1].stride: net.yaml:7:")
    assert "second issue" not in report.summary()


@settings(max_examples=15, deadline=None)
@given(tensors=st.integers(0, 300), layers=st.integers(0, 50), size=st.integers(1, 40))
def test_a_summary_stays_short_however_large_the_network(tensors, layers, size):
    report = failing_report()
    a = np.ones(size)
    report.checks = [tensor_check(f"l{k}.w", a, a * 2) for k in range(tensors)]
    report.layers = [
        LayerVerdict(f"l{k}", "dense", False, 1.0, 1.0, 0, diagnosis="dw: factor 2 " * 40)
        for k in range(layers)
    ]
    lines = report.summary().splitlines()
    assert len(lines) <= MAX_LINES
    assert all(len(line) <= 200 for line in lines)
    shown = len(lines) - 2
    items = tensors + layers + 1  # and the failing expectation
    if items > shown:
        assert lines[-2].startswith("  - … and ")
        assert int(lines[-2].split()[3]) == items - (MAX_LINES - 3)
    assert lines[0].startswith(("FAIL", "ERROR", "PASS"))
