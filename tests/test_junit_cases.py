"""Each tensor's JUnit case says what the tensor's verdict says: nothing under a pass, a
``<failure>`` for elements that disagree, a failed Taylor test or a gradient an impure
layer corrupts, an ``<error>`` for what could not be checked (inconclusive elements, a
tensor the time budget never reached), ``<skipped>`` for a check stopped part way.

Found by a hunt: a tensor failing only because a layer wrote into an array it was
handed (``corrupted_by``, no element disagreeing) was written as an ``<error>`` saying
"0 of N elements could not be resolved".
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest
from _report_factory import passing_report, tensor_check

from gradcheck_cli.how_checked import HowChecked
from gradcheck_cli.render.junit import render_junit

A = np.array([[0.5, -0.25], [0.125, 1.0]])


def states() -> dict[str, tuple[object, str | None]]:
    """name -> (TensorCheck, the one child its case must hold; None: a pass)."""
    unresolved = tensor_check("fc.weight", A, A)
    unresolved.inconclusive_mask = np.array([[True, False], [False, False]])
    stopped = tensor_check("fc.weight", A, np.where([[True, False], [True, True]], A, np.nan))
    stopped.mode = "interrupted"
    never = tensor_check("fc.weight", A, np.full(A.shape, np.nan), mode=HowChecked.BUDGET)
    taylor = tensor_check("fc.weight", A, np.full(A.shape, np.nan), mode=HowChecked.TAYLOR)
    return {
        "pass": (tensor_check("fc.weight", A, A + 1e-12), None),
        "elements disagree": (tensor_check("fc.weight", A, A + 0.1), "failure"),
        "corrupted, every element agreeing": (
            replace(tensor_check("fc.weight", A, A), corrupted_by="sc"),
            "failure",
        ),
        "corrupted and inconclusive": (replace(unresolved, corrupted_by="sc"), "failure"),
        "inconclusive": (unresolved, "error"),
        "budget never reached it": (never, "error"),
        "interrupted": (stopped, "skipped"),
        "Taylor test failed": (replace(taylor, taylor_passed=False), "failure"),
        "Taylor test passed": (replace(taylor, taylor_passed=True), None),
    }


@pytest.mark.parametrize("state", sorted(states()))
def test_each_tensor_state_gets_the_junit_element_its_verdict_says(state):
    check, want = states()[state]
    report = passing_report()
    report.checks = [check]
    root = ET.fromstring(render_junit(report))
    (case,) = [c for c in root.iter("testcase") if c.get("name") == "fc.weight"]
    children = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
    assert children == ([] if want is None else [want]), state
    assert (want is None) == check.passed, state  # green in JUnit only where it passed
    if want == "error":
        assert "0 of" not in case.find("error").get("message")


@pytest.mark.parametrize("state", sorted(states()))
def test_the_table_and_the_html_page_say_what_junit_says(state):
    """A FAIL in the terminal's table and the HTML page exactly where JUnit has a
    <failure>, PASS exactly where it has nothing (a corrupted tensor with no element
    disagreeing was INCONCLUSIVE in the table)."""
    from gradcheck_cli.render.html_page import _status
    from gradcheck_cli.render.table import status_cell

    check, want = states()[state]
    cell, page = status_cell(check).plain, _status(check)
    assert cell.startswith("FAIL") == (want == "failure"), (state, cell)
    assert ("FAIL" in page) == (want == "failure"), (state, page)
    assert (cell == "PASS") == (want is None), (state, cell)
