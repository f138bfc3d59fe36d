"""The human-readable report: rich renderables built from a Report, never printed here.

``render_report`` composes the pieces for a verbosity level; every piece is also usable
on its own:

>>> from rich.console import Console
>>> from gradcheck_cli.report import Report
>>> console = Console(color_system=None, width=100)
>>> console.print(render_report(Report(config="x.yaml", loss=0.0, settings={}), Verbosity.QUIET))
PASS: 0 tensors, 0 elements checked, 0 failed (0 kinks) in 0.00 s
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..how_checked import HowChecked
from .elements import (
    ELEMENT_ROWS,
    format_error,
    format_index,
    format_shape,
    format_value,
    hidden_unchecked,
    rel_error_text,
    taylor_rows,
    taylor_summary,
    worst_elements,
)
from .fit import Fitted
from .heatmap import error_heatmap
from .mismatches import MISMATCH_ROWS, mismatch_cells, mismatch_summary

if TYPE_CHECKING:
    from ..report import ExpectationResult, LayerVerdict, Report, TensorCheck

PASS_STYLE = "bold green"
FAIL_STYLE = "bold red"
UNSURE_STYLE = "bold yellow"
CONSEQUENCE_STYLE = "yellow"

#: Names listed in the verdict line before "…".
VERDICT_NAMES = 5

_MODE_NOTES = {
    HowChecked.SAMPLE: "sampled",
    HowChecked.FAST: "fast",
    HowChecked.BUDGET: "time budget",
}
#: The verdict line's first word for a run that ended with an error (after the part of
#: the check that was done).
_ERROR_WORDS = {"timeout": "TIMED OUT", "crashed": "CRASHED", "budget": "OUT OF TIME"}


class Verbosity(Enum):
    QUIET = "quiet"  # the verdict line only
    NORMAL = "normal"  # summary, failing tensors' elements, layers, expectations, verdict
    VERBOSE = "verbose"  # element tables for every tensor


def render_report(report: Report, verbosity: Verbosity = Verbosity.NORMAL) -> RenderableType:
    """Everything a run prints: ``report_body`` followed by the verdict line."""
    return Group(*report_body(report, verbosity), verdict_line(report))


def report_body(report: Report, verbosity: Verbosity = Verbosity.NORMAL) -> list[RenderableType]:
    """What comes before the verdict line, in order: settings, summary, element tables,
    layer verdicts, expectations, warnings (nothing when quiet)."""
    if verbosity is Verbosity.QUIET:
        return []
    parts: list[RenderableType] = [settings_line(report), fitted_summary(report)]
    for check in report.checks:
        # a tensor failed only by a purity verdict has no element to show: its diagnosis says
        numeric = check.corrupted_by is None or check.failed > 0
        # nor has one merely stopped part way: its row says how far it got
        numeric = numeric and not (check.interrupted and not check.failed)
        if verbosity is Verbosity.VERBOSE or (not check.passed and numeric):
            table = taylor_table(check) if check.mode is HowChecked.TAYLOR else element_table(check)
            parts.append(Fitted(table))
            heatmap = error_heatmap(check)  # None unless failing, 2-D or more, and checked
            if heatmap is not None:
                parts.append(heatmap)
    if any(not v.passed for v in report.layers):  # only where a layer is to blame
        parts.append(fitted_layers(report))
    if report.expectations:
        parts.append(Fitted(expectation_table(report)))
        parts.extend(
            Fitted(mismatch_table(e, verbosity)) for e in report.expectations if e.mismatches
        )
    parts.extend(Text(f"warning: {w}", style="yellow") for w in report.warnings)
    return parts


def settings_line(report: Report) -> Text:
    """Which config, its loss, and the settings in force (a flag is named when on)::

    configs/a.yaml (title): loss 0.0456
    eps 1e-06 · atol 1e-07 · rtol 1e-05 · method central · mode full · seed 0
    """
    text = Text(report.config, style="bold")
    if report.name:
        text.append(f" ({report.name})", style="bold")
    text.append(f": loss {report.loss:.8g}")
    shown = []
    for key, value in report.settings.items():
        if value is True:
            shown.append(key)
        elif value not in (None, False, (), []):
            shown.append(f"{key} {_plain(value)}")
    if shown:
        text.append("\n" + " · ".join(shown), style="dim")
    return text


def fitted_summary(report: Report) -> Fitted:
    """``summary_table`` laid out for the page: where its status and diagnosis columns
    would wrap word by word, the table without them and the notes under it
    (``summary_notes``)."""

    def narrow() -> list[RenderableType]:
        return [Fitted(summary_table(report, notes_below=True)), *summary_notes(report)]

    return Fitted(summary_table(report), narrow=narrow, prose=("status", "diagnosis"))


def summary_table(report: Report, *, notes_below: bool = False) -> Table:
    """One row per checked tensor, then one per skipped tensor. ``notes_below``: the
    status without "consequence of" and no diagnosis column (``summary_notes`` says them
    under the table)."""
    diagnosed = any(c.diagnosis for c in report.checks) and not notes_below
    taylor = any(c.mode is HowChecked.TAYLOR for c in report.checks)
    table = Table(title="Gradients", title_justify="left", show_edge=False)
    table.add_column("tensor", no_wrap=True)
    table.add_column("shape", no_wrap=True)
    table.add_column("checked", justify="right")
    table.add_column("kinks", justify="right", no_wrap=True)
    unresolved = any(c.inconclusive for c in report.checks)
    if unresolved:
        table.add_column("inconclusive", justify="right", no_wrap=True)
    table.add_column("max abs err", justify="right", no_wrap=True)
    table.add_column("max rel err", justify="right", no_wrap=True)
    if taylor:
        table.add_column("order", justify="right", no_wrap=True)
    table.add_column("status")
    if diagnosed:
        table.add_column("diagnosis")
    for c in report.checks:
        checked = c.checked > 0
        row: list[str | Text] = [
            c.name,
            format_shape(c.shape),
            checked_cell(c),
            str(c.kinks),
            *([str(c.inconclusive)] if unresolved else []),
            format_error(c.max_abs_error) if checked else "—",
            rel_error_text(c),
        ]
        if taylor:
            row.append(_order(c))
        row.append(status_cell(c, consequence=not notes_below))
        if diagnosed:
            row.append(c.diagnosis or "")
        table.add_row(*row)
    blanks = [""] * (4 + taylor + unresolved)
    for name in report.skipped:
        table.add_row(name, "", *blanks, Text("skipped", style="dim"), *[""] * diagnosed)
    return table


def summary_notes(report: Report) -> list[Text]:
    """One line per failing tensor that has a consequence or a diagnosis to tell, for
    under a summary table that left them out: ``input: consequence of conv1; ...``."""
    notes = []
    for c in report.checks:
        said = [f"consequence of {c.consequence_of}"] if c.consequence_of else []
        said += [c.diagnosis] if c.diagnosis else []
        if said and not c.passed:
            note = Text(f"{c.name}: ", style="bold")
            note.append("; ".join(said), style=CONSEQUENCE_STYLE if c.consequence_of else "")
            notes.append(note)
    return notes


def _order(c: TensorCheck) -> str:
    if c.mode is not HowChecked.TAYLOR:
        return ""
    return "exact" if c.taylor_order is None else f"{c.taylor_order:.2f}"


def checked_cell(c: TensorCheck) -> str:
    """``36``, or ``10 of 36 (sampled)`` when not every element was checked."""
    size = int(np.prod(c.shape, dtype=np.int64))
    if c.mode is HowChecked.TAYLOR:
        return "1 direction (taylor)"
    if c.checked == size:
        return f"{size} (localised)" if c.localised else str(size)
    note = _MODE_NOTES.get(c.mode, c.mode)
    return f"{c.checked} of {size}" + (f" ({note})" if note else "")


def status_cell(c: TensorCheck, *, consequence: bool = True) -> Text:
    """``PASS``, ``INCONCLUSIVE``, ``FAIL``, or ``FAIL (consequence of conv1)`` (unless
    ``consequence`` is False: then it is said under the table)."""
    if c.passed:
        return Text("PASS", style=PASS_STYLE)
    if c.unreached:  # the time budget ran out first: never PASS
        return Text("NOT CHECKED", style=UNSURE_STYLE)
    if c.interrupted and not c.failed:  # never PASS: only part of it was checked
        return Text("INTERRUPTED", style=UNSURE_STYLE)
    if not c.failed and c.taylor_passed is None and c.corrupted_by is None:
        return Text("INCONCLUSIVE", style=UNSURE_STYLE)
    if c.consequence_of and consequence:
        return Text(f"FAIL (consequence of {c.consequence_of})", style=CONSEQUENCE_STYLE)
    return Text("FAIL", style=FAIL_STYLE)


def element_table(check: TensorCheck, limit: int = ELEMENT_ROWS) -> Table:
    """The worst elements of one tensor, capped at ``limit`` rows plus ``… N more``."""
    if check.passed:
        verdict = "PASS"
    elif check.failed:
        verdict = f"{check.failed} of {check.checked} elements FAIL"
    elif check.interrupted:
        verdict = f"INTERRUPTED after {check.checked} of {check.analytic.size} elements"
    else:
        verdict = f"{check.inconclusive} of {check.checked} elements INCONCLUSIVE"
    table = Table(
        title=f"{check.name} {format_shape(check.shape)}: {verdict}",
        title_justify="left",
        show_edge=False,
    )
    for header in ("index", "analytic", "numeric", "abs err", "bound", "rel err"):
        table.add_column(header, justify="left" if header == "index" else "right", no_wrap=True)
    table.add_column("note")
    rows = worst_elements(check, limit)
    for r in rows:
        note_style = (
            FAIL_STYLE
            if r.failed
            else UNSURE_STYLE
            if r.inconclusive
            else ("dim" if not r.checked else "")
        )
        table.add_row(
            format_index(r.index),
            format_value(r.analytic),
            format_value(r.numeric),
            format_error(r.abs_error),
            format_error(r.bound),
            r.rel_text,
            Text(r.note, style=note_style),
        )
    more = check.analytic.size - len(rows)
    if more > 0:
        unchecked = hidden_unchecked(check, more)
        note = f"{unchecked} not checked" if unchecked else ""
        blank = [""] * 5
        table.add_row(Text(f"… {more} more", style="dim"), *blank, Text(note, style="dim"))
    return table


def taylor_table(check: TensorCheck) -> Table:
    """A ``--method taylor`` check: the remainder r(h) at each step, which shrinks like h^2
    when the gradient is right and like h when it is wrong."""
    verdict = "PASS" if check.passed else "FAIL"
    table = Table(
        title=f"{check.name} {format_shape(check.shape)}: Taylor test {verdict}",
        title_justify="left",
        caption=taylor_summary(check),
        caption_justify="left",
        show_edge=False,
    )
    for header in ("step h", "remainder r(h)", "rounding floor", "fitted"):
        table.add_column(header, justify="right", no_wrap=True)
    for r in taylor_rows(check):
        below = r.remainder <= r.floor
        table.add_row(
            f"{r.step:.3e}",
            Text(f"{r.remainder:.3e}", style="dim" if below else ""),
            f"{r.floor:.3e}",
            "*" if r.fitted else "",
        )
    return table


def fitted_layers(report: Report) -> Fitted:
    """``layer_table`` laid out for the page: where its "what is wrong" column would wrap
    word by word, the table without it and ``layer_notes`` under it."""

    def narrow() -> list[RenderableType]:
        return [Fitted(layer_table(report, notes_below=True)), *layer_notes(report)]

    return Fitted(layer_table(report), narrow=narrow, prose=("what is wrong",))


def layer_table(report: Report, *, notes_below: bool = False) -> Table:
    """Each layer's own backward checked in isolation: which one is wrong.
    ``notes_below``: no "what is wrong" column (``layer_notes`` says it)."""
    table = Table(title="Layers (own backward)", title_justify="left", show_edge=False)
    diagnosed = any(v.diagnosis for v in report.layers) and not notes_below
    headers = ["layer", "type", "own backward", "max abs err", "max rel err", "kinks"]
    for header in headers + (["what is wrong"] if diagnosed else []):
        right = header.startswith("max") or header == "kinks"
        table.add_column(
            header, justify="right" if right else "left", no_wrap=header != "what is wrong"
        )
    for v in report.layers:
        row = [
            v.name,
            v.type,
            layer_status(v),
            format_error(v.max_abs_error),
            format_error(v.max_rel_error),
            str(v.kinks),
        ]
        table.add_row(*row, *([v.diagnosis or ""] if diagnosed else []))
    return table


def layer_notes(report: Report) -> list[Text]:
    """``conv1: dx is wrong ...``, one line per layer with a diagnosis."""
    notes = []
    for v in report.layers:
        if v.diagnosis:
            notes.append(Text.assemble((f"{v.name}: ", "bold"), v.diagnosis))
    return notes


def layer_status(v: LayerVerdict) -> Text:
    """``ok``; ``WRONG`` when its own backward disagrees in isolation; ``impure`` when
    only a purity problem fails it (its diagnosis says which)."""
    if v.passed:
        return Text("ok", style=PASS_STYLE)
    if v.impure and v.own_backward_ok:
        return Text("impure", style=FAIL_STYLE)
    if not v.wrong:  # its isolated check met elements no step resolved
        return Text("inconclusive", style=UNSURE_STYLE)
    return Text("WRONG", style=FAIL_STYLE)


def expectation_table(report: Report) -> Table:
    """Hand-derived values against the engine's, one row each, with the tolerance in
    force (``±0.00005, from 4 written decimals``)."""
    table = Table(title="Expectations", title_justify="left", show_edge=False)
    table.add_column("expectation", no_wrap=True)
    table.add_column("tolerance")
    table.add_column("max abs err", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for e in report.expectations:
        status = Text("PASS", style=PASS_STYLE) if e.passed else Text("FAIL", style=FAIL_STYLE)
        rule = e.tolerance.get("description", "")
        table.add_row(e.name, rule, format_error(e.max_abs_error), status)
    return table


def mismatch_table(e: ExpectationResult, verbosity: Verbosity = Verbosity.NORMAL) -> Table:
    """Every disagreeing element of a failing expectation with its index (in the
    tensor's coordinates), expected and actual value and tolerance; the first
    MISMATCH_ROWS unless verbose, then ``… N more (-v lists every one)``."""
    table = Table(
        title=f"{e.name}: {mismatch_summary(e)}",
        title_justify="left",
        show_edge=False,
    )
    for header in ("index", "expected", "actual", "|diff|", "tolerance"):
        table.add_column(header, justify="left" if header == "index" else "right")
    limit = None if verbosity is Verbosity.VERBOSE else MISMATCH_ROWS
    shown = e.mismatches if limit is None else e.mismatches[:limit]
    for m in shown:
        table.add_row(*mismatch_cells(m))
    more = len(e.mismatches) - len(shown)
    if more > 0:
        table.add_row(Text(f"… {more} more (-v lists every one)", style="dim"), *[""] * 4)
    return table


def verdict_line(report: Report) -> Text:
    """One line: ``PASS: 5 tensors, 36 elements checked, 0 failed (0 kinks) in 0.01 s``
    or ``FAIL: 2 of 5 tensors disagree (conv1.weight, input); blamed layer: conv1``; a run
    that was stopped or ended by an error says so first (``INTERRUPTED (partial): ...``)
    and never says PASS."""
    checks, exps = report.checks, report.expectations
    prefix = "INTERRUPTED (partial) " if report.interrupted else ""
    if report.error is not None:
        prefix = f"{_ERROR_WORDS.get(report.error.kind, 'ERROR')} (partial) "
    if not report.verdict_code:
        # a run that did not end by itself never reads PASS, whatever it checked
        text = (
            Text(prefix.strip(), style=UNSURE_STYLE) if prefix else Text("PASS", style=PASS_STYLE)
        )
        elements = sum(c.checked for c in checks)
        kinks = sum(c.kinks for c in checks)
        stopped = [c for c in checks if c.interrupted]
        taylor = sum(c.mode is HowChecked.TAYLOR for c in checks)
        directional = sum(c.mode is HowChecked.FAST and c.checked == 0 for c in checks)
        if checks and taylor == len(checks):
            text.append(f": {_plural(len(checks), 'tensor')} (Taylor test), 0 failed")
        elif checks and directional == len(checks):
            text.append(
                f": {_plural(len(checks), 'tensor')} "
                + ("agrees" if len(checks) == 1 else "agree")
                + " along random directions "
                "(--fast: no element checked one by one)"
            )
        else:
            text.append(
                f": {_plural(len(checks), 'tensor')}, {elements} elements checked"
                + "".join(
                    f" ({c.name} stopped at {c.checked} of {c.analytic.size})" for c in stopped
                )
                + (f", {taylor} by Taylor test" if taylor else "")
                + f", 0 failed ({_plural(kinks, 'kink')})"
            )
        if exps:
            text.append(f", {_plural(len(exps), 'expectation')} met")
    elif not report.failed:
        unsure = [c for c in checks if c.inconclusive]
        elements = sum(c.inconclusive for c in unsure)
        text = Text(prefix + "INCONCLUSIVE", style=UNSURE_STYLE)
        clauses = []
        if unsure:
            clauses.append(
                f"{_plural(elements, 'element')} of {len(unsure)} of {len(checks)} tensors "
                f"could not be resolved ({_names([c.name for c in unsure])})"
            )
        own = report.disagreeing_layers()
        if own:  # float32: the analytic side's rounding may be all of it
            clauses.append(
                f"{_layers_disagree(own)} by what float32 rounding may explain "
                "(re-run with dtype: float64)"
            )
        text.append(": " + ", ".join(clauses) + ", 0 failed")
    else:
        text = Text(prefix + "FAIL", style=FAIL_STYLE)
        clauses = []
        for what, items in (("tensors", checks), ("expectations", exps)):
            # a tensor merely stopped part way does not disagree
            bad = [x.name for x in items if not x.passed and not _only_stopped(x)]
            if bad:
                clauses.append(f"{len(bad)} of {len(items)} {what} disagree ({_names(bad)})")
        impure = [v.name for v in report.layers if v.impure]
        own = report.disagreeing_layers()
        if not clauses:  # no selected tensor carries what they corrupt or send wrong
            if impure:
                clauses.append(f"{_plural(len(impure), 'impure layer')} ({_names(impure)})")
            if own:
                clauses.append(_layers_disagree(own))
        text.append(": " + ", ".join(clauses))
        blamed = report.blamed_layers()
        if blamed:
            label = "blamed layer" if len(blamed) == 1 else "blamed layers"
            text.append(f"; {label}: {', '.join(blamed)}")
    text.append(f" in {report.total_s:.2f} s")
    return text


def _layers_disagree(names: list[str]) -> str:
    """``1 layer's own backward disagrees in isolation (fc2)``."""
    if len(names) == 1:
        return f"1 layer's own backward disagrees in isolation ({names[0]})"
    return f"{len(names)} layers' own backwards disagree in isolation ({_names(names)})"


def _only_stopped(x: TensorCheck | ExpectationResult) -> bool:
    return getattr(x, "interrupted", False) and not getattr(x, "failed", 0)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _names(names: list[str]) -> str:
    shown = names[:VERDICT_NAMES]
    return ", ".join(shown) + (", …" if len(names) > len(shown) else "")


def _plain(v: object) -> str:
    """Settings values as a user would type them (enums by value, floats short)."""
    v = getattr(v, "value", v)
    if isinstance(v, list | tuple):
        return ", ".join(map(_plain, v))
    return f"{v:g}" if isinstance(v, float) else str(v)
