"""Renderers: pure functions of a Report. They return text or rich renderables and never
print, write files or exit; the CLI decides where output goes.

Report formats are data, the way pip-audit maps ``--format`` values to formatters: one
module per format (``json.py``, ``junit.py``) holds the renderer and, beside it, a
``FORMAT`` (``format.FormatSpec``: the option, its metavar and help, whether ``-`` means
stdout, whether a saved JSON report can be rendered in it again). ``Format`` lists the
modules; ``gradcheck run`` makes one report option per member, and ``gradcheck report``
one per member that can be rendered from a saved JSON report (HTML). A new format is a
new module plus one member.

Renderers import the result model (``report.py``) only for their annotations, so that
``Report.to_json`` can use ``json.py`` without an import cycle. A format module imports
numpy (and whatever else is heavy) inside its functions, not at its top: ``gradcheck run
--help`` reads every ``FORMAT`` and stays free of numpy (tests/test_light_commands.py).

>>> from gradcheck_cli.report import Report
>>> Format.JSON.render(Report(config="x.yaml", loss=0.0, settings={}))[:40]
'{\\n  "schema": "gradcheck-report/1",\\n  "c'
>>> Format.JUNIT.spec.option
'--junit'
"""

from __future__ import annotations

import importlib
from enum import Enum
from typing import TYPE_CHECKING

from .format import FormatSpec
from .json import render_json  # the renderers by name, for callers that import them
from .junit import render_junit

if TYPE_CHECKING:
    from ..report import Report


class Format(Enum):
    """Every report format, in the order of ``gradcheck run --help``. A member's value
    names its module in this package, which declares ``FORMAT``."""

    JSON = "json"
    JUNIT = "junit"
    HTML = "html"

    @property
    def spec(self) -> FormatSpec:
        """The format's own declaration (its module's ``FORMAT``)."""
        return importlib.import_module(f"{__name__}.{self.value}").FORMAT

    def render(self, report: Report) -> str:
        return self.spec.render(report)


__all__ = ["Format", "FormatSpec", "render_json", "render_junit"]
