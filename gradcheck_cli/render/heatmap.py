"""A terminal heatmap of a failing tensor's error, one 2-D slice at a time.

Each element is a two-character cell whose shade grows with the relative error
(``|a - n| / max(|a|, |n|)``, on a log scale from 1e-10 to 1), green where the element
passed and red where it failed, so that the shape of a bug shows at a glance: a border
(padding), one channel, a checkerboard (stride), a single window position (pooling).
Kinks are marked ``k`` (``K`` when ``--strict-kinks`` made them fail), elements that
were not checked stay blank. The shades also read without colour.

Pure: returns a rich renderable, never prints.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Group, RenderableType
from rich.text import Text

if TYPE_CHECKING:
    from ..report import TensorCheck

#: Shades from the smallest to the largest relative error.
SHADES = ("..", "░░", "▒▒", "▓▓", "██")
#: log10 of the relative error mapped onto the shades: [-10, 0].
LOG_RANGE = (-10.0, 0.0)
PASS_STYLE = "green"
FAIL_STYLE = "bold red"
KINK_STYLE = "magenta"
UNCHECKED = "  "


def error_heatmap(
    check: TensorCheck, *, max_slices: int = 4, max_side: int = 32
) -> RenderableType | None:
    """Heatmaps of the 2-D slices of ``check`` that hold failures, or None.

    None when the tensor passed, has fewer than two axes (its element table says it
    all), or no element was checked (Taylor mode). A tensor of shape (..., H, W) is cut
    into its (H, W) slices; only slices with a failure are drawn, at most ``max_slices``
    of them, each cropped to ``max_side`` rows and columns.
    """
    if check.passed or check.analytic.ndim < 2 or not np.any(check.checked_mask):
        return None
    failed = np.asarray(check.failed_mask, dtype=bool)
    leads = [i for i in np.ndindex(failed.shape[:-2]) if failed[i].any()]
    lead_slices = len(leads)
    parts = [_slice(check, i, max_side) for i in leads[:max_slices]]
    if lead_slices > max_slices:
        parts.append(Text(f"… {lead_slices - max_slices} more slices with failures", "dim"))
    parts.append(legend())
    return Group(Text(f"{check.name}: relative error by element", style="bold"), *parts)


def _slice(check: TensorCheck, lead: tuple[int, ...], max_side: int):
    def pick(a) -> np.ndarray:
        return np.asarray(a)[lead]

    rel = pick(check.rel_error).astype(float)
    failed, kink, checked = (
        pick(check.failed_mask),
        pick(check.kink_mask),
        pick(check.checked_mask),
    )
    h, w = rel.shape
    rows, cols = min(h, max_side), min(w, max_side)
    label = f"{check.name}[{', '.join([*map(str, lead), ':', ':'])}]"
    title = Text(label, style="bold")
    if (rows, cols) != (h, w):
        title.append(f"  (first {rows} x {cols} of {h} x {w})", style="dim")
    width = len(str(rows - 1))
    lines = [title]
    for i in range(rows):
        line = Text(f"{i:>{width}} ", style="dim")
        for j in range(cols):
            line.append_text(
                cell(rel[i, j], bool(failed[i, j]), bool(kink[i, j]), bool(checked[i, j]))
            )
        lines.append(line)
    return Group(*lines)


def cell(rel: float, failed: bool, kink: bool, checked: bool) -> Text:
    """One element's two-character cell."""
    if not checked:
        return Text(UNCHECKED, style="dim")
    if kink:
        return Text("K " if failed else "k ", style=FAIL_STYLE if failed else KINK_STYLE)
    return Text(SHADES[shade(rel)], style=FAIL_STYLE if failed else PASS_STYLE)


def shade(rel: float) -> int:
    """Index into SHADES for a relative error (NaN or 0 -> the lightest)."""
    if not math.isfinite(rel) or rel <= 0:
        return 0
    lo, hi = LOG_RANGE
    t = (min(max(math.log10(rel), lo), hi) - lo) / (hi - lo)
    return min(len(SHADES) - 1, int(t * len(SHADES)))


def legend() -> Text:
    text = Text("  rel err 1e-10 ", style="dim")
    for s in SHADES:
        text.append(s, style=FAIL_STYLE)
    text.append(" 1   ", style="dim")
    text.append("red", style=FAIL_STYLE)
    text.append(" failed, ", style="dim")
    text.append("green", style=PASS_STYLE)
    text.append(" passed, ", style="dim")
    text.append("k", style=KINK_STYLE)
    text.append(" kink, blank not checked", style="dim")
    return text
