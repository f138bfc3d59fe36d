"""``expect:``: element and slice keys, tolerances from the written decimals, and every
disagreeing element named with its index, expected and actual value and tolerance.

The decimal reading and the rounding rule are property-tested; the keys, messages and
reports end to end through ``load_problem``, the engine and the command line.
"""

from __future__ import annotations

import json
import math
import textwrap
import xml.etree.ElementTree as ET
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gradcheck_cli as gc
from gradcheck_cli.cli import cli
from gradcheck_cli.config import load_problem
from gradcheck_cli.config.written import last_place
from gradcheck_cli.engine.expectations import agrees
from gradcheck_cli.errors import ConfigError
from gradcheck_cli.indexing import BadIndex, parse_index, select

EPS = float(np.finfo(np.float64).eps)

#: A 3x3 input through a 2x2 conv (1 channel) and an upstream grad: every value below
#: is worked out by hand from these numbers.
CONV = """\
input: [[1, 2, 0], [0, 1, 3], [2, 1, 1]]
layers:
  - {type: conv2d, name: conv1, out_channels: 1, kernel_size: 2,
     weight: [[1, -1], [2, 0.5]], bias: [0]}
loss: {type: upstream, grad: [[1, 0], [0, 2]]}
"""
#: conv1's output: o[i,j] = sum w * x window: [[1-2+0+0.5, 2-0+2+1.5], [0-1+4+0.5, 1-3+2+0.5]]
OUTPUT = [[-0.5, 5.5], [3.5, 0.5]]
#: dE/dw[m,n] = sum_ij g[i,j] x[i+m, j+n] with g = [[1, 0], [0, 2]]
WEIGHT_GRAD = [[1 + 2 * 1, 2 + 2 * 3], [0 + 2 * 1, 1 + 2 * 1]]  # [[3, 8], [2, 3]]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(path: Path, *args: str):
    return CliRunner().invoke(cli, ["run", str(path), "--no-color", *args])


def check(tmp_path: Path, expect: str) -> gc.Report:
    return gc.check(write(tmp_path, CONV + "expect:\n" + textwrap.indent(expect, "  ")))


def issues(tmp_path: Path, expect: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_problem(write(tmp_path, CONV + "expect:\n" + textwrap.indent(expect, "  ")))
    return [str(i) for i in info.value.issues]


# --- the unit in the last written place -------------------------------------------


@given(st.integers(-(10**9), 10**9), st.integers(0, 9))
def test_a_number_written_with_d_decimals_has_its_last_place_at_ten_to_minus_d(m, d):
    text = f"{m / 10**d:.{d}f}"
    assert last_place(text) == pytest.approx(10.0**-d, rel=1e-12)


@given(
    st.floats(1e-30, 1e30, allow_nan=False, allow_infinity=False),
    st.integers(0, 8),
    st.booleans(),
)
def test_scientific_notation_reads_its_mantissa_decimals_and_exponent(x, d, negative):
    text = f"{-x if negative else x:.{d}e}"
    exponent = int(text.split("e")[1])
    assert last_place(text) == pytest.approx(10.0 ** (exponent - d), rel=1e-12)


@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(0, 17), st.booleans())
def test_every_float_written_any_way_has_a_place_or_none_never_an_error(x, d, fixed):
    """Found by tests/test_fuzz.py: ``5.0e-324`` (a subnormal) raised OverflowError."""
    text = f"{x:.{d}f}" if fixed and abs(x) < 1e30 else f"{x:.{d}e}"
    place = last_place(text)
    assert place is None or 0 <= place < float("inf")
    assert last_place("5.0e-324") == pytest.approx(1e-325, abs=5e-324)
    assert last_place("1.0e-400") == 0.0 and last_place("1e400") is None


def test_forms_that_are_not_decimal_have_no_last_place():
    assert last_place("3.116e-1") == pytest.approx(1e-4)
    assert last_place("2") == 1.0 and last_place("2.") == 1.0 and last_place(".5") == 0.1
    assert last_place("1_000.25") == pytest.approx(0.01)
    for text in ("0x1F", "0o17", "1:20", ".inf", "abc", "", "."):
        assert last_place(text) is None


def _rounded(true: float, d: int) -> Decimal:
    return Decimal(true).quantize(Decimal(1).scaleb(-d), rounding=ROUND_HALF_EVEN)


@settings(max_examples=300)
@given(st.floats(-1e6, 1e6, allow_nan=False), st.integers(0, 8))
def test_a_value_rounded_correctly_from_the_true_one_always_passes(true, d):
    written = str(_rounded(true, d))
    place = last_place(written)
    assert place is not None
    assert agrees(true, float(written), 0.5 * place, EPS)


@settings(max_examples=300)
@given(st.floats(-1e6, 1e6, allow_nan=False), st.integers(0, 8), st.sampled_from([-1, 1]))
def test_one_unit_off_in_the_last_place_fails(true, d, direction):
    scaled = Decimal(true).scaleb(d)
    # a true value a hair from the half-way point rounds either way: both roundings are
    # right there, so "one off" is only defined away from it; and a number written with
    # more significant digits than float64 resolves (beyond 12) is held to its rounding
    assume(abs(scaled - scaled.to_integral_value(rounding="ROUND_FLOOR") - Decimal("0.5")) > 0.01)
    assume(abs(scaled) < 10**12)
    wrong = _rounded(true, d) + direction * Decimal(1).scaleb(-d)
    place = last_place(str(wrong))
    assert place is not None
    assert not agrees(true, float(wrong), 0.5 * place, EPS)


def test_a_value_exactly_half_a_unit_away_passes_either_rounding():
    # 0.3125 is exact in binary: 0.312 and 0.313 are both correct to 3 decimals
    assert agrees(0.3125, 0.312, 0.0005, EPS) and agrees(0.3125, 0.313, 0.0005, EPS)
    # 0.31165 is not: its nearest double still rounds to 0.3116 or 0.3117
    assert agrees(0.31165, 0.3116, 0.00005, EPS) and agrees(0.31165, 0.3117, 0.00005, EPS)
    assert not agrees(0.31166, 0.3116, 0.00005, EPS)


# --- the index syntax ----------------------------------------------------------------


def test_parse_index_reads_integers_slices_and_an_ellipsis():
    assert parse_index("0, 0, 1, 1") == (0, 0, 1, 1)
    assert parse_index("-1, ::2, 1:, :3, ...") == (
        -1,
        slice(None, None, 2),
        slice(1, None),
        slice(None, 3),
        Ellipsis,
    )
    assert parse_index("2,") == (2,)


@pytest.mark.parametrize(
    "text, words",
    [
        ("[0, 1]", "fancy indexing"),
        ("True", "boolean index"),
        ("None", "adds an axis"),
        ("1.5", "not an integer"),
        ("a", "not an index"),
        ("", "empty index"),
        ("..., ...", "at most one"),
        ("::0", "step must not be 0"),
    ],
)
def test_parse_index_refuses_what_keys_do_not_take(text, words):
    with pytest.raises(BadIndex, match=words):
        parse_index(text)


@given(
    st.lists(st.integers(1, 4), min_size=1, max_size=4).flatmap(
        lambda shape: st.tuples(
            st.just(tuple(shape)),
            st.tuples(*[st.integers(-d, d - 1) for d in shape]),
        )
    )
)
def test_an_element_index_selects_what_numpy_selects(case):
    shape, index = case
    a = np.arange(math.prod(shape)).reshape(shape)
    chosen = select(index, [shape])
    assert chosen.positions.shape == () and int(chosen.positions) == a[index]
    wrapped = tuple(i % d for i, d in zip(index, shape, strict=True))
    assert chosen.coordinates(int(chosen.positions)) == wrapped


def test_an_index_is_read_in_the_shape_with_as_many_axes():
    # a 2-D kernel is (1, 1, 2, 2) inside: both spellings name the same element
    assert select((1, 0), [(2, 2), (1, 1, 2, 2)]).shape == (2, 2)
    assert select((0, 0, 1, 0), [(2, 2), (1, 1, 2, 2)]).shape == (1, 1, 2, 2)
    assert int(select((0, 0, 1, 0), [(2, 2), (1, 1, 2, 2)]).positions) == 2


# --- keys through the loader and the engine ----------------------------------------


def test_element_and_slice_keys_of_every_kind_pass_with_hand_values(tmp_path):
    report = check(
        tmp_path,
        """\
        conv1.output[0, 1]: 5.5
        conv1.output[1, :]: [3.5, 0.5]
        conv1.output[-1, -1]: 0.5
        conv1.output[..., 0]: [-0.5, 3.5]
        conv1.weight.grad[0, 0, 0, 1]: 8
        conv1.weight.grad[1]: [2, 3]
        conv1.weight.grad[::-1, ::2]: [[2], [3]]
        conv1.bias.grad[0]: 3
        conv1.delta[1, 1]: 2
        input.grad[2, 2]: 1
        input.grad[0, :]: [1, -1, 0]
        loss: 0.5
        """,
    )
    assert [e.name for e in report.expectations if not e.passed] == []
    assert report.passed


def test_a_wrong_value_names_its_index_expected_actual_and_tolerance(tmp_path):
    report = check(tmp_path, "conv1.weight.grad: [[3.0, 8.0], [2.1, 3.0]]\n")
    (e,) = report.expectations
    assert not e.passed
    assert [m.as_dict() for m in e.mismatches] == [
        {"index": [1, 0], "expected": 2.1, "actual": 2.0, "tolerance": 0.05}
    ]
    assert e.tolerance["rule"] == "written"
    assert e.tolerance["description"] == "±0.05, from 1 written decimal"


def test_a_slice_reports_indices_in_the_whole_tensors_coordinates(tmp_path):
    report = check(tmp_path, "conv1.output[:, 1]: [5.5, 0.7]\n")
    (e,) = report.expectations
    assert [(m.index, m.expected, m.actual) for m in e.mismatches] == [((1, 1), 0.7, 0.5)]


def test_each_number_is_held_to_its_own_written_decimals(tmp_path):
    # -0.5 written as -0.4 is off by 0.1 > 0.05 (1 decimal); 5.5 written as 5 (an
    # integer) is within 0.5; 0.5 written as 0.50 is exact
    report = check(tmp_path, "conv1.output: [[-0.4, 5], [3.5, 0.50]]\n")
    (e,) = report.expectations
    assert [m.index for m in e.mismatches] == [(0, 0)]
    assert e.tolerance["min"] == pytest.approx(0.005) and e.tolerance["max"] == 0.5


def test_a_given_tolerance_overrides_the_written_decimals(tmp_path):
    report = check(tmp_path, "conv1.output[0, 0]: -0.4\ntolerance: {atol: 0.2}\n")
    (e,) = report.expectations
    assert e.passed and e.tolerance == {
        "rule": "given",
        "atol": 0.2,
        "rtol": 0.0,
        "description": "atol 0.2 (given)",
    }
    report = check(tmp_path, "conv1.output[0, 0]: -0.5004\ntolerance: {atol: 1e-4}\n")
    assert not report.expectations[0].passed  # 4 decimals would allow it; atol does not


def test_values_from_a_file_use_the_default_tolerance(tmp_path):
    np.save(tmp_path / "out.npy", np.array(OUTPUT) + 5e-7)
    report = check(tmp_path, "conv1.output: {file: out.npy}\n")
    (e,) = report.expectations
    assert e.passed and e.tolerance["rule"] == "default" and e.tolerance["atol"] == 1e-6
    np.save(tmp_path / "out.npy", np.array(OUTPUT) + 2e-6)
    assert not check(tmp_path, "conv1.output: {file: out.npy}\n").passed


@pytest.mark.parametrize(
    "expect, words",
    [
        (
            "conv1.weight.grad[0, 2]: 1",
            [
                "expect.conv1.weight.grad[0, 2]",
                "index 2 is out of range for axis 1 of size 2",
                "conv1.weight has shape [2, 2]",
            ],
        ),
        (
            "conv1.output[0, :]: [1, 2, 3]",
            ["has shape [3] but [0, :] selects shape [2]", "write shape [2] there"],
        ),
        ("conv1.output[[0, 1]]: [1, 2]", ["fancy indexing"]),
        ("conv1.output[True]: 1", ["boolean index"]),
        ("loss[0]: 1", ["the loss is one number and takes no index"]),
        ("conv1.weight.grad[0, 0, 0, 0, 0]: 1", ["names 5 axes"]),
        ("conv1.wieght.grad[0]: 1", ["unknown expectation key", "conv1.weight.grad"]),
    ],
)
def test_bad_keys_name_file_line_key_and_what_would_fit(tmp_path, expect, words):
    (issue,) = issues(tmp_path, expect + "\n")
    assert issue.startswith(f"{tmp_path / 'net.yaml'}:7: ")
    for word in words:
        assert word in issue, issue


# --- what the reports show ----------------------------------------------------------


def test_run_shows_the_tolerance_and_every_disagreeing_element(tmp_path):
    path = write(
        tmp_path,
        CONV
        + "expect:\n  conv1.output: [[-0.5001, 5.5001], [3.5001, 0.5001]]\n"
        + "  conv1.weight.grad[0, 0]: 3.0000\n",
    )
    result = run(path)
    assert result.exit_code == 1, result.output
    out = result.output
    assert "±0.00005, from 4 written decimals" in out
    assert "conv1.output: 4 of 4 elements disagree" in out
    for index, value in (("[0, 0]", "-0.5001"), ("[1, 1]", "0.5001")):
        row = next(line for line in out.splitlines() if line.strip().startswith(index))
        assert value in row and "±0.00005" in row
    assert "Layers (own backward)" not in out  # no layer is to blame


def test_run_lists_the_first_few_and_says_how_many_more_unless_verbose(tmp_path):
    path = write(
        tmp_path,
        "input: [1, 2, 3, 4, 5, 6, 7, 8]\nlayers: [{type: relu}]\n"
        "loss: {type: upstream, grad: [1, 1, 1, 1, 1, 1, 1, 1]}\n"
        "expect:\n  relu_1.output: [0, 0, 0, 0, 0, 0, 0, 0]\n",
    )
    out = run(path).output
    assert "… 3 more (-v lists every one)" in out and "[7]" not in out
    out = run(path, "-v").output
    assert "more (-v" not in out and "[7]" in out


def test_json_and_junit_carry_every_mismatch(tmp_path):
    path = write(tmp_path, CONV + "expect:\n  conv1.weight.grad[1, :]: [2, 4]\n")
    result = run(path, "--json", str(tmp_path / "r.json"), "--junit", str(tmp_path / "r.xml"))
    assert result.exit_code == 1
    (e,) = json.loads((tmp_path / "r.json").read_text())["expectations"]
    assert e["name"] == "conv1.weight.grad[1, :]" and e["passed"] is False
    assert e["mismatches"] == [{"index": [1, 1], "expected": 4.0, "actual": 3.0, "tolerance": 0.5}]
    assert e["tolerance"]["rule"] == "written"
    case = next(
        c for c in ET.parse(tmp_path / "r.xml").iter("testcase") if "expect" in c.get("name")
    )
    message = case.find("failure").get("message")
    assert "[1, 1] expected 4, actual 3" in message and "±0.5" in message


def test_the_layers_table_appears_only_where_a_layer_is_to_blame(tmp_path):
    from _report_factory import failing_report, passing_report

    from gradcheck_cli.render.table import render_report

    console_text = _text(render_report(failing_report()))
    assert "Layers (own backward)" in console_text  # conv1 is WRONG there
    report = failing_report()
    for v in report.layers:
        v.passed, v.tensors_ok, v.diagnosis = True, {}, None
    assert "Layers (own backward)" not in _text(render_report(report))
    assert "Layers (own backward)" not in _text(render_report(passing_report()))


def _text(renderable) -> str:
    from rich.console import Console

    console = Console(color_system=None, width=140)
    with console.capture() as cap:
        console.print(renderable)
    return cap.get()
