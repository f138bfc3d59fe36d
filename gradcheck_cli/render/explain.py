"""``gradcheck explain`` as rich renderables: pure functions of an Explanation.

The forward pass first (every layer's output), then the backward pass from the loss
down to the input, each layer with its delta and the arithmetic behind it. Tensors of
at most ``SMALL`` elements per example print as aligned matrices (2-D slices labelled by
channel), larger ones as statistics. Nothing here prints or exits.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..engine.explain import (
    Accumulation,
    Detail,
    Expected,
    Explanation,
    Fork,
    FullConvolution,
    LocalDerivative,
    LossDerivation,
    Note,
    Routing,
    Sent,
    Step,
    Uses,
)
from .arrays import (
    DEFAULT_PRECISION,
    DIM,
    INDENT,
    SMALL,
    fmt,
    indent,
    matrix,
    number_format,
    tensor_block,
)
from .derivations import (
    accumulation_block,
    descent_section,
    full_convolution_block,
    loss_derivation_block,
    sum_text,
    too_many,
)
from .elements import format_shape
from .mismatches import index_text, number, tolerance_text

__all__ = [
    "DEFAULT_PRECISION",
    "SMALL",
    "fmt",
    "matrix",
    "number_format",
    "render_explanation",
    "tensor_block",
]

_indent = indent

HEAD = "bold"
BAD = "bold red"
GOOD = "green"


def render_explanation(e: Explanation, precision: int = DEFAULT_PRECISION) -> RenderableType:
    """The whole explanation: title (and warnings), forward pass, backward pass, and
    with ``--lr`` one gradient-descent step."""
    parts = [*title(e), *forward_section(e, precision), *backward_section(e, precision)]
    if e.descent is not None:
        parts += descent_section(e.descent, precision)
    return Group(*parts)


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
    warned = [Text(f"warning: {w}", style="yellow") for w in e.warnings]
    return [head, which, *warned]


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
    if e.loss_delta is not None:
        parts.append(Text(f"loss ({e.loss_type})", style=HEAD))
        entry = entry_name(e.loss_delta.key, e)
        parts.append(_indent(loss_derivation_block(e.loss_delta, precision, entry)))
    for step in reversed(e.steps):
        parts.append(step_heading(step))
        body: list[RenderableType] = [
            tensor_block(f"delta dE/d({step.name} output)", step.delta, precision)
        ]
        if step.fork is not None:
            body.append(fork_block(step.fork, precision))
        body.extend(_expected(step.expected, "delta", e))
        for detail in step.details:
            body.append(detail_block(detail, precision, e))
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
        parts.append(too_many(acc.entries, acc.key))
    return Group(*parts)


def entry_name(key: str, e: Explanation) -> str:
    """A tensor key as ``--entry`` writes it: ``input``, ``conv1.weight``, ``pool1.delta``."""
    return key if key in e.inputs or "." in key else f"{key}.delta"


def detail_block(detail: Detail, precision: int, e: Explanation | None = None) -> RenderableType:
    def entry(key: str) -> str:
        return entry_name(key, e) if e is not None and key else ""

    if isinstance(detail, Accumulation):
        return accumulation_block(detail, precision, entry(detail.key))
    if isinstance(detail, FullConvolution):
        return full_convolution_block(detail, precision, entry(detail.sums.key))
    if isinstance(detail, LossDerivation):
        return loss_derivation_block(detail, precision, entry(detail.key))
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
