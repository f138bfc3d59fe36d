"""The HTML report format (``--html PATH``, ``gradcheck report``): its declaration.

The page itself is drawn by ``render/html_page.py``, imported when a report is
rendered: it needs numpy, which ``gradcheck run --help`` and ``gradcheck report
--help`` must not import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .format import FormatSpec

if TYPE_CHECKING:
    from ..report import Report


def render_html(report: Report) -> str:
    """One self-contained HTML page for ``report`` (``render/html_page.py``)."""
    from .html_page import render_html as page

    return page(report)


FORMAT = FormatSpec(
    option="--html",
    metavar="PATH",
    help="Write a self-contained HTML report to PATH (one file; no network needed to view).",
    render=render_html,
    from_saved_report=True,
    reads_explain=True,
)
