"""The parts of ``gradcheck explain`` that write a derivation out: sums of products, a
loss's delta by its rule, the full-convolution identity and the ``--lr`` step. Pure
functions of the engine's data (engine/sums.py, engine/explain_conv.py,
engine/explain_loss.py), returning rich renderables."""

from __future__ import annotations

import re

import numpy as np
from rich.console import Group, RenderableType
from rich.text import Text

from ..engine.explain_conv import FullConvolution
from ..engine.explain_loss import DeltaEntry, DescentStep, LossDerivation
from ..engine.sums import Accumulation, Sum, index_label
from .arrays import DIM, fmt, indent, tensor_block, term

HEAD = "bold"
BAD = "bold red"
GOOD = "green"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def sum_text(s: Sum, precision: int) -> Text:
    """``dE/dw[0,0] = d[0,2]*o[0,2] + ... (+ 12 terms with delta 0)``, then the numbers.

    Every term of the sum is accounted for: those listed, ``(+ N more)`` nonzero ones
    past the limit, and the zero ones named by the factor that makes them 0."""
    text = Text(f"{s.target} = ")
    zeros = zero_terms(s)
    if not s.terms:
        why = "nothing reads it" if s.count == 0 else "every term is 0"
        text.append(fmt(s.total, precision))
        text.append(f"  ({why}{': ' + zeros.removeprefix(' + ') if zeros else ''})", style=DIM)
    else:
        more = f" + ({s.omitted} more)" if s.omitted else ""
        text.append(" + ".join("*".join(f.label for f in t) for t in s.terms) + more)
        if zeros:
            text.append(zeros, style=DIM)
        numbers = " + ".join(
            "*".join(term(f.value, precision, bare=k == i == 0) for i, f in enumerate(t))
            for k, t in enumerate(s.terms)
        )
        text.append(f"\n    = {numbers}{more} = ")
        text.append(fmt(s.total, precision), style=HEAD)
    if not s.agrees:
        text.append(f"  but the layer's backward gave {fmt(s.value, precision)}", style=BAD)
    return text


def zero_terms(s: Sum) -> str:
    """`` + 1 term with delta 0 + 2 terms with padding 0``: the zero products, by kind."""
    parts = [f" + {n} {'term' if n == 1 else 'terms'} with {kind} 0" for kind, n in s.zeros.items()]
    return "".join(parts)


def accumulation_block(acc: Accumulation, precision: int, entry: str = "") -> RenderableType:
    """A gradient's formula and its sums; when too many to list, how to list them."""
    parts: list[RenderableType] = [Text(acc.title, style="italic"), Text(acc.formula)]
    if acc.legend:
        parts.append(Text(acc.legend, style=DIM))
    for s in acc.sums:
        parts.append(indent(sum_text(s, precision), 2))
    if acc.entries and not acc.sums:
        parts.append(too_many(acc.entries, entry))
    return Group(*parts)


def too_many(entries: int, entry: str) -> Text:
    """``(18 entries: too many to list term by term; --terms all lists them, --entry
    conv1.weight[0,0,1,1] one)``."""
    hint = "--terms all lists them"
    if entry:
        hint += f", --entry {entry}[...] the ones you name"
    return Text(f"({entries} entries: too many to list term by term; {hint})", style=DIM)


def loss_derivation_block(d: LossDerivation, precision: int, entry: str = "") -> RenderableType:
    """``dE/dz = p - y`` and each entry ``dE/dz[1] = p[1] - y[1] = 0.2281 - 1 = -0.7719``,
    compared with what backward gave."""
    parts: list[RenderableType] = [Text(d.title, style="italic"), Text(d.formula)]
    if d.divisor != 1:
        parts.append(Text(f"reduction: mean, so each entry is divided by N = {d.divisor}"))
    target = d.formula.split("=", 1)[0].strip()
    for entry_ in d.entries:
        parts.append(indent(_delta_entry(d, entry_, target, precision), 2))
    if d.size and not d.entries:
        parts.append(too_many(d.size, entry))
    return Group(*parts)


def _delta_entry(d: LossDerivation, e: DeltaEntry, target: str, precision: int) -> Text:
    where = index_label(*e.index) if e.index else ""

    def named(match: re.Match) -> str:
        name = match.group(0)
        return f"{name}{where}" if name in e.values else name

    def valued(match: re.Match) -> str:
        name = match.group(0)
        if name not in e.values:
            return name
        return term(e.values[name], precision, bare=match.start() == 0)

    symbols = _NAME.sub(named, d.expression)
    numbers = _NAME.sub(valued, d.expression)
    if d.divisor != 1:
        symbols, numbers = f"({symbols}) / {d.divisor}", f"({numbers}) / {d.divisor}"
    alone = _NAME.fullmatch(d.expression) is not None and d.divisor == 1
    text = Text(f"{target}{where} = {symbols} = " + ("" if alone else f"{numbers} = "))
    text.append(fmt(e.value, precision), style=HEAD)
    if not e.agrees:
        text.append(f"  but the backward gave {fmt(e.actual, precision)}", style=BAD)
    return text


def full_convolution_block(f: FullConvolution, precision: int, entry: str = "") -> RenderableType:
    """The input gradient by the full-convolution identity: the steps in words, rot180(w),
    the padded delta and the result, said to agree (or not) with backward's."""
    parts: list[RenderableType] = [Text(f.title, style="italic"), Text(f.formula)]
    parts += [indent(Text(f"- {step}"), 2) for step in f.steps]
    simple = f.rotated.shape[:2] == (1, 1)
    rotated = f.rotated[0, 0] if simple else f.rotated
    padded = f.padded[0] if f.padded.shape[0] == 1 else f.padded
    parts.append(indent(tensor_block("rot180(w)", rotated, precision), 2))
    what = "dilated and zero-padded" if f.dilated else "zero-padded"
    parts.append(indent(tensor_block(f"dp (the delta, {what})", padded, precision), 2))
    verdict = Text("dE/do by the identity ", style=DIM)
    verdict.append(
        "equals what the layer's backward gave"
        if f.agrees
        else "DIFFERS from the layer's backward",
        style=GOOD if f.agrees else BAD,
    )
    parts.append(indent(verdict, 2))
    result = f.result[0] if simple else f.result
    parts.append(indent(tensor_block("dE/do", result, precision), 2))
    if f.sums.sums:  # (when there are too many, the sums above said how to list them)
        parts.append(accumulation_block(f.sums, precision, entry))
    return Group(*parts)


def descent_section(step: DescentStep, precision: int) -> list[RenderableType]:
    """``--lr``: ``w - lr * dE/dw`` for every parameter, entry by entry when listed."""
    head = Text(f"Gradient-descent step, lr {step.lr:g}", style=HEAD)
    parts: list[RenderableType] = [Text(""), head]
    note = "w_new = w - lr * dE/dw"
    if step.batch_size > 1:
        note += f", with the whole batch's gradient (reduction: {step.reduction})"
    parts.append(Text(note, style=DIM))
    for p in step.params:
        parts.append(Text(p.name, style=HEAD))
        for flat in p.entries:
            ix = np.unravel_index(flat, p.value.shape) if p.value.ndim else ()
            where = index_label(*ix) if ix else ""
            line = Text(
                f"{p.name.rsplit('.', 1)[1]}{where} = {term(float(p.value[ix]), precision, True)}"
                f" - {step.lr:g} * {term(float(p.grad[ix]), precision)} = "
            )
            line.append(fmt(float(p.updated[ix]), precision), style=HEAD)
            parts.append(indent(line, 2))
        parts.append(indent(tensor_block("updated", p.updated, precision), 2))
    return parts
