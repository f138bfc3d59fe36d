"""What a report format declares about itself, beside its renderer.

Each format module of this package ends with ``FORMAT = FormatSpec(...)``; ``Format`` in
``render/__init__.py`` lists the modules, and the command line makes one option per
member from these fields (``cli/formats.py``). Nothing else has to learn about a format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..report import Report


@dataclass(frozen=True)
class FormatSpec:
    """A report format: how the command line offers it and how it is rendered.

    >>> spec = FormatSpec("--txt", "PATH", "Write a text report to PATH.", lambda r: r.config)
    >>> spec.option, spec.stdout, spec.from_saved_report
    ('--txt', True, False)
    """

    #: the option that writes it, ``--json``
    option: str
    #: the option's metavar in ``--help``, ``PATH``
    metavar: str
    #: the option's help text
    help: str
    #: ``render(report) -> str``: the whole document, ending with a newline
    render: Callable[[Report], str]
    #: whether ``-`` may stand for stdout (the table then goes to stderr)
    stdout: bool = True
    #: whether the format can be rendered again from a saved JSON report, so that
    #: ``gradcheck report REPORT.json`` offers it: true only when the JSON holds all the
    #: renderer reads (JSON itself is not offered: it is that command's input)
    from_saved_report: bool = False
    #: whether the renderer reads the report's ``explain`` section (the worked
    #: derivation of a small network): the worker makes it only for a run that writes
    #: such a format (about 14 ms of a small check's start-up, gradcheck_cli/worker.py)
    reads_explain: bool = False
