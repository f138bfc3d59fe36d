"""A terminal heatmap of a failing tensor's error, one 2-D slice at a time.

Each element is a two-character cell whose shade grows with the relative error
(``|a - n| / max(|a|, |n|)``, on a log scale from 1e-10 to 1), green where the element
passed and red where it failed, so that the shape of a bug shows at a glance: a border
(padding), one channel, a checkerboard (stride), a single window position (pooling).
Kinks are marked ``k`` (``K`` when ``--strict-kinks`` made them fail), inconclusive
elements ``?``, elements that were not checked stay blank.

Plain output (no colour, ``fit.is_plain``) draws ASCII shades (``PLAIN_SHADES``) and
marks a failed element with ``!`` after its shade, so that passed and failed read apart
without colour; its legend says so. A slice is cropped to the width it is printed at.

Pure: returns a rich renderable, never prints.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.text import Text

from .fit import is_plain

if TYPE_CHECKING:
    from ..report import TensorCheck

#: Shades from the smallest to the largest relative error.
SHADES = ("..", "░░", "▒▒", "▓▓", "██")
#: The same in plain output: one ASCII character, then a space (passed) or ``FAILED``.
PLAIN_SHADES = (".", "-", "+", "*", "#")
FAILED = "!"
#: log10 of the relative error mapped onto the shades: [-10, 0].
LOG_RANGE = (-10.0, 0.0)
PASS_STYLE = "green"
FAIL_STYLE = "bold red"
KINK_STYLE = "magenta"
UNSURE_STYLE = "yellow"
UNCHECKED = "  "


def error_heatmap(
    check: TensorCheck, *, max_slices: int = 4, max_side: int = 32
) -> RenderableType | None:
    """Heatmaps of the 2-D slices of ``check`` that hold failures, or None.

    None when the tensor passed, has fewer than two axes (its element table says it
    all), or no element was checked (Taylor mode). A tensor of shape (..., H, W) is cut
    into its (H, W) slices; only slices with a failure are drawn, at most ``max_slices``
    of them, each cropped to ``max_side`` rows and columns (fewer columns when the page
    is narrower).
    """
    if check.passed or check.analytic.ndim < 2 or not np.any(check.checked_mask):
        return None
    return ErrorHeatmap(check, max_slices=max_slices, max_side=max_side)


class ErrorHeatmap:
    """``error_heatmap``'s renderable: drawn for the console and width it is printed at."""

    def __init__(self, check: TensorCheck, *, max_slices: int, max_side: int):
        self.check = check
        self.max_slices = max_slices
        self.max_side = max_side

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        check, plain = self.check, is_plain(console, options)
        failed = np.asarray(check.failed_mask, dtype=bool)
        leads = [i for i in np.ndindex(failed.shape[:-2]) if failed[i].any()]
        yield Text(f"{check.name}: relative error by element", style="bold")
        for lead in leads[: self.max_slices]:
            yield _slice(check, lead, self.max_side, options.max_width, plain)
        if len(leads) > self.max_slices:
            yield Text(f"… {len(leads) - self.max_slices} more slices with failures", "dim")
        yield legend(plain=plain)


def _slice(check: TensorCheck, lead: tuple[int, ...], max_side: int, width: int, plain: bool):
    def pick(a) -> np.ndarray:
        return np.asarray(a)[lead]

    rel = pick(check.rel_error).astype(float)
    failed, kink, checked, unsure = (
        pick(check.failed_mask),
        pick(check.kink_mask),
        pick(check.checked_mask),
        pick(check.inconclusive_mask),
    )
    h, w = rel.shape
    rows = min(h, max_side)
    label_width = len(str(rows - 1))
    cols = max(1, min(w, max_side, (width - label_width - 1) // 2))
    label = f"{check.name}[{', '.join([*map(str, lead), ':', ':'])}]"
    title = Text(label, style="bold")
    if (rows, cols) != (h, w):
        title.append(f"  (first {rows} x {cols} of {h} x {w})", style="dim")
    lines = [title]
    for i in range(rows):
        line = Text(f"{i:>{label_width}} ", style="dim")
        for j in range(cols):
            flags = (bool(failed[i, j]), bool(kink[i, j]), bool(checked[i, j]))
            line.append_text(cell(rel[i, j], *flags, plain=plain, inconclusive=unsure[i, j]))
        lines.append(line)
    return Group(*lines)


def cell(
    rel: float,
    failed: bool,
    kink: bool,
    checked: bool,
    *,
    plain: bool = False,
    inconclusive: bool = False,
) -> Text:
    """One element's two-character cell."""
    if not checked:
        return Text(UNCHECKED, style="dim")
    if kink:
        mark = ("K" + (FAILED if plain else " ")) if failed else "k "
        return Text(mark, style=FAIL_STYLE if failed else KINK_STYLE)
    if inconclusive and not failed:
        return Text("? ", style=UNSURE_STYLE)
    if plain:
        return Text(PLAIN_SHADES[shade(rel)] + (FAILED if failed else " "))
    return Text(SHADES[shade(rel)], style=FAIL_STYLE if failed else PASS_STYLE)


def shade(rel: float) -> int:
    """Index into SHADES for a relative error (NaN or 0 -> the lightest)."""
    if not math.isfinite(rel) or rel <= 0:
        return 0
    lo, hi = LOG_RANGE
    t = (min(max(math.log10(rel), lo), hi) - lo) / (hi - lo)
    return min(len(SHADES) - 1, int(t * len(SHADES)))


def legend(*, plain: bool = False) -> Text:
    """What the cells mean; in plain output without a word about colour."""
    text = Text("  rel err 1e-10 ", style="dim")
    if plain:
        text.append(" ".join(PLAIN_SHADES))
        text.append(f" 1;  x{FAILED} failed, x passed, k kink (K{FAILED} failed),", style="dim")
        text.append(" ? inconclusive, blank not checked", style="dim")
        return text
    for s in SHADES:
        text.append(s, style=FAIL_STYLE)
    text.append(" 1   ", style="dim")
    text.append("red", style=FAIL_STYLE)
    text.append(" failed, ", style="dim")
    text.append("green", style=PASS_STYLE)
    text.append(" passed, ", style="dim")
    text.append("k", style=KINK_STYLE)
    text.append(" kink, ", style="dim")
    text.append("?", style=UNSURE_STYLE)
    text.append(" inconclusive, blank not checked", style="dim")
    return text
