"""A report in a few lines, for test failures and CI logs: ``Report.summary()``.

The first line is the verdict, as ``gradcheck run`` ends (``FAIL: 2 of 7 tensors
disagree (input, conv1.weight); blamed layer: mutant in 0.17 s``) with the exit code;
then what went wrong, most telling first: the error that ended the run, the blamed
layers with what is wrong in them, the failing tensors (the blamed layer's own first,
its consequences after), the inconclusive ones, the failing expectations, impure layers;
the config last. Never more than ``MAX_LINES`` lines however large the network: what
does not fit is counted (``… and 12 more``). Pure: returns text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..how_checked import HowChecked
from ..text import printable
from .elements import format_error, format_shape

if TYPE_CHECKING:
    from ..report import Report

#: Lines of a summary at most, the verdict and the config included.
MAX_LINES = 10
#: Characters of one line at most (a diagnosis or an error message is cut with "…").
LINE_CHARS = 200


def render_summary(report: Report) -> str:
    """The verdict line with the exit code, then at most ``MAX_LINES - 2`` items and the
    config (module docstring)."""
    from .table import verdict_line

    head = f"{verdict_line(report).plain} (exit {int(report.exit_code)})"
    items = _items(report)
    room = MAX_LINES - 2
    if len(items) > room:
        items = [*items[: room - 1], f"… and {len(items) - room + 1} more (see the full report)"]
    config = f"config: {report.config}" + (f" ({report.name})" if report.name else "")
    return "\n".join(_line(x) for x in [head, *(f"  - {_one_line(i)}" for i in items), config])


def _items(report: Report) -> list[str]:
    items = []
    if report.error is not None:
        e = report.error
        where = ":".join(str(x) for x in (e.file, e.line) if x not in (None, ""))
        where += f": {e.key}" if e.key else ""
        first = (e.message.splitlines() or [""])[0]
        items.append(f"error ({e.kind}): " + (f"{where}: {first}" if where else first))
    blamed = set(report.blamed_layers())
    for v in report.layers:
        if v.name in blamed:
            what = v.diagnosis or "; ".join(p.message for p in v.problems if p.failure)
            items.append(f"blamed layer {v.name} ({v.type})" + (f": {what}" if what else ""))
    failing = [c for c in report.checks if not c.passed]
    failing.sort(key=lambda c: c.consequence_of is not None)  # own failures first
    for c in failing:
        items.append(_tensor(c))
    for e in report.expectations:
        if not e.passed:
            items.append(f"expectation {e.name}: off by up to {format_error(e.max_abs_error)}")
    for v in report.layers:
        if v.impure and v.name not in blamed:
            items.append(f"impure layer {v.name}: " + "; ".join(p.kind for p in v.problems))
    if report.interrupted and report.error is None:
        items.append(f"interrupted: {len(report.checks)} tensor(s) checked before it")
    return items


def _tensor(c) -> str:
    shape = format_shape(c.shape)
    if not c.failed and c.taylor_passed is None and c.corrupted_by is None:
        text = f"{c.name} {shape}: {c.inconclusive} of {c.checked} elements inconclusive"
    elif c.mode is HowChecked.TAYLOR:
        order = "exact" if c.taylor_order is None else f"{c.taylor_order:.2f}"
        text = f"{c.name} {shape}: Taylor order {order} (right: 2)"
    else:
        text = (
            f"{c.name} {shape}: {c.failed} of {c.checked} elements fail, "
            f"max rel err {format_error(c.max_rel_error)}"
        )
    if c.consequence_of:
        text += f"; consequence of {c.consequence_of}"
    elif c.corrupted_by:
        text += f"; corrupted by layer {c.corrupted_by}"
    elif c.diagnosis:
        text += f"; {c.diagnosis}"
    return text


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text else text


def _line(text: str) -> str:
    text = printable(_one_line(text))
    return text if len(text) <= LINE_CHARS else text[: LINE_CHARS - 1] + "…"
