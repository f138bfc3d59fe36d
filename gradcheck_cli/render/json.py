"""The JSON report, schema ``gradcheck-report/1`` (contract section 3).

Fields are only ever added under this schema; renaming or removing one needs a new
schema version. ``Report.to_dict`` and ``Report.to_json`` return what this module makes.

Arrays take their own path into the text (``json_arrays.py``): the report is written
in time proportional to its size, without a Python call per element. numpy is imported
when a report is made, not with this module, so that ``gradcheck run --help`` (which
reads ``FORMAT``) stays light.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import TYPE_CHECKING, Any

from .format import FormatSpec

if TYPE_CHECKING:
    from ..report import Report, TensorCheck

SCHEMA = "gradcheck-report/1"


def render_json(report: Report) -> str:
    """The JSON report as a document: indented by 2, ending with a newline."""
    return dumps(report) + "\n"


def dumps(report: Report, indent: int | None = 2) -> str:
    """``report_to_dict`` as JSON text, exactly as ``json.dumps(..., indent=indent)``
    writes it; NaN and infinity never appear (None instead)."""
    document = report_to_dict(report)
    if indent is None:  # json's C encoder: already one pass in C
        return json.dumps(document, allow_nan=False)
    return _indented(document, indent)


def _indented(document: Any, indent: int) -> str:
    """``json.dumps(document, indent=indent)``, with each ``JSONArray`` written by
    ``array_text``: the arrays are swapped for unique placeholder strings, the rest is
    dumped (small), and each placeholder is replaced by its array's text, indented as
    deep as the placeholder's line."""
    from .json_arrays import JSONArray, array_text

    arrays: list[Any] = []
    tag = f"@gradcheck-array:{os.urandom(8).hex()}:"  # not the secrets module: 5 ms

    def swap(value: Any) -> Any:
        if isinstance(value, JSONArray):
            arrays.append(value.array)
            return f"{tag}{len(arrays) - 1}"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(document), indent=indent, allow_nan=False)

    def array_at(match: re.Match[str]) -> str:
        head = text[text.rfind("\n", 0, match.start()) + 1 : match.start()]
        depth = len(head) - len(head.lstrip(" "))
        return array_text(arrays[int(match.group(1))], indent, depth)

    return re.sub(f'"{re.escape(tag)}(\\d+)"', array_at, text)


def report_to_dict(r: Report) -> dict[str, Any]:
    """The JSON report as plain data: dicts, lists, strings, numbers and None."""
    import numpy as np

    return {
        "schema": SCHEMA,
        "config": r.config,
        "name": r.name,
        "passed": r.passed,
        "exit_code": r.exit_code,
        "loss": _finite(r.loss),
        "settings": r.settings,
        "checks": [
            {
                "name": c.name,
                "layer": c.layer,
                "param": c.param,
                "shape": list(c.shape),
                "checked": c.checked,
                "failed": c.failed,
                "kinks": c.kinks,
                "inconclusive": c.inconclusive,
                "passed": c.passed,
                "max_abs_error": c.max_abs_error,
                "max_rel_error": c.max_rel_error,
                "mode": c.mode.value,
                "localised": c.localised,
                "diagnosis": c.diagnosis,
                "consequence_of": c.consequence_of,
                "taylor_order": c.taylor_order,
                "taylor_passed": c.taylor_passed,
                "corrupted_by": c.corrupted_by,
                "analytic": to_jsonable(c.analytic),
                "numeric": to_jsonable(np.where(c.checked_mask, c.numeric, np.nan)),
                "error_bound": to_jsonable(np.where(c.checked_mask, c.error_bound, np.nan)),
                **element_lists(c),
            }
            for c in r.checks
        ],
        "expectations": [
            {
                "name": e.name,
                "passed": e.passed,
                "max_abs_error": e.max_abs_error,
                "expected": to_jsonable(e.expected),
                "actual": to_jsonable(e.actual),
                "tolerance": e.tolerance,
                "mismatches": [m.as_dict() for m in e.mismatches],
            }
            for e in r.expectations
        ],
        "layers": [
            {
                "name": v.name,
                "type": v.type,
                "passed": v.passed,
                "max_abs_error": v.max_abs_error,
                "max_rel_error": v.max_rel_error,
                "kinks": v.kinks,
                "checked": v.checked,
                "directions": v.directions,
                "diagnosis": v.diagnosis,
                "wrong": v.wrong,
                "inconclusive": v.inconclusive,
                "tensors_ok": dict(v.tensors_ok),
                "unselected": v.unselected,
                "problems": [
                    {"kind": p.kind, "message": p.message, "severity": p.severity}
                    for p in v.problems
                ],
            }
            for v in r.layers
        ],
        "skipped": list(r.skipped),
        "warnings": list(r.warnings),
        "interrupted": r.interrupted,
        "error": error_of(r),
        "timing": {"total_s": round(r.total_s, 6), "forward_passes": r.forward_passes},
        "explain": r.explain,
    }


#: Per check, the indices of its failed, kink and inconclusive elements, so that a saved
#: report can be drawn again (``gradcheck report``): JSON key -> TensorCheck mask.
ELEMENT_LISTS = {
    "failed_elements": "failed_mask",
    "kink_elements": "kink_mask",
    "inconclusive_elements": "inconclusive_mask",
}


def element_lists(c: TensorCheck) -> dict[str, list[list[int]]]:
    """``{"failed_elements": [[0, 1], ...], ...}``: each element's index in the tensor's
    shape (``[]`` for a scalar), in C order."""
    import numpy as np  # not at import: `gradcheck run --help` needs no numpy

    return {key: np.argwhere(getattr(c, mask)).tolist() for key, mask in ELEMENT_LISTS.items()}


def error_of(r: Report) -> dict[str, Any] | None:
    """The report's ``error`` (contract section 1): what ended the run on exit 2, 3 or 4,
    None otherwise. A check that ran to the end but left elements unresolved (exit 3)
    says so here too, so that every exit 3 carries an ``error``."""
    if r.error is not None:
        return r.error.as_dict()
    if r.interrupted or not r.inconclusive:
        return None
    unsure = [c for c in r.checks if c.inconclusive]
    count = sum(c.inconclusive for c in unsure)
    names = ", ".join(c.name for c in unsure[:5]) + (", ..." if len(unsure) > 5 else "")
    return {
        "kind": "inconclusive",
        "message": f"{count} element(s) of {names} could not be resolved by any step; "
        "they are never counted as passed",
        "file": r.config,
        "line": None,
        "key": None,
    }


def to_jsonable(a: Any) -> Any:
    """Nested lists of floats; NaN (not checked) becomes None, as the contract asks, and
    so does infinity, which JSON cannot hold. Made in numpy's loops (json_arrays.py)."""
    from .json_arrays import jsonable

    return jsonable(a)


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


FORMAT = FormatSpec(
    option="--json",
    metavar="PATH",
    help="Write the JSON report to PATH ('-' = stdout; the table then goes to stderr).",
    render=render_json,
    reads_explain=True,
)
