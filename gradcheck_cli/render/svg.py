"""Error heatmaps as inline SVG, for the HTML report (``render/html_page.py``).

One grid per 2-D slice (..., H, W) of a failing tensor that holds a failure, as the
terminal heatmap draws it (``render/heatmap.py``): each cell's shade grows with the
relative error on a log scale from 1e-10 to 1, green where the element passed, red
where it failed (outlined too, so that it reads without colour); kinks are marked
``k``, inconclusive elements ``?``, unchecked ones are grey and crossed. A vector is
drawn in rows of ``ROW`` elements. Every cell has a tooltip with its index, analytic
and numeric values and errors.

Pure: strings in, a string out; every text is escaped by the caller's ``esc``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .elements import format_error, format_value
from .heatmap import LOG_RANGE, shade

if TYPE_CHECKING:
    from ..report import TensorCheck

#: Cell side in pixels.
CELL = 14
#: Slices drawn per tensor, and rows and columns of each at most.
MAX_SLICES = 4
MAX_SIDE = 48
#: Elements per row when a vector is drawn.
ROW = 32
PASS_FILLS = ("#eef7ee", "#c8e6c9", "#a5d6a7", "#66bb6a", "#2e7d32")
FAIL_FILLS = ("#fdecea", "#ffcdd2", "#ef9a9a", "#e53935", "#8e0000")
UNCHECKED_FILL = "#e0e0e0"


def heatmaps(check: TensorCheck, esc: Callable[[str], str]) -> list[tuple[str, str]]:
    """(caption, svg) per slice of ``check`` drawn, with a last ``("", note)`` when
    slices were left out; empty when the tensor passed or nothing was checked."""
    if check.passed or not np.any(check.checked_mask):
        return []
    planes = _planes(check)
    failing = [(label, index) for label, index in planes if np.any(check.failed_mask[index])]
    drawn = [(label, _grid(check, index, esc)) for label, index in failing[:MAX_SLICES]]
    if len(failing) > MAX_SLICES:
        drawn.append(("", f"… {len(failing) - MAX_SLICES} more slices with failures"))
    return drawn


def _planes(check: TensorCheck) -> list[tuple[str, tuple]]:
    """(label, index into the tensor) of each 2-D plane: the (..., H, W) slices of a
    tensor of 2 or more axes; a vector in rows of ROW; a scalar as one cell."""
    shape = check.analytic.shape
    name = check.name
    if len(shape) >= 2:
        return [
            (f"{name}[{', '.join([*map(str, lead), ':', ':'])}]", lead)
            for lead in np.ndindex(shape[:-2])
        ]
    return [(name, ())]


def _grid(check: TensorCheck, index: tuple, esc: Callable[[str], str]) -> str:
    arrays = {
        k: np.asarray(getattr(check, k))[index]
        for k in (
            "analytic",
            "numeric",
            "rel_error",
            "abs_error",
            "failed_mask",
            "kink_mask",
            "checked_mask",
            "inconclusive_mask",
        )
    }
    first = arrays["analytic"]
    if first.ndim < 2:  # a vector (or a scalar) in rows of ROW
        size = first.size
        rows, cols = -(-size // ROW), min(size, ROW)
        pad = rows * cols - size

        def grid(a, fill):
            return np.concatenate([np.ravel(a), np.full(pad, fill)]).reshape(rows, cols)

        arrays = {k: grid(v, False if v.dtype == bool else np.nan) for k, v in arrays.items()}

        def index_of(i, j):
            return (i * cols + j,) if first.ndim == 1 else ()

        real = np.arange(rows * cols).reshape(rows, cols) < size
    else:
        rows, cols = arrays["analytic"].shape

        def index_of(i, j):
            return (*index, i, j)

        real = np.ones((rows, cols), bool)
    shown_r, shown_c = min(rows, MAX_SIDE), min(cols, MAX_SIDE)
    titles = shown_r * shown_c <= 1024
    width, height = shown_c * CELL + 28, shown_r * CELL + 18
    parts = [
        f'<svg class="heatmap" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
    ]
    for j in range(0, shown_c, max(1, shown_c // 8)):
        x = 28 + j * CELL + CELL // 2
        parts.append(f'<text class="axis" x="{x}" y="11" text-anchor="middle">{j}</text>')
    for i in range(shown_r):
        y = 18 + i * CELL
        parts.append(f'<text class="axis" x="24" y="{y + 11}" text-anchor="end">{i}</text>')
        for j in range(shown_c):
            if not real[i, j]:
                continue
            cell = {k: v[i, j] for k, v in arrays.items()}
            parts.append(_cell(28 + j * CELL, y, cell, index_of(i, j) if titles else None, esc))
    parts.append("</svg>")
    note = ""
    if (shown_r, shown_c) != (rows, cols):
        note = f" (first {shown_r} x {shown_c} of {rows} x {cols})"
    return "".join(parts) + (f'<p class="note">{esc(note.strip())}</p>' if note else "")


def _cell(x: int, y: int, c: dict, index: tuple | None, esc: Callable[[str], str]) -> str:
    failed, kink, checked = bool(c["failed_mask"]), bool(c["kink_mask"]), bool(c["checked_mask"])
    unsure = bool(c["inconclusive_mask"])
    if not checked:
        fill, cls = UNCHECKED_FILL, "unchecked"
    else:
        fill = (FAIL_FILLS if failed else PASS_FILLS)[shade(float(c["rel_error"]))]
        cls = "failed" if failed else "passed"
    title = ""
    if index is not None:
        status = "not checked" if not checked else ("FAIL" if failed else "pass")
        status += ", kink" if kink else ""
        status += ", inconclusive" if unsure else ""
        title = (
            f"<title>{esc(str(list(index)))} {status}: analytic "
            f"{format_value(float(c['analytic']))}, numeric {format_value(float(c['numeric']))}, "
            f"abs err {format_error(float(c['abs_error']))}, rel err "
            f"{format_error(float(c['rel_error']))}</title>"
        )
    out = f'<g class="{cls}">{title}<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" '
    out += f'fill="{fill}"/>'
    mark = "k" if kink else "?" if unsure and not failed else "×" if not checked else ""
    if mark:
        out += (
            f'<text class="mark" x="{x + CELL // 2}" y="{y + CELL - 3}" '
            f'text-anchor="middle">{mark}</text>'
        )
    return out + "</g>"


def legend() -> str:
    """The scale and the marks, as one small SVG."""
    lo, hi = LOG_RANGE
    steps = len(PASS_FILLS)
    parts = ['<svg class="legend" width="560" height="40">']
    for row, (fills, label) in enumerate(((PASS_FILLS, "passed"), (FAIL_FILLS, "failed"))):
        y = 2 + row * 18
        cls = "failed" if label == "failed" else "passed"
        for k, fill in enumerate(fills):
            parts.append(
                f'<g class="{cls}"><rect x="{8 + k * CELL}" y="{y}" width="{CELL}" '
                f'height="{CELL}" fill="{fill}"/></g>'
            )
        parts.append(f'<text x="{14 + steps * CELL}" y="{y + 11}">{label}</text>')
    decades = f"rel err 1e{math.floor(lo):d} … 1e{math.floor(hi):d}, by decades"
    parts.append(f'<text x="140" y="13">{decades}</text>')
    marks = "k kink · ? inconclusive · × not checked · outlined: failed"
    parts.append(f'<text x="140" y="31">{marks}</text>')
    parts.append("</svg>")
    return "".join(parts)
