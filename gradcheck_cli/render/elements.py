"""The worst elements of a checked tensor: the rows every renderer shows (pure numpy)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..report import TensorCheck

#: Rows of an element table before the "… N more" line.
ELEMENT_ROWS = 10


@dataclass(frozen=True)
class ElementRow:
    """One element of a tensor; numeric, abs_error and rel_error are NaN when unchecked."""

    index: tuple[int, ...]
    analytic: float
    numeric: float
    abs_error: float
    rel_error: float
    checked: bool
    failed: bool
    kink: bool
    bound: float = math.nan  # the numeric value's estimated error
    inconclusive: bool = False
    #: analytic and numeric are both ~0 (TensorCheck.noise_floor_mask)
    floor: bool = False

    @property
    def rel_text(self) -> str:
        """The relative error as tables show it: ``both ~0`` at the noise floor."""
        return "both ~0" if self.floor and self.rel_error > 0 else format_error(self.rel_error)

    @property
    def note(self) -> str:
        """``FAIL``, ``kink``, both, ``inconclusive``, ``not checked`` or empty."""
        if not self.checked:
            return "not checked"
        notes = (("FAIL", self.failed), ("kink", self.kink), ("inconclusive", self.inconclusive))
        return ", ".join(n for n, on in notes if on)


def worst_elements(check: TensorCheck, limit: int | None = ELEMENT_ROWS) -> list[ElementRow]:
    """Elements by absolute error, largest first; NaN (unchecked) last, in index order.

    >>> import numpy as np
    >>> from gradcheck_cli.report import TensorCheck
    >>> a = np.array([1.0, 2.0, 3.0]); n = np.array([1.0, 2.5, np.nan])
    >>> err = np.abs(a - n)
    >>> c = TensorCheck("w", "l", "w", a, n, ~np.isnan(n), err > 0.1, np.zeros(3, bool),
    ...                 err, err / np.maximum(abs(a), abs(n)))
    >>> [r.index for r in worst_elements(c)]
    [(1,), (0,), (2,)]
    """
    shape = check.analytic.shape
    abs_error = np.asarray(check.abs_error, dtype=float).reshape(-1)
    # failures and inconclusive elements first, then by absolute error
    flagged = (np.asarray(check.failed_mask) | np.asarray(check.inconclusive_mask)).reshape(-1)
    key = np.where(np.isnan(abs_error), np.inf, -abs_error)
    order = np.lexsort((key, ~flagged))
    if limit is not None:
        order = order[:limit]
    flat = {
        name: np.asarray(getattr(check, name)).reshape(-1)
        for name in (
            "analytic",
            "numeric",
            "abs_error",
            "rel_error",
            "checked_mask",
            "failed_mask",
            "kink_mask",
            "inconclusive_mask",
            "error_bound",
        )
    }
    floor = np.asarray(check.noise_floor_mask).reshape(-1)
    return [
        ElementRow(
            index=tuple(int(i) for i in np.unravel_index(int(k), shape)),
            analytic=float(flat["analytic"][k]),
            numeric=float(flat["numeric"][k]) if flat["checked_mask"][k] else math.nan,
            abs_error=float(flat["abs_error"][k]),
            rel_error=float(flat["rel_error"][k]),
            checked=bool(flat["checked_mask"][k]),
            failed=bool(flat["failed_mask"][k]),
            kink=bool(flat["kink_mask"][k]),
            bound=float(flat["error_bound"][k]),
            inconclusive=bool(flat["inconclusive_mask"][k]),
            floor=bool(floor[k]),
        )
        for k in order
    ]


def format_index(index: tuple[int, ...]) -> str:
    """``(0, 1)``; a vector element is ``(3,)`` and a scalar ``()``, as numpy writes them."""
    return str(index)


def format_value(v: float) -> str:
    """A gradient value with enough digits to compare two of them by eye."""
    return "—" if math.isnan(v) else f"{v:.8g}"


def format_error(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:.2e}"


def rel_error_text(check: TensorCheck) -> str:
    """A tensor's max relative error as the table shows it: over the elements not at
    the noise floor (``TensorCheck.noise_floor_mask``), or ``both ~0`` when every
    checked element sits there with a relative error; ``—`` when nothing was checked."""
    if not check.checked:
        return "—"
    floor = check.noise_floor_mask
    if check.max_rel_error > 0 and not (check.checked_mask & ~floor).any():
        return "both ~0"
    return format_error(check.max_rel_error_above_floor)


def format_shape(shape: tuple[int, ...]) -> str:
    """``(2, 3)``; a vector's shape is ``(3)`` and a scalar's ``()``."""
    return "(" + ", ".join(str(d) for d in shape) + ")"


def format_array(a: np.ndarray, precision: int, **options: Any) -> str:
    """Expected or actual values as numpy prints them, always as floats (``options``:
    ``np.array2string``'s, e.g. ``suppress_small`` or ``threshold``)."""
    return np.array2string(np.asarray(a, dtype=float), precision=precision, **options)


def elements_text(check: TensorCheck, limit: int = ELEMENT_ROWS) -> str:
    """The worst elements as aligned plain text (JUnit failures, logs).

    Columns index, analytic, numeric, abs err, bound (the numeric value's estimated
    error), rel err, note; ``… N more`` when capped.
    """
    rows = worst_elements(check, limit)
    table = [("index", "analytic", "numeric", "abs err", "bound", "rel err", "note")]
    table += [
        (
            format_index(r.index),
            format_value(r.analytic),
            format_value(r.numeric),
            format_error(r.abs_error),
            format_error(r.bound),
            r.rel_text,
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    more = check.analytic.size - len(rows)
    if more > 0:
        lines.append(more_text(check, more))
    return "\n".join(lines)


def hidden_unchecked(check: TensorCheck, more: int) -> int:
    """How many of the ``more`` elements cut from a table were not checked (they sort
    last, so they are the first to go)."""
    return min(check.analytic.size - check.checked, more)


def more_text(check: TensorCheck, more: int) -> str:
    """``… 26 more``, with how many of those were not checked, if any."""
    unchecked = hidden_unchecked(check, more)
    return f"… {more} more" + (f" ({unchecked} not checked)" if unchecked else "")


@dataclass(frozen=True)
class TaylorRow:
    """One step of a Taylor-remainder test: r(h) = |f(x + h v) - f(x) - h g.v|."""

    step: float
    remainder: float
    floor: float  # rounding floor: remainders below it carry no information
    fitted: bool  # the order was fitted on this point


def taylor_rows(check: TensorCheck) -> list[TaylorRow]:
    """The steps of a ``--method taylor`` check, largest first (empty for other checks)."""
    data = check.extra.get("taylor") or {}
    columns = [data.get(k, []) for k in ("steps", "remainders", "floors", "fitted")]
    rows = zip(*columns, strict=True)
    return [TaylorRow(float(h), float(r), float(f), bool(u)) for h, r, f, u in rows]


def taylor_summary(check: TensorCheck) -> str:
    """``order 1.02 (right: 2, wrong: 1)``, or ``exact to float64`` when nothing is left."""
    if check.taylor_order is None:
        return "remainder at the rounding floor: exact to float64" if check.passed else "no order"
    return f"order {check.taylor_order:.2f} (right: 2, wrong: 1)"


def taylor_text(check: TensorCheck) -> str:
    """The steps as aligned plain text (JUnit failures)."""
    lines = [f"{'step h':>10}  {'remainder':>10}  {'floor':>10}  fit"]
    lines += [
        f"{r.step:10.3e}  {r.remainder:10.3e}  {r.floor:10.3e}  {'*' if r.fitted else ''}"
        for r in taylor_rows(check)
    ]
    return "\n".join(lines)
