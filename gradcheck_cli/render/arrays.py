"""Arrays and numbers as ``explain`` prints them: aligned matrices with indices for
small tensors, statistics for large ones, one number format per array so that decimal
points line up. Pure functions returning rich renderables."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.text import Text

from ..engine.explain import tensor_stats
from .elements import format_shape

#: Tensors with at most this many elements print in full.
SMALL = 64
DEFAULT_PRECISION = 4
INDENT = 4
#: Characters of numbers per printed row before a matrix wraps into column blocks.
ROW_WIDTH = 96
DIM = "dim"


def tensor_block(label: str, a: np.ndarray, precision: int | None) -> RenderableType:
    """A labelled tensor: the numbers when small, statistics when large.

    precision None: numbers as written (expectations from the config).
    """
    a = np.asarray(a, dtype=np.float64)
    if a.size > SMALL:
        s = tensor_stats(a)
        p = precision or DEFAULT_PRECISION
        return Text(
            f"{label}: shape {format_shape(s['shape'])}, min {fmt(s['min'], p)}, "
            f"max {fmt(s['max'], p)}, mean {fmt(s['mean'], p)}, norm {fmt(s['norm'], p)}"
        )
    head = Text(f"{label} {format_shape(a.shape)}", style=DIM)
    return Group(head, indent(matrix(a, precision), 2))


def matrix(a: np.ndarray, precision: int | None) -> RenderableType:
    """An array as aligned text: a row (1-D), a matrix with row/column indices (2-D),
    or labelled 2-D slices (channel c for 3-D, [i,j] for 4-D). Wide rows wrap into
    blocks of columns (a long vector into rows labelled by their first index)."""
    a = np.asarray(a, dtype=np.float64)
    formatter = number_format(a, precision)
    if a.ndim == 0:
        return Text(formatter(float(a)).rstrip())
    if a.ndim == 1:
        return _vector(a, formatter)
    if a.ndim == 2:
        return _grid(a, formatter)
    slices: list[RenderableType] = []
    for lead in np.ndindex(a.shape[:-2]):
        label = f"channel {lead[0]}" if a.ndim == 3 else "[" + ",".join(map(str, lead)) + "]"
        slices.append(Text(label, style=DIM))
        slices.append(_grid(a[lead], formatter))
    return Group(*slices)


def _columns(cells: list[str]) -> tuple[int, int]:
    """(cell width, columns per block) so that a block stays within ROW_WIDTH."""
    width = max(len(c) for c in cells)
    return width, max(1, ROW_WIDTH // (width + 2))


def _vector(a: np.ndarray, formatter: Callable[[float], str]) -> Text:
    cells = [formatter(float(v)) for v in a]
    width, per_row = _columns(cells)
    if len(cells) <= per_row:
        return _lines([(None, cells)], [str(j) for j in range(len(cells))], width, gutter=0)
    rows = [(str(i), cells[i : i + per_row]) for i in range(0, len(cells), per_row)]
    return _lines(rows, [f"+{j}" for j in range(per_row)], width, gutter=len(rows[-1][0]))


def _grid(a: np.ndarray, formatter: Callable[[float], str]) -> RenderableType:
    cells = [[formatter(float(v)) for v in row] for row in a]
    width, per_block = _columns([c for row in cells for c in row])
    gutter = len(str(a.shape[0] - 1))
    blocks = []
    for start in range(0, a.shape[1], per_block):
        stop = min(start + per_block, a.shape[1])
        rows = [(str(i), row[start:stop]) for i, row in enumerate(cells)]
        blocks.append(_lines(rows, [str(j) for j in range(start, stop)], width, gutter))
    return blocks[0] if len(blocks) == 1 else Group(*blocks)


def _lines(
    rows: list[tuple[str | None, list[str]]], header: list[str], width: int, gutter: int
) -> Text:
    """Right-aligned cells under a dim header of column labels, with dim row labels."""
    width = max(width, *(len(h) for h in header))
    lead = " " * (gutter + 2) if gutter else ""
    text = Text(lead + "  ".join(h.rjust(width) for h in header).rstrip(), style=DIM)
    for label, row in rows:
        text.append("\n")
        if gutter:
            text.append((label or "").rjust(gutter) + "  ", style=DIM)
        text.append("  ".join(c.rjust(width) for c in row).rstrip())
    return text


def number_format(a: np.ndarray, precision: int | None) -> Callable[[float], str]:
    """One format for a whole array so its decimal points line up.

    Fixed with ``precision`` decimals when the largest magnitude is in
    [10^-(precision-1), 10^6), scientific otherwise; exact zeros print as ``0`` padded to
    line up with the units digit. precision None: shortest round-trip form.
    """
    if precision is None:
        return lambda v: "0" if v == 0 else _short(v)
    finite = np.abs(a[np.isfinite(a)])
    biggest = float(finite.max()) if finite.size else 0.0
    fixed = biggest == 0 or 10.0 ** -(precision - 1) <= biggest < 1e6
    pad = precision + 1 if fixed else precision + 4

    def formatter(v: float) -> str:
        if v == 0:
            return "0" + " " * pad
        return f"{v:.{precision}f}" if fixed else f"{v:.{precision - 1}e}"

    return formatter


def fmt(v: float, precision: int | None = DEFAULT_PRECISION) -> str:
    """One number: fixed with ``precision`` decimals, scientific when very small or large."""
    if precision is None:
        return _short(v)
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return str(v)
    if 10.0 ** -(precision - 1) <= abs(v) < 1e6:
        return f"{v:.{precision}f}"
    return f"{v:.{precision - 1}e}"


def term(v: float, precision: int, bare: bool = False) -> str:
    """A factor inside a sum: trailing zeros dropped, a negative in parentheses unless
    it opens the sum (``bare``)."""
    text = fmt(v, precision)
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return f"({text})" if v < 0 and not bare else text


def _short(v: float) -> str:
    return f"{v:.10g}"


def indent(renderable: RenderableType, n: int = INDENT) -> Padding:
    return Padding(renderable, (0, 0, 0, n), expand=False)
