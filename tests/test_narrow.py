"""Terminal output at any width (issue 13, item 3): every number whole, no line wider
than the page, the diagnosis under the table rather than one word per line; plain
output in ASCII with a legend that needs no colour; ``--help`` descriptions whole."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from _report_factory import failing_report, tensor_check
from _report_strategies import reports
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from gradcheck_cli.cli import COMMANDS, cli
from gradcheck_cli.render.elements import (
    format_error,
    format_shape,
    format_value,
    rel_error_text,
    worst_elements,
)
from gradcheck_cli.render.heatmap import PLAIN_SHADES, error_heatmap
from gradcheck_cli.render.table import Verbosity, render_report
from gradcheck_cli.report import Report

ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Box drawing and block elements: never in plain output.
NOT_ASCII_ART = re.compile("[\u2500-\u259f]")

LONG_DIAGNOSIS = (
    "the analytic gradient is the numeric one times 2.0 everywhere: a missing 1/2 in the "
    "loss, or a sum where the forward takes a mean over the batch of 4 examples"
)


def render(renderable, width: int, *, plain: bool) -> str:
    """What a console of ``width`` columns shows, colour codes removed."""
    if plain:
        console = Console(file=io.StringIO(), width=width, color_system=None)
    else:
        console = Console(
            file=io.StringIO(), width=width, force_terminal=True, color_system="truecolor"
        )
    console.print(renderable)
    return ANSI.sub("", console.file.getvalue())


def shown_numbers(report: Report) -> list[str]:
    """Every number the report's tables show, as they format it."""
    numbers = []
    for c in report.checks:
        if c.checked:
            numbers += [format_error(c.max_abs_error), rel_error_text(c)]
        numbers.append(format_shape(c.shape))
        if not c.passed:
            for r in worst_elements(c):
                numbers += [format_value(r.analytic), format_value(r.numeric)]
                numbers += [format_error(r.abs_error), r.rel_text]
    blamed = any(not v.passed for v in report.layers)
    for v in report.layers if blamed else ():  # shown only where a layer is to blame
        numbers += [format_error(v.max_abs_error), format_error(v.max_rel_error)]
    for e in report.expectations:
        numbers.append(format_error(e.max_abs_error))
    return [n for n in numbers if n != "—"]


def assert_fits(text: str, width: int, numbers: list[str]) -> None:
    lines = text.splitlines()
    for line in lines:
        assert cell_len(line.rstrip()) <= width, f"line over {width} columns: {line!r}"
    for number in numbers:  # on one line, not cut
        pattern = r"(?<![\w.+-])" + re.escape(number) + r"(?![\w.])"
        assert any(re.search(pattern, line) for line in lines), f"{number} not whole:\n{text}"
    cut = re.search(r"[\d(,.e+-]…", text)
    assert cut is None, f"a value cut short: {cut.group()!r}\n{text}"


def wide_failing_report() -> Report:
    """A failing report whose status and diagnosis cannot share 80 columns."""
    report = failing_report()
    report.checks[0].diagnosis = LONG_DIAGNOSIS
    report.checks.append(
        tensor_check(
            "block3.conv_transpose.weight",
            np.linspace(-3e-5, 2e-4, 24).reshape(2, 3, 2, 2),
            np.linspace(-3e-5, 2e-4, 24).reshape(2, 3, 2, 2) * 1.37,
            consequence_of="block3.conv_transpose",
            diagnosis=LONG_DIAGNOSIS,
        )
    )
    report.layers[0].diagnosis = "dx: " + LONG_DIAGNOSIS
    return report


@pytest.mark.parametrize("width", [60, 80, 120])
@pytest.mark.parametrize("plain", [True, False])
def test_failing_report_keeps_every_number_whole_at_any_width(width, plain):
    report = wide_failing_report()
    text = render(render_report(report), width, plain=plain)
    assert_fits(text, width, shown_numbers(report))
    assert "FAIL (conse" not in text.replace("FAIL (consequence of conv1)", "")
    # the diagnosis reads as a sentence, never one word per line
    words = [line.strip() for line in text.splitlines()]
    assert "loss, or a sum" not in words and "2.0" not in words


@pytest.mark.parametrize("width", [60, 80])
def test_at_narrow_widths_consequence_and_diagnosis_move_under_the_table(width):
    text = render(render_report(wide_failing_report()), width, plain=True)
    assert "input: consequence of conv1" in text
    assert re.search(r"conv1\.weight: the analytic gradient is the numeric", text)


def test_at_wide_widths_the_summary_keeps_its_status_and_diagnosis_columns():
    text = render(render_report(wide_failing_report()), 250, plain=True)
    assert "FAIL (consequence of conv1)" in text
    assert "input: consequence of conv1" not in text


@pytest.mark.parametrize("width", [60, 80])
def test_plain_output_draws_ascii_borders_and_heatmaps(width):
    report = wide_failing_report()
    text = render(render_report(report, Verbosity.VERBOSE), width, plain=True)
    assert NOT_ASCII_ART.search(text) is None, NOT_ASCII_ART.search(text)
    assert re.search(r"^-+\+-+", text, re.MULTILINE) or "-----" in text  # a header rule
    # the heatmap: ASCII shades, failures marked "!", a legend that needs no colour
    heat = render(error_heatmap(report.check("conv1.weight")), width, plain=True)
    assert "red" not in heat and "green" not in heat
    assert "! failed" in heat and "k kink" in heat
    cells = [line.split(" ", 1)[1] for line in heat.splitlines() if re.match(r"\d ", line)]
    assert cells and all(set(row) <= set("".join(PLAIN_SHADES)) | set("!kK? ") for row in cells)
    assert "!" in "".join(cells)


def test_colour_heatmap_keeps_its_shades_and_colour_legend():
    heat = render(error_heatmap(failing_report().check("conv1.weight")), 80, plain=False)
    assert "red" in heat and "█" in heat or "▒" in heat or "░" in heat


def test_heatmap_is_cropped_to_the_page_width():
    a = np.zeros((3, 40))
    check = tensor_check("wide", a, a + 1.0)
    text = render(error_heatmap(check), 60, plain=True)
    assert "(first 3 x 29 of 3 x 40)" in text
    assert all(cell_len(line.rstrip()) <= 60 for line in text.splitlines())


def test_inconclusive_elements_are_marked_in_the_heatmap():
    a = np.ones((2, 2))
    check = tensor_check("w", a, a + np.array([[1.0, 0.0], [0.0, 0.0]]))
    check.inconclusive_mask = np.array([[False, True], [False, False]])
    text = render(error_heatmap(check), 80, plain=True)
    assert re.search(r"^0 #!\? ", text, re.MULTILINE), text


# --- random reports -----------------------------------------------------------------


def _fits_any_width(report: Report, width: int, plain: bool) -> None:
    text = render(render_report(report), width, plain=plain)
    assert_fits(text, width, shown_numbers(report))
    if plain:
        assert NOT_ASCII_ART.search(text) is None


WIDTHS = st.sampled_from([60, 72, 80, 100, 120])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=reports(), width=WIDTHS, plain=st.booleans())
def test_random_reports_fit_any_width_with_every_number_whole(report, width, plain):
    _fits_any_width(report, width, plain)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=reports(), width=WIDTHS, plain=st.booleans())
def test_random_reports_fit_any_width_long_run(report, width, plain):
    _fits_any_width(report, width, plain)


# --- --help ---------------------------------------------------------------------------


@pytest.mark.parametrize("width", ["60", "80"])
def test_help_shows_every_command_description_whole(width):
    result = CliRunner().invoke(cli, ["--help"], env={"COLUMNS": width}, terminal_width=int(width))
    assert result.exit_code == 0
    section = result.output.split("Commands:")[1].split("Exit codes:")[0]
    assert "..." not in section
    listing = " ".join(section.split())
    for name in COMMANDS:
        command = cli.commands[name]
        first = command.get_short_help_str(limit=10_000)
        assert first.endswith(".") and first in listing, (first, listing)
    for name in COMMANDS:  # and every subcommand's own help
        sub = CliRunner().invoke(cli, [name, "--help"], terminal_width=int(width))
        described = sub.output.split("\n", 1)[1]  # past the usage line
        assert sub.exit_code == 0
        assert re.search(r"\w\.\.\.$", described, re.MULTILINE) is None  # click's cut


# --- through the command line ---------------------------------------------------------


def test_a_failing_run_at_80_columns_keeps_numbers_and_the_verdict_whole(failing_run):
    assert failing_run.exit_code == 1, failing_run.output
    assert_run_fits(failing_run.output, 80, json.loads(failing_run.json.read_text()))


def test_the_saved_report_at_60_columns_keeps_numbers_and_the_verdict_whole(failing_run):
    # `gradcheck report` prints what `run` printed (tests/test_html.py), at any width
    result = CliRunner().invoke(
        cli, ["report", str(failing_run.json)], env={"COLUMNS": "60", "NO_COLOR": "1"}
    )
    assert result.exit_code == 0, result.output
    assert_run_fits(result.output, 60, json.loads(failing_run.json.read_text()))


def assert_run_fits(output: str, width: int, data: dict) -> None:
    *body, verdict = output.rstrip("\n").splitlines()
    # the verdict line is one line whatever the width (soft-wrapped, for grep)
    assert verdict.startswith("FAIL: 2 of 7 tensors disagree") and "blamed layer: mutant" in verdict
    keys = ("max_abs_error", "max_rel_error")
    numbers = [format_error(c[k]) for c in data["checks"] for k in keys]
    assert_fits("\n".join(body), width, numbers)
    assert NOT_ASCII_ART.search(output) is None  # not a terminal: plain
    assert "input: consequence of mutant" in output
