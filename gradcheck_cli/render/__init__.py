"""Renderers: pure functions of a Report. They return text or rich renderables and never
print, write files or exit; the CLI decides where output goes.

One formatter per machine-readable format, chosen through ``Format`` (the way pip-audit
maps ``--format`` values to formatters); a new format is a new module plus one member.

>>> from gradcheck_cli.report import Report
>>> Format.JSON.render(Report(config="x.yaml", loss=0.0, settings={}))[:40]
'{\\n  "schema": "gradcheck-report/1",\\n  "c'
"""

from __future__ import annotations

from enum import Enum

from ..report import Report
from .junit import render_junit


def render_json(report: Report) -> str:
    """The JSON report, schema ``gradcheck-report/1`` (README.md, "Reports")."""
    return report.to_json() + "\n"


class Format(Enum):
    JSON = "json"
    JUNIT = "junit"

    def render(self, report: Report) -> str:
        return _FORMATTERS[self](report)


_FORMATTERS = {Format.JSON: render_json, Format.JUNIT: render_junit}

__all__ = ["Format", "render_json", "render_junit"]
