"""``gradcheck report``: render a saved JSON report again: the table on the terminal,
and every format that can be made from it (``--html PATH``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..exit_codes import ExitCode
from .formats import ReportCommand, report_options
from .io import make_console
from .options import output_options, verbosity_options

if TYPE_CHECKING:
    from ..render import Format


@click.command("report", cls=ReportCommand, offers=lambda spec: spec.from_saved_report)
@click.argument("saved", metavar="REPORT.json", type=click.Path(exists=True, dir_okay=False))
@report_options  # --html PATH: one per render.Format member a saved report can make
@verbosity_options
@output_options
def command(
    saved: str, reports: dict[Format, str], quiet: bool, verbose: bool, no_color: bool
) -> int:
    """Render a saved JSON report (gradcheck run --json) again: the table, and HTML.

    Shows the report as gradcheck run printed it; --html PATH writes the self-contained
    HTML page (heatmaps, layer blame, expectations, the backward pass of a small
    network). Nothing is checked again: the exit code is 0 once the report is rendered,
    2 when REPORT.json is not a gradcheck report (the file and the key path are named).

    \b
    Examples:
      gradcheck report report.json
      gradcheck report report.json --html report.html -q
      gradcheck run net.yaml --json r.json; gradcheck report r.json --html r.html
    """
    from ..errors import GradcheckError
    from ..saved import load_report
    from .run import Outputs, _print_report

    outputs = Outputs(reports, saved)
    outputs.check(protect=(saved,))  # first: a refusal below is then written to them
    if quiet and verbose:
        outputs.refuse(click.UsageError("-q/--quiet and -v/--verbose cannot be combined."))
    try:
        report = load_report(saved)
    except GradcheckError as e:  # not a report: the HTML says so too, never stale
        outputs.refuse(e)
        raise  # unreachable: refuse raises
    out = make_console(sys.stderr if outputs.stdout_taken else sys.stdout, no_color=no_color)
    _print_report(report, out, quiet=quiet, verbose=verbose)
    outputs.write(report)
    return ExitCode.OK
