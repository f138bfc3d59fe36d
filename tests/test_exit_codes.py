"""Exit codes are one IntEnum (``gradcheck_cli.exit_codes.ExitCode``): no literal exit
numbers elsewhere, and ``--help`` lists them from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from _report_factory import failing_report, passing_report

import gradcheck_cli as gc
from gradcheck_cli.cli import exit_codes
from gradcheck_cli.exit_codes import ExitCode

REPO = Path(__file__).resolve().parent.parent

EPILOG = """\b
Exit codes:
  0    every checked gradient and every expectation agrees
  1    at least one gradient or expectation disagrees
  2    the command line or the config is invalid
  3    the check could not be carried out (NaN/Inf in a forward pass,
       the loss or a gradient; a forward that gives different outputs
       for the same input; elements no step resolves (inconclusive) and
       no failure; past --timeout; the process running the check exited,
       crashed or was killed)
  4    internal error, a bug in gradcheck (traceback with --debug)
  130  interrupted (Ctrl-C); the partial report is written
  141  the output's reader closed it early (gradcheck run ... | head)
  143  terminated (SIGTERM); the partial report is written
"""


def test_the_codes():
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 130, 141, 143]
    assert ExitCode.TERMINATED == 143 and "SIGTERM" in ExitCode.TERMINATED.meaning


def test_help_epilog_is_generated_unchanged():
    assert exit_codes.EPILOG == EPILOG  # 143 is listed now that SIGTERM exits with it
    assert exit_codes.INVALID is ExitCode.INVALID  # the names code used before the enum


def test_errors_and_reports_use_the_enum():
    assert gc.ConfigError.exit_code is ExitCode.INVALID
    assert gc.PluginError.exit_code is ExitCode.INVALID
    assert gc.NumericalError.exit_code is ExitCode.NOT_CARRIED_OUT
    assert gc.GradcheckError.exit_code is ExitCode.INTERNAL
    assert passing_report().exit_code is ExitCode.OK
    assert failing_report().exit_code is ExitCode.DISAGREE
    assert json.loads(passing_report().to_json())["exit_code"] == 0


def test_no_literal_exit_numbers_outside_the_enum():
    package = REPO / "gradcheck_cli"
    literal = re.compile(r"(exit\(|exit_code\s*=|return)\s*(0|1|2|3|4|130|141|143)(?![\w.])")
    paths = [package / n for n in ("errors.py", "report.py", "__main__.py")]
    for path in [*paths, *(package / "cli").glob("*.py")]:
        assert not literal.search(path.read_text()), path.name
