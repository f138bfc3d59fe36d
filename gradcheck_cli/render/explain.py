"""``gradcheck explain`` as rich renderables: pure functions of an Explanation.

The forward pass first (every layer's output), then the backward pass from the loss
down to the input, each layer with its delta and the arithmetic behind it. Tensors of
at most ``SMALL`` elements per example print as aligned matrices (2-D slices labelled by
channel), larger ones as statistics. Nothing here prints or exits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..engine.explain import (
    Accumulation,
    Detail,
    Expected,
    Explanation,
    Fork,
    LocalDerivative,
    Note,
    Routing,
    Sent,
    Step,
    Sum,
    Uses,
    tensor_stats,
)
from .elements import format_shape
from .mismatches import index_text, number, tolerance_text

#: Tensors with at most this many elements print in full.
SMALL = 64
DEFAULT_PRECISION = 4
INDENT = 4
#: Characters of numbers per printed row before a matrix wraps into column blocks.
ROW_WIDTH = 96

HEAD = "bold"
DIM = "dim"
BAD = "bold red"
GOOD = "green"


def render_explanation(e: Explanation, precision: int = DEFAULT_PRECISION) -> RenderableType:
    """The whole explanation: title, forward pass, backward pass."""
    return Group(*title(e), *forward_section(e, precision), *backward_section(e, precision))


def title(e: Explanation) -> list[RenderableType]:
    head = Text(f"{e.config}", style=HEAD)
    if e.name:
        head.append(f" ({e.name})", style=HEAD)
    if e.batched:
        which = Text(
            f"example {e.example} of a batch of {e.batch_size} "
            "(--example K explains another; parameter gradients below are this "
            "example's share)"
        )
    else:
        which = Text("one example")
    return [head, which]


def forward_section(e: Explanation, precision: int) -> list[RenderableType]:
    parts: list[RenderableType] = [Text(""), Text("Forward pass", style=HEAD)]
    for name, value in e.inputs.items():
        parts.append(_indent(tensor_block(name, value, precision)))
    for step in e.steps:
        parts.append(step_heading(step))
        if step.share is not None and step.params:
            what = ", ".join(step.params)
            parts.append(_indent(Text(f"{what}: {step.share}'s (share: {step.share})", style=DIM)))
        for name, value in step.params.items() if step.share is None else ():
            parts.append(_indent(tensor_block(name, value, precision)))
        parts.append(_indent(tensor_block("output", step.output, precision)))
        parts.extend(_indent(x, 2 * INDENT) for x in _expected(step.expected, "output", e))
    loss = Text(f"loss: {e.loss_type}", style=HEAD)
    loss.append(f"  E = {fmt(e.loss, precision)}", style="")
    parts.append(loss)
    rule = e.loss_rule + (f"; reduction: {e.reduction}" if e.batched else "")
    parts.append(_indent(Text(rule, style=DIM)))
    parts.extend(_indent(x) for x in _expected(e.expected, "loss", e))
    return parts


def backward_section(e: Explanation, precision: int) -> list[RenderableType]:
    parts: list[RenderableType] = [
        Text(""),
        Text("Backward pass", style=HEAD),
        Text("delta = dE/d(layer output); each layer turns its delta into its input's", style=DIM),
    ]
    if e.batched and e.reduction == "mean":
        parts.append(
            Text(f"reduction: mean, so every delta carries the factor 1/N = 1/{e.batch_size}")
        )
    for step in reversed(e.steps):
        parts.append(step_heading(step))
        body: list[RenderableType] = [
            tensor_block(f"delta dE/d({step.name} output)", step.delta, precision)
        ]
        if step.fork is not None:
            body.append(fork_block(step.fork, precision))
        body.extend(_expected(step.expected, "delta", e))
        for detail in step.details:
            body.append(detail_block(detail, precision))
        if step.sent is not None:
            body.append(sent_block(step.sent, precision))
        shared = step.share is not None or bool(step.uses)
        for name, grad in step.grads.items():
            label = f"dE/d{name}, this use" if shared else f"dE/d{name}"
            body.append(tensor_block(label, grad, precision))
        body.extend(uses_block(u, precision) for u in step.uses)
        body.extend(_expected(step.expected, "grad", e))
        parts.extend(_indent(b) for b in body)
    for name, grad in e.input_grads.items():
        parts.append(Text(name, style=HEAD))
        parts.append(_indent(tensor_block(f"dE/d({name})", grad, precision)))
        if name in e.input_forks:
            parts.append(_indent(fork_block(e.input_forks[name], precision)))
        parts.extend(_indent(x) for x in _expected(e.expected, f"{name}.grad", e))
    return parts


def step_heading(step: Step) -> Text:
    """``3. skip (add)  reads r1, c2  (4, 5, 5), (4, 5, 5) -> (4, 5, 5)``; a layer
    that reads just the previous one's output does not say so."""
    text = Text(f"{step.index}. {step.name}", style=HEAD)
    text.append(f" ({step.type})  ")
    if not step.chain:
        text.append(f"reads {', '.join(step.reads)}  ")
    shapes = step.in_shapes or (step.in_shape,)
    text.append(", ".join(format_shape(s) for s in shapes) + f" -> {format_shape(step.out_shape)}")
    if step.share is not None:
        text.append(f"  shares {step.share}'s parameters", style=DIM)
    return text


def fork_block(fork: Fork, precision: int) -> RenderableType:
    """A fork's delta: each reader's contribution, then their sum element by element."""
    acc = fork.sums
    parts: list[RenderableType] = [Text(acc.title, style="italic"), Text(acc.formula)]
    for label, part in fork.parts:
        parts.append(_indent(tensor_block(f"via {label}", part, precision), 2))
    parts.extend(_indent(sum_text(s, precision), 2) for s in acc.sums)
    return Group(*parts)


def sent_block(sent: Sent, precision: int) -> RenderableType:
    """What a multi-input layer's backward sends back to each input."""
    parts: list[RenderableType] = [Text("sends back to each input:", style="italic")]
    for k, (value, part) in enumerate(sent.parts):
        parts.append(_indent(tensor_block(f"to {value} (input {k})", part, precision), 2))
    return Group(*parts)


def uses_block(uses: Uses, precision: int) -> RenderableType:
    """A shared parameter's gradient: the sum over its uses, element by element."""
    acc = uses.sums
    parts: list[RenderableType] = [Text(acc.title, style="italic"), Text(acc.formula)]
    if not acc.sums:
        for label, part in uses.parts:
            parts.append(_indent(tensor_block(f"{label}'s use", part, precision), 2))
    parts.extend(_indent(sum_text(s, precision), 2) for s in acc.sums)
    if acc.entries and not acc.sums:
        parts.append(Text(f"({acc.entries} entries: too many to list term by term)", style=DIM))
    return Group(*parts)


def detail_block(detail: Detail, precision: int) -> RenderableType:
    if isinstance(detail, Accumulation):
        return accumulation_block(detail, precision)
    if isinstance(detail, Routing):
        return routing_block(detail, precision)
    if isinstance(detail, LocalDerivative):
        return Group(
            Text(detail.formula + "; delta of the input = delta * f'(x)"),
            tensor_block("f'(x)", detail.derivative, precision),
        )
    if isinstance(detail, Note):
        return Text(detail.text)
    return Text("")


def accumulation_block(acc: Accumulation, precision: int) -> RenderableType:
    parts: list[RenderableType] = [Text(acc.title, style="italic"), Text(acc.formula)]
    if acc.legend:
        parts.append(Text(acc.legend, style=DIM))
    for s in acc.sums:
        parts.append(_indent(sum_text(s, precision), 2))
    if acc.entries and not acc.sums:
        parts.append(Text(f"({acc.entries} entries: too many to list term by term)", style=DIM))
    return Group(*parts)


def sum_text(s: Sum, precision: int) -> Text:
    """``dE/dw[0,0] = d[0,2]*o[0,2] + ... = 0.0687*0.88 + ... = 0.0447``."""
    text = Text(f"{s.target} = ")
    if not s.terms:
        why = "nothing reads it" if s.count == 0 else "every term is 0"
        text.append(fmt(s.total, precision))
        text.append(f"  ({why})", style=DIM)
    else:
        more = f" + ({s.omitted} more)" if s.omitted else ""
        text.append(" + ".join("*".join(f.label for f in t) for t in s.terms) + more)
        numbers = " + ".join(
            "*".join(_term(f.value, precision, bare=k == i == 0) for i, f in enumerate(t))
            for k, t in enumerate(s.terms)
        )
        text.append(f"\n    = {numbers}{more} = ")
        text.append(fmt(s.total, precision), style=HEAD)
    if not s.agrees:
        text.append(f"  but the layer's backward gave {fmt(s.value, precision)}", style=BAD)
    return text


def routing_block(r: Routing, precision: int) -> RenderableType:
    parts: list[RenderableType] = [Text(r.rule)]
    if r.ties:
        parts.append(Text(r.ties, style=DIM))
    if not r.routes:
        parts.append(Text(f"({r.windows} windows: too many to list)", style=DIM))
        return Group(*parts)
    channels = len({route.channel for route in r.routes}) > 1
    table = Table(box=None, pad_edge=False, show_edge=False, header_style=DIM)
    if channels:
        table.add_column("channel", justify="right")
    for header in ("window", "input rows", "input cols", "max at", "max", "gradient"):
        table.add_column(header, justify="right" if header in ("max", "gradient") else "left")
    for route in r.routes:
        source = (
            f"({route.source[0]},{route.source[1]})"
            if route.source is not None
            else Text("spread/none", style=BAD)
        )
        row = [
            f"({route.window[0]},{route.window[1]})",
            f"{route.rows[0]}-{route.rows[1]}",
            f"{route.cols[0]}-{route.cols[1]}",
            source,
            fmt(route.maximum, precision),
            fmt(route.grad, precision),
        ]
        table.add_row(*([str(route.channel)] if channels else []), *row)
    parts.append(table)
    return Group(*parts)


def _expected(items: list[Expected], kind: str, e: Explanation) -> list[RenderableType]:
    """The ``expect:`` values of one kind (output, delta, grad, loss, input.grad), with
    the tolerance in force and every element that disagrees."""
    chosen = [
        x
        for x in items
        if (kind == "grad" and x.base.endswith(".grad") and not x.base.startswith("input"))
        or (kind.endswith(".grad") and x.base == kind)
        or (kind in ("output", "delta", "loss") and (x.base == kind or x.base.endswith("." + kind)))
    ]
    parts: list[RenderableType] = []
    for x in chosen:
        verdict = Text(f"expect {x.key} (from the config): ")
        verdict.append("agrees" if x.passed else "DISAGREES", style=GOOD if x.passed else BAD)
        verdict.append(f", max |diff| {x.max_abs_error:.2e}, tolerance {x.tolerance}", style=DIM)
        parts.append(verdict)
        parts.append(_indent(tensor_block("expected", x.expected, None), 2))
        for m in x.mismatches:
            line = Text(f"{index_text(m.index)}: expected {number(m.expected)}, ", style=BAD)
            line.append(f"actual {number(m.actual)} (tolerance ±{tolerance_text(m.tolerance)})")
            parts.append(_indent(line, 2))
    return parts


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
    return Group(head, _indent(matrix(a, precision), 2))


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


def _term(v: float, precision: int, bare: bool = False) -> str:
    """A factor inside a sum: trailing zeros dropped, a negative in parentheses unless
    it opens the sum (``bare``)."""
    text = fmt(v, precision)
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return f"({text})" if v < 0 and not bare else text


def _short(v: float) -> str:
    return f"{v:.10g}"


def _indent(renderable: RenderableType, n: int = INDENT) -> Padding:
    return Padding(renderable, (0, 0, 0, n), expand=False)
