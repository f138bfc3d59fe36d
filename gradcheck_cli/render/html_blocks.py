"""Building blocks of the HTML report (``render/html_page.py``): escaping, tables, numbers
and grids of numbers. Every helper returns HTML; every text it is given is escaped."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..text import printable


def esc(text: object) -> str:
    """Text for the page: control characters made visible, then HTML-escaped."""
    return html.escape(printable(str(text), keep_newlines=True), quote=True)


def table(headers: Iterable[str], rows: Iterable[Sequence[str]]) -> str:
    """An HTML table that scrolls sideways when wider than the page; ``headers`` are
    plain text, cells are already HTML (numbers made by ``num`` are right-aligned)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    markup = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{markup}</div>'


class Num(str):
    """A table cell holding a number (escaped HTML): right-aligned, monospaced."""


def _cell(c: str) -> str:
    return f'<td class="num">{c}</td>' if isinstance(c, Num) else f"<td>{c}</td>"


def num(value: Any) -> str:
    """A number's cell: its text escaped, right-aligned by ``table``."""
    return Num(esc(value))


def number(v: Any) -> str:
    """A value with 8 significant digits; ``—`` for None or NaN (not checked)."""
    if v is None:
        return "—"
    v = float(v)
    return "—" if math.isnan(v) else f"{v:.8g}"


def matrix(a: np.ndarray) -> str:
    """Numbers as a grid: a scalar, a row, a matrix, or one matrix per leading index."""
    if a.ndim == 0:
        return f'<table class="matrix"><tr><td>{esc(number(a))}</td></tr></table>'
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.ndim > 2:
        return "".join(
            f'<p class="note mono">[{esc(", ".join(map(str, lead)))}, :, :]</p>{matrix(a[lead])}'
            for lead in np.ndindex(a.shape[:-2])
        )
    rows = "".join(
        "<tr>" + "".join(f"<td>{esc(number(v))}</td>" for v in row) + "</tr>" for row in a
    )
    return f'<div class="scroll"><table class="matrix">{rows}</table></div>'
