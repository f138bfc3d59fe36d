"""Renderers on hand-built Reports: tables, verdict line, JUnit XML, JSON."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from _report_factory import failing_report, passing_report, tensor_check
from rich.console import Console

from gradcheck_cli.render import Format, render_junit
from gradcheck_cli.render.elements import elements_text, worst_elements
from gradcheck_cli.render.table import (
    Verbosity,
    element_table,
    expectation_table,
    layer_table,
    render_report,
    summary_table,
    verdict_line,
)
from gradcheck_cli.report import Report


def text_of(renderable, width: int = 200) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def row_of(text: str, first_cell: str) -> str:
    """The table line whose first cell is ``first_cell``."""
    for line in text.splitlines():
        if line.strip().startswith(first_cell + " ") or line.strip() == first_cell:
            return line
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


# --- summary --------------------------------------------------------------------------


def test_summary_of_passing_report_lists_every_tensor_as_pass():
    text = text_of(summary_table(passing_report()))
    for name, shape, checked in (
        ("conv1.weight", "(2, 2)", "4"),
        ("conv1.bias", "(1)", "1"),
        ("input", "(5, 5)", "25"),
    ):
        row = row_of(text, name)
        assert shape in row and f" {checked} " in row and "PASS" in row
    assert "FAIL" not in text
    assert "diagnosis" not in text  # no empty diagnosis column


def test_summary_of_failing_report_shows_sampling_consequence_diagnosis_and_skips():
    text = text_of(summary_table(failing_report()))
    weight = row_of(text, "conv1.weight")
    assert "10 of 12 (sampled)" in weight
    assert "FAIL" in weight and "consequence" not in weight
    assert "looks like a transposed kernel" in weight
    assert "9.00e-02" in weight  # max abs error
    assert " 1 " in weight  # one kink
    assert "FAIL (consequence of conv1)" in row_of(text, "input")
    assert "PASS" in row_of(text, "fc.weight")
    assert "skipped" in row_of(text, "fc.bias")


# --- element tables ---------------------------------------------------------------------


def test_worst_elements_sorted_by_abs_error_with_unchecked_last():
    rows = worst_elements(failing_report().check("conv1.weight"), limit=None)
    assert [r.index for r in rows] == [
        (2, 1), (2, 0), (1, 3), (1, 2), (1, 1), (1, 0), (0, 3), (0, 2), (0, 1), (0, 0),
        (2, 2), (2, 3),
    ]  # fmt: skip
    errors = [r.abs_error for r in rows[:10]]
    assert errors == sorted(errors, reverse=True)
    assert all(not r.checked and np.isnan(r.numeric) for r in rows[10:])
    assert rows[7].note == "FAIL, kink"  # (0, 2)
    assert rows[9].note == ""  # (0, 0): exact
    assert rows[10].note == "not checked"


def test_worst_elements_of_a_vector_and_a_scalar_use_numpy_index_tuples():
    assert [r.index for r in worst_elements(tensor_check("b", [1.0, 2.0], [1.0, 2.1]))] == [
        (1,),
        (0,),
    ]
    assert worst_elements(tensor_check("s", 1.0, 1.5))[0].index == ()


def test_element_table_is_capped_at_ten_rows_with_a_more_row():
    text = text_of(element_table(failing_report().check("conv1.weight")))
    lines = text.splitlines()
    indices = [m.group(0) for line in lines if (m := re.match(r"\s*\(\d+, \d+\)", line))]
    assert [i.strip() for i in indices][:3] == ["(2, 1)", "(2, 0)", "(1, 3)"]
    assert len(indices) == 10
    assert "(2, 2)" not in text  # unchecked, beyond the cap
    more = row_of(text, "… 2 more")
    assert more.rstrip().endswith("2 not checked")
    assert "9 of 10 elements FAIL" in text
    row = row_of(text, "(0, 2)")
    assert "FAIL, kink" in row and "2.00e-02" in row


def test_element_table_shows_all_rows_when_not_capped_and_dash_for_unchecked():
    text = text_of(element_table(failing_report().check("conv1.weight"), limit=20))
    assert "more" not in text
    row = row_of(text, "(2, 3)")
    assert "—" in row and "not checked" in row


def test_elements_text_is_aligned_plain_text():
    text = elements_text(failing_report().check("conv1.weight"), limit=3)
    lines = text.splitlines()
    header = ["index", "analytic", "numeric", "abs", "err", "bound", "rel", "err", "note"]
    assert lines[0].split() == header
    assert lines[1].startswith("(2, 1)") and lines[1].endswith("FAIL")
    assert lines[-1] == "… 9 more (2 not checked)"


# --- layers, expectations, verdict ------------------------------------------------------


def test_layer_table_marks_the_wrong_backward():
    text = text_of(layer_table(failing_report()))
    assert "WRONG" in row_of(text, "conv1") and "conv2d" in row_of(text, "conv1")
    assert " ok " in row_of(text, "fc") + " "


def test_expectation_table_shows_the_tolerance_in_force():
    text = text_of(expectation_table(failing_report()))
    row = row_of(text, "conv1.weight.grad")
    assert "FAIL" in row and "±0.05, from 1 written decimal" in row
    assert "PASS" in row_of(text, "loss")


def test_a_failing_expectation_lists_its_disagreeing_elements():
    text = text_of(render_report(failing_report()))
    assert "conv1.weight.grad: 1 of 2 elements disagree" in text
    cells = [c.strip() for c in re.split(r"[│|]", row_of(text, "[1]"))]
    assert cells == ["[1]", "2", "2.5", "0.5", "±0.05"]


def test_verdict_line_pass():
    assert text_of(verdict_line(passing_report())).strip() == (
        "PASS: 3 tensors, 30 elements checked, 0 failed (0 kinks), 1 expectation met in 0.01 s"
    )


def test_verdict_line_fail_names_tensors_expectations_and_blamed_layer():
    assert text_of(verdict_line(failing_report())).strip() == (
        "FAIL: 2 of 3 tensors disagree (conv1.weight, input), 1 of 2 expectations disagree "
        "(conv1.weight.grad); blamed layer: conv1 in 0.50 s"
    )


def test_verdict_line_marks_an_interrupted_run():
    report = passing_report()
    report.interrupted = True
    line = text_of(verdict_line(report))
    assert line.startswith("INTERRUPTED (partial): ") and "PASS" not in line


# --- the whole report at each verbosity -------------------------------------------------


def test_quiet_is_the_verdict_line_only():
    text = text_of(render_report(failing_report(), Verbosity.QUIET))
    assert text.count("\n") == 1 and text.startswith("FAIL: ")


def test_normal_shows_failing_elements_layers_expectations_warnings_in_order():
    text = text_of(render_report(failing_report()))
    order = [
        "configs/bad.yaml (bad-net): loss 0.5",
        "Gradients",
        "conv1.weight (3, 4): 9 of 10 elements FAIL",
        "input (2, 2): 4 of 4 elements FAIL",
        "Layers (own backward)",
        "Expectations",
        "warning: float32: tolerances scaled by 100",
        "FAIL: 2 of 3 tensors",
    ]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions)
    assert "fc.weight (1, 2)" not in text  # passing: no element table


def test_verbose_shows_element_tables_of_passing_tensors():
    text = text_of(render_report(passing_report(), Verbosity.VERBOSE))
    assert "conv1.weight (2, 2): PASS" in text and "input (5, 5): PASS" in text
    assert "Layers (own backward)" not in text  # nothing failed
    assert "… 15 more" in text  # input has 25 elements


# --- JUnit ------------------------------------------------------------------------------


def test_junit_counts_and_failures():
    root = ET.fromstring(render_junit(failing_report()))
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "gradcheck: configs/bad.yaml"
    counts = [suite.get(k) for k in ("tests", "failures", "errors", "skipped")]
    assert counts == ["6", "3", "0", "1"]
    assert suite.get("time") == "0.500"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {
        "conv1.weight",
        "input",
        "fc.weight",
        "expect conv1.weight.grad",
        "expect loss",
        "fc.bias",
    }
    assert {c.get("classname") for c in cases.values()} == {"gradcheck.bad"}
    failure = cases["conv1.weight"].find("failure")
    assert failure.get("type") == "GradientMismatch"
    assert failure.get("message").startswith("9 of 10 elements disagree; max abs error 0.09")
    assert "looks like a transposed kernel" in failure.get("message")
    assert failure.text.splitlines()[1].startswith("(2, 1)")
    assert "consequence of layer conv1" in cases["input"].find("failure").get("message")
    assert cases["fc.weight"].find("failure") is None
    assert cases["expect conv1.weight.grad"].find("failure").get("type") == "ExpectationMismatch"
    assert "2.5" in cases["expect conv1.weight.grad"].find("failure").text
    assert cases["expect loss"].find("failure") is None
    assert cases["fc.bias"].find("skipped") is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["eps"] == "1e-06" and props["mode"] == "sample"
    assert props["interrupted"] == "false"


def test_junit_of_passing_report_has_no_failures():
    suite = ET.fromstring(render_junit(passing_report())).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "0", "0")
    assert suite.find(".//failure") is None


def test_junit_escapes_names_and_messages():
    check = tensor_check('we<ird>&"name', [1.0], [2.0], diagnosis="a < b & c")
    report = Report(config="a&b.yaml", loss=0.0, settings={}, checks=[check])
    suite = ET.fromstring(render_junit(report)).find("testsuite")
    case = suite.find("testcase")
    assert case.get("name") == 'we<ird>&"name'
    assert "a < b & c" in case.find("failure").get("message")
    assert suite.get("name") == "gradcheck: a&b.yaml"


# --- JSON -------------------------------------------------------------------------------


def test_json_format_is_the_contract_report_with_null_for_unchecked():
    data = json.loads(Format.JSON.render(failing_report()))
    assert data["schema"] == "gradcheck-report/1" and data["passed"] is False
    assert data["exit_code"] == 1
    weight = data["checks"][0]
    assert weight["name"] == "conv1.weight" and weight["shape"] == [3, 4]
    assert weight["numeric"][2][2] is None and weight["numeric"][0][1] == pytest.approx(1.01)


# --- --method taylor ----------------------------------------------------------------------


def taylor_report(order: float | None, passed: bool) -> Report:
    steps = [0.1 / 2**k for k in range(4)]
    remainders = [h * 1e-3 for h in steps]  # shrinks like h: a wrong gradient
    check = tensor_check(
        "fc.weight",
        [[0.5, -0.5]],
        [[np.nan, np.nan]],
        mode="taylor",
        taylor_order=order,
        taylor_passed=passed,
        extra={
            "taylor": {
                "steps": steps,
                "remainders": remainders,
                "floors": [1e-13] * 4,
                "fitted": [False, True, True, True],
            }
        },
    )
    return Report(config="t.yaml", loss=0.0, settings={}, checks=[check], total_s=0.02)


def test_taylor_failure_shows_order_and_remainders():
    report = taylor_report(1.02, passed=False)
    text = text_of(render_report(report))
    row = row_of(text, "fc.weight")
    assert "1 direction (taylor)" in row and "1.02" in row and "FAIL" in row
    assert "—" in row  # no element errors
    assert "fc.weight (1, 2): Taylor test FAIL" in text
    assert "order 1.02 (right: 2, wrong: 1)" in text
    assert "1.250e-05" in row_of(text, "1.250e-02")  # step 0.1/8 and its remainder
    failure = ET.fromstring(render_junit(report)).find(".//failure")
    assert failure.get("message") == "Taylor test: order 1.02 (right: 2, wrong: 1)"
    assert "1.250e-05" in failure.text


def test_taylor_pass_verdict_and_exact_order():
    report = taylor_report(None, passed=True)
    assert "exact" in row_of(text_of(summary_table(report)), "fc.weight")
    assert text_of(verdict_line(report)).strip() == (
        "PASS: 1 tensor (Taylor test), 0 failed in 0.02 s"
    )


def test_fast_pass_verdict_says_no_element_was_checked_one_by_one():
    from gradcheck_cli.report import Report, TensorCheck

    report = Report(config="net.yaml", loss=0.5, settings={})
    report.checks = [TensorCheck.unchecked("fc.weight", np.ones((2, 3)), "fast")]
    line = verdict_line(report).plain
    assert line.startswith("PASS: 1 tensor agrees along random directions")
    assert "--fast: no element checked one by one" in line


# --- inconclusive elements (exit 3, never a pass) ----------------------------------------


def inconclusive_report():
    from _report_factory import SETTINGS

    from gradcheck_cli.report import Report

    unsure = tensor_check("fc.weight", [1.0, 2.0], [1.0, 2.0])
    unsure.inconclusive_mask = np.array([False, True])
    unsure.error_bound = np.array([1e-9, 0.5])
    ok = tensor_check("input", [1.0], [1.0])
    return Report(config="x.yaml", loss=1.0, settings=SETTINGS, checks=[ok, unsure])


def test_an_inconclusive_tensor_is_neither_passed_nor_failed():
    from gradcheck_cli.render.junit import render_junit

    report = inconclusive_report()
    assert not report.passed and not report.failed and report.exit_code == 3
    line = text_of(verdict_line(report))
    assert line.startswith("INCONCLUSIVE: 1 element of 1 of 2 tensors could not be resolved")
    assert "PASS" not in line
    summary = text_of(summary_table(report))
    assert "INCONCLUSIVE" in row_of(summary, "fc.weight") and "inconclusive" in summary
    table = text_of(element_table(report.check("fc.weight")))
    assert "1 of 2 elements INCONCLUSIVE" in table and "5.00e-01" in table  # the bound
    xml = render_junit(report)
    assert 'errors="1"' in xml and 'failures="0"' in xml and 'type="Inconclusive"' in xml
    data = report.to_dict()
    weight = next(c for c in data["checks"] if c["name"] == "fc.weight")
    assert (data["passed"], data["exit_code"]) == (False, 3)
    assert weight["inconclusive"] == 1 and weight["error_bound"] == [1e-9, 0.5]


def test_a_failure_beside_an_inconclusive_tensor_is_exit_1():
    report = inconclusive_report()
    report.checks.append(tensor_check("fc.bias", [1.0], [2.0]))
    assert report.exit_code == 1 and text_of(verdict_line(report)).startswith("FAIL")
