"""The JSON report's fast writer (render/json_arrays.py) against the writer it replaced:
``json.dumps(report_to_dict(r), indent=2)`` with a recursive, element-by-element
``to_jsonable``. The text must be the same byte for byte."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _report_factory import failing_report, passing_report, tensor_check
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradcheck_cli.render.json as render_json_module
from gradcheck_cli.render.json import dumps, render_json, report_to_dict
from gradcheck_cli.render.json_arrays import array_text, jsonable
from gradcheck_cli.report import ExpectationResult, Report, RunError, TensorCheck


def old_to_jsonable(a):
    """The writer before: one Python call per element; NaN -> None (infinity raised)."""
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 0:
        v = float(arr)
        return None if math.isnan(v) else v
    return [old_to_jsonable(x) for x in arr]


def old_render(report: Report, monkeypatch) -> str:
    with monkeypatch.context() as m:
        m.setattr(render_json_module, "to_jsonable", old_to_jsonable)
        return json.dumps(report_to_dict(report), indent=2, allow_nan=False) + "\n"


def reference(a):
    """old_to_jsonable, with infinity as None too (JSON cannot hold it)."""
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 0:
        v = float(arr)
        return v if math.isfinite(v) else None
    return [reference(x) for x in arr]


SPECIAL = [0.0, -0.0, 1.0, 0.1, 1e16, 1e-5, 5e-324, 1.7976931348623157e308, math.nan]
floats = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e3, 1e3),
)


def shapes(max_dims: int):
    return hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=4)


arrays = st.one_of(
    hnp.arrays(np.float64, shapes(4), elements=floats),
    hnp.arrays(np.float32, shapes(3), elements=st.floats(width=32)),
    hnp.arrays(np.int64, shapes(3)),
)


@settings(max_examples=150, deadline=None)
@given(arr=arrays, indent=st.integers(0, 4), depth=st.integers(0, 9))
def test_array_text_is_json_dumps_of_the_nested_list(arr, indent, depth):
    expected = json.dumps(reference(arr), indent=indent, allow_nan=False)
    assert array_text(arr, indent, depth) == expected.replace("\n", "\n" + " " * depth)


@settings(max_examples=100, deadline=None)
@given(arr=arrays)
def test_jsonable_is_the_nested_list_of_floats(arr):
    got = jsonable(arr)
    assert json.dumps(got, allow_nan=False) == json.dumps(reference(arr), allow_nan=False)
    assert got == reference(arr) or np.isnan(arr).any()  # NaN != NaN; None == None


def special_report() -> Report:
    """NaN, -0.0, subnormals, float32 values, a 4-D tensor, an all-unchecked (fast)
    tensor, a 0-d expectation, an empty tensor and an inconclusive one."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3, 2, 2))
    w[0, 0, 0, 0], w[1, 2, 1, 1] = -0.0, 5e-324
    numeric = w + 1e-9
    numeric[0, 1] = np.nan  # not checked
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    fast = TensorCheck.unchecked("fc.weight", rng.standard_normal((4, 5)), "fast")
    unsure = tensor_check("fc.bias", [1e-3, 2.0], [1e-3, 2.0])
    unsure.inconclusive_mask = np.array([True, False])
    unsure.error_bound = np.array([np.nan, 1e-12])
    return Report(
        config="configs/special.yaml",
        name='special \u00e9 "quoted" @gradcheck-array:0000000000000000:0',
        loss=float("nan"),
        settings={"eps": 1e-6, "only": ("conv*",), "mode": "full"},
        checks=[
            tensor_check("conv1.weight", w, numeric),
            tensor_check("conv2.weight", f32, f32.astype(np.float64) * (1 + 1e-7)),
            fast,
            unsure,
            tensor_check("empty.weight", np.zeros((0, 3)), np.zeros((0, 3))),
            tensor_check("input", [[[0.5]]], [[[0.5]]]),
        ],
        expectations=[
            ExpectationResult("loss", np.array(0.25), np.array(0.25000001), True, 1e-8),
            ExpectationResult("conv1.delta", f32, f32 * 2, False, 1.0),
        ],
        skipped=["other"],
        warnings=["a warning with a\nnewline"],
        total_s=0.5,
        forward_passes=7,
    )


REPORTS = {
    "passing": passing_report,
    "failing": failing_report,
    "special": special_report,
    "empty": lambda: Report(config="x.yaml", loss=0.0, settings={}),
    "error": lambda: Report(
        config="x.yaml", loss=math.nan, settings={}, error=RunError("config", "bad", "x.yaml", 3)
    ),
}


@pytest.mark.parametrize("make", REPORTS.values(), ids=list(REPORTS))
def test_report_text_is_byte_identical_to_the_element_by_element_writer(make, monkeypatch):
    report = make()
    assert render_json(report) == old_render(report, monkeypatch)
    compact = json.dumps(report_to_dict(report), allow_nan=False)
    assert dumps(report, indent=None) == compact
    assert dumps(report, indent=4) == json.dumps(report_to_dict(report), indent=4)


def test_infinity_is_null_and_the_report_stays_valid_json():
    """The writer before raised on an infinite element (exit 4); JSON cannot hold one."""
    report = passing_report()
    report.checks[0].error_bound = np.array([[np.inf, 1e-9], [-np.inf, 1e-9]])
    report.expectations[0].actual = np.array([[np.inf, 0.0], [0.0, 0.0]])

    def refuse(token):
        raise AssertionError(f"{token} in the JSON report")

    data = json.loads(render_json(report), parse_constant=refuse)
    assert data["checks"][0]["error_bound"] == [[None, 1e-9], [None, 1e-9]]
    assert data["expectations"][0]["actual"][0] == [None, 0.0]


def test_a_string_shaped_like_the_array_placeholder_is_written_as_it_is():
    report = special_report()
    data = json.loads(render_json(report))
    assert data["name"] == report.name
