"""JUnit XML: one test case per checked tensor and per expectation, for CI viewers.

The layout follows the common JUnit schema that Jenkins, GitLab and GitHub reporters
read: ``<testsuites>`` holding one ``<testsuite>`` for the config, ``<failure>`` with a
message attribute and the worst elements as text, ``<skipped/>`` for tensors left out
by ``--only``. ElementTree escapes markup; control characters, which XML 1.0 cannot
hold at all, are written as visible escapes (``gradcheck_cli/text.py``). A run that ended
without a verdict (an invalid config, a timeout, a crash, Ctrl-C) gets one more test case
holding an ``<error>``, so that a CI viewer never shows it green.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from ..how_checked import HowChecked
from ..text import printable
from .format import FormatSpec
from .mismatches import first_mismatches, mismatch_summary, mismatches_text

if TYPE_CHECKING:
    from ..report import ExpectationResult, LayerVerdict, Report, TensorCheck


def render_junit(report: Report) -> str:
    """The report as a JUnit XML document (a string with an XML declaration).

    >>> from gradcheck_cli.report import Report
    >>> print(render_junit(Report(config="x.yaml", loss=0.0, settings={})))
    ... # doctest: +ELLIPSIS
    <?xml version='1.0' encoding='utf-8'?>
    <testsuites name="gradcheck" tests="0" failures="0" errors="0" skipped="0" time="0.000">...
    """
    classname = f"gradcheck.{Path(report.config).stem}"
    cases = [_tensor_case(c, classname) for c in report.checks]
    cases += [_expectation_case(e, classname) for e in report.expectations]
    cases += [_skipped_case(name, classname) for name in report.skipped]
    cases += [_purity_case(v, classname) for v in report.layers if v.impure]
    counted = set(report.disagreeing_layers())  # an --only selection's own (unselected: not)
    cases += [_isolation_case(v, report, classname) for v in report.layers if v.name in counted]
    ending = _ending_case(report, classname)
    if ending is not None:
        cases.append(ending)
    counts = {
        "tests": str(len(cases)),
        "failures": str(sum(case.find("failure") is not None for case in cases)),
        "errors": str(sum(case.find("error") is not None for case in cases)),
        "skipped": str(sum(case.find("skipped") is not None for case in cases)),
        "time": f"{report.total_s:.3f}",
    }
    root = ET.Element("testsuites", {"name": "gradcheck", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": f"gradcheck: {report.config}", **counts})
    properties = ET.SubElement(suite, "properties")
    items = {**report.settings, "loss": report.loss, "interrupted": report.interrupted}
    for key, value in items.items():
        ET.SubElement(properties, "property", {"name": str(key), "value": _property(value)})
    suite.extend(cases)
    if report.warnings:
        ET.SubElement(suite, "system-out").text = "\n".join(
            f"warning: {w}" for w in report.warnings
        )
    _make_printable(root)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _make_printable(root: ET.Element) -> None:
    for element in root.iter():
        for key, value in element.attrib.items():
            element.set(key, printable(value))
        if element.text:
            element.text = printable(element.text, keep_newlines=True)


def _ending_case(report: Report, classname: str) -> ET.Element | None:
    """The test case of a run that ended without a verdict: its error, or the
    interruption; None for a run that ran to the end."""
    if report.error is not None:
        kind, message = report.error.kind, report.error.message
        where = report.error.file or report.config
        if report.error.line is not None:
            where += f":{report.error.line}"
        if report.error.key:
            where += f": {report.error.key}"
        text = f"{where}\n{message}"
    elif report.interrupted:
        kind = "interrupted"
        message = (
            f"interrupted (exit {report.exit_code}); {len(report.checks)} tensor(s) "
            "checked before it, the rest not checked"
        )
        text = message
    else:
        return None
    case = _case(classname, f"gradcheck run ({kind})")
    first_line = message.splitlines()[0] if message else kind
    error = ET.SubElement(case, "error", {"message": first_line, "type": kind})
    error.text = text
    return case


def _case(classname: str, name: str, time_s: float = 0.0) -> ET.Element:
    return ET.Element("testcase", {"classname": classname, "name": name, "time": f"{time_s:.3f}"})


def _tensor_case(c: TensorCheck, classname: str) -> ET.Element:
    from .elements import elements_text, taylor_summary, taylor_text  # numpy: not for --help

    case = _case(classname, c.name, float(c.extra.get("time_s", 0.0)))
    if c.interrupted and not c.failed:  # stopped part way: not a pass, nor a failure
        message = (
            f"interrupted after {c.checked} of {c.analytic.size} elements "
            "(none of them disagreed; the rest were not checked)"
        )
        ET.SubElement(case, "skipped", {"message": message})
    elif c.unreached:  # the time budget ran out first: not checked, never a pass
        message = "not checked: the time budget ran out before any of its elements"
        ET.SubElement(case, "error", {"message": message, "type": "NotChecked"})
    elif c.inconclusive and not c.failed and c.taylor_passed is None and not c.corrupted_by:
        message = (
            f"{c.inconclusive} of {c.checked} elements could not be resolved by any step "
            "(the check could not be carried out for them; never counted as passed)"
        )
        error = ET.SubElement(case, "error", {"message": message, "type": "Inconclusive"})
        error.text = elements_text(c)
    elif not c.passed:  # elements that disagree, a Taylor failure, or a corruption
        if c.mode is HowChecked.TAYLOR:
            message = f"Taylor test: {taylor_summary(c)}"
        elif c.corrupted_by and not c.failed:
            message = f"corrupted by the impurity of layer {c.corrupted_by}"
        else:
            message = (
                f"{c.failed} of {c.checked} elements disagree; max abs error "
                f"{c.max_abs_error:.3g}, max rel error {c.max_rel_error:.3g}"
            )
        if c.consequence_of:
            message += f"; consequence of layer {c.consequence_of}"
        if c.diagnosis:
            message += f"; {c.diagnosis}"
        failure = ET.SubElement(case, "failure", {"message": message, "type": "GradientMismatch"})
        failure.text = taylor_text(c) if c.mode is HowChecked.TAYLOR else elements_text(c)
    return case


def _expectation_case(e: ExpectationResult, classname: str) -> ET.Element:
    """A failing expectation: the message names the first disagreeing elements with
    their index, expected and actual values; the text lists every one with its
    tolerance, then both arrays."""
    from .elements import format_array  # numpy: not for --help

    case = _case(classname, f"expect {e.name}")
    if not e.passed:
        message = f"{mismatch_summary(e, rule=True)}: {first_mismatches(e)}"
        attributes = {"message": message, "type": "ExpectationMismatch"}
        failure = ET.SubElement(case, "failure", attributes)
        expected, actual = (format_array(v, 8, threshold=200) for v in (e.expected, e.actual))
        failure.text = f"{mismatches_text(e)}\n\nexpected:\n{expected}\nactual:\n{actual}"
    return case


def _purity_case(v: LayerVerdict, classname: str) -> ET.Element:
    """A layer whose purity problems fail the check (engine/purity.py), one case."""
    case = _case(classname, f"purity of layer {v.name}")
    failing = [p for p in v.problems if p.failure]
    failure = ET.SubElement(
        case,
        "failure",
        {"message": "; ".join(p.kind for p in failing), "type": "ImpureLayer"},
    )
    failure.text = "\n".join(f"{p.kind}: {p.message}" for p in failing)
    return case


def _isolation_case(v: LayerVerdict, report: Report, classname: str) -> ET.Element:
    """A layer whose own backward disagrees in isolation, one case: a failure, or in
    float32 an error (it may be the analytic side's rounding: inconclusive)."""
    case = _case(classname, f"own backward of layer {v.name}")
    wrong = ", ".join(v.failed_tensors)
    message = (
        f"its own backward disagrees in isolation ({wrong}); max abs error "
        f"{v.max_abs_error:.3g}, max rel error {v.max_rel_error:.3g}"
    )
    if v.diagnosis:
        message += f"; {v.diagnosis}"
    if report.float32:
        message += "; in float32 the analytic side's rounding may explain it: re-run in float64"
        ET.SubElement(case, "error", {"message": message, "type": "Inconclusive"})
    else:
        ET.SubElement(case, "failure", {"message": message, "type": "LayerMismatch"})
    return case


def _skipped_case(name: str, classname: str) -> ET.Element:
    case = _case(classname, name)
    ET.SubElement(case, "skipped", {"message": "not in the --only / check.only selection"})
    return case


def _property(value: object) -> str:
    """Enums by value, booleans as JSON writes them."""
    value = getattr(value, "value", value)
    return str(value).lower() if isinstance(value, bool) else str(value)


FORMAT = FormatSpec(
    option="--junit",
    metavar="PATH",
    help="Write a JUnit XML report to PATH, one test case per tensor and expectation.",
    render=render_junit,
)
