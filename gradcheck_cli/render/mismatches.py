"""An expectation's disagreeing elements as rows and plain text (every renderer's).

Pure functions of an ExpectationResult: the terminal table shows the first
``MISMATCH_ROWS`` (all of them with ``-v``), JUnit and the JSON report every one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..report import ExpectationResult, Mismatch

#: Disagreeing elements an expectation lists in the terminal before "… N more" (-v: all).
MISMATCH_ROWS = 5


def index_text(index: tuple[int, ...]) -> str:
    """An element's index as an expectation key writes it: ``[0, 0, 1, 1]``; the loss
    (a single number) has none: ``—``."""
    return f"[{', '.join(str(i) for i in index)}]" if index else "—"


def number(v: float) -> str:
    """A value with enough digits to see how it differs from a hand-written one."""
    return f"{v:.10g}"


def mismatch_cells(m: Mismatch) -> tuple[str, str, str, str, str]:
    """index, expected, actual, |diff|, tolerance of one disagreeing element."""
    return (
        index_text(m.index),
        number(m.expected),
        number(m.actual),
        f"{abs(m.actual - m.expected):.3g}",
        f"±{tolerance_text(m.tolerance)}",
    )


def tolerance_text(v: float) -> str:
    """``0.00005``, ``0.5``, ``1e-09``: plain decimals where they are short."""
    if v == 0 or not 1e-9 <= abs(v) < 1e6:
        return f"{v:.3g}"
    return f"{v:.12f}".rstrip("0").rstrip(".")


def mismatch_summary(e: ExpectationResult, rule: bool = False) -> str:
    """``2 of 4 elements disagree``, with ``rule``: ``(tolerance ±0.00005, from 4
    written decimals)`` after it."""
    size = max(int(e.expected.size), 1)
    count = len(e.mismatches)
    what = "element disagrees" if size == 1 else "elements disagree"
    text = e.tolerance.get("description") if rule else None
    return f"{count} of {size} {what}" + (f" (tolerance {text})" if text else "")


def mismatches_text(e: ExpectationResult, limit: int | None = None) -> str:
    """The disagreeing elements as aligned plain text, ``… N more`` past ``limit``."""
    shown = e.mismatches if limit is None else e.mismatches[:limit]
    rows = [("index", "expected", "actual", "|diff|", "tolerance")]
    rows += [mismatch_cells(m) for m in shown]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    more = len(e.mismatches) - len(shown)
    if more > 0:
        lines.append(f"… {more} more")
    return "\n".join(lines)


def first_mismatches(e: ExpectationResult, count: int = 3) -> str:
    """One line: ``[0, 1] expected 0.1116, actual 0.3116; … (3 more)``."""
    parts = [
        f"{index_text(m.index)} expected {number(m.expected)}, actual {number(m.actual)}"
        for m in e.mismatches[:count]
    ]
    more = len(e.mismatches) - count
    return "; ".join(parts) + (f"; … ({more} more)" if more > 0 else "")
