"""The backward pass of a small network in the HTML report (``render/html_page.py``): the
JSON report's ``explain`` section (``engine/explain_view.py``) drawn layer by layer,
each value beside its delta, a max pool's routing as a table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .html_blocks import esc, matrix, num, number, table


def explain_section(view: dict[str, Any] | None) -> str:
    """The section, or "" when the report has no ``explain``."""
    if not view:
        return ""
    parts = [
        '<section id="explain"><h2>Backward pass, layer by layer</h2>',
        f'<p class="note">Example {esc(view.get("example", 0))} of '
        f"{esc(view.get('batch_size', 1))}; delta = dE/d(output) of each layer. Loss "
        f"{esc(view.get('loss_type', ''))} = {esc(number(view.get('loss')))}: "
        f"{esc(view.get('loss_rule', ''))}</p>",
    ]
    for item in view.get("inputs", []):
        parts.append(f'<h3 class="mono">{esc(item.get("name"))}</h3>')
        parts.append(_pair(("value", item.get("value")), ("gradient", item.get("grad"))))
    for layer in view.get("layers", []):
        reads = ", ".join(map(str, layer.get("reads") or []))
        parts.append(
            f'<h3><span class="mono">{esc(layer.get("name"))}</span> '
            f"({esc(layer.get('type'))})"
            + (f' <span class="note">reads {esc(reads)}</span>' if reads else "")
            + "</h3>"
        )
        parts.append(_pair(("output", layer.get("output")), ("delta", layer.get("delta"))))
        for name, value in (layer.get("params") or {}).items():
            grad = (layer.get("grads") or {}).get(name)
            parts.append(_pair((name, value), (f"dE/d{name}", grad)))
        derivative = layer.get("derivative")
        if derivative:
            parts.append(f'<p class="note">{esc(derivative.get("formula", ""))}</p>')
            parts.append(
                _pair(
                    ("f′(x)", derivative.get("value")),
                )
            )
        routing = layer.get("routing")
        if routing:
            parts.append(_routing(routing))
    parts.append("</section>")
    return "".join(parts)


def _pair(*named: tuple[str, Any]) -> str:
    cells = "".join(
        f"<div><b>{esc(name)}</b>{matrix(np.array(_floats(value), dtype=float))}</div>"
        for name, value in named
        if value is not None
    )
    return f'<div class="pair">{cells}</div>'


def _routing(routing: dict) -> str:
    parts = [f'<p class="note">Max pooling: {esc(routing.get("rule", ""))}. ']
    if routing.get("ties"):
        parts.append(f"Ties: {esc(routing['ties'])}")
    parts.append("</p>")
    routes = routing.get("routes") or []
    if not routes:
        windows = routing.get("windows", 0)
        parts.append(f'<p class="note">{esc(windows)} windows: too many to list.</p>')
        return "".join(parts)
    rows = [
        [
            num(r.get("channel")),
            num(str(r.get("window"))),
            num(_span(r.get("rows"))),
            num(_span(r.get("cols"))),
            num("nowhere" if r.get("source") is None else str(r.get("source"))),
            num(number(r.get("max"))),
            num(number(r.get("grad"))),
        ]
        for r in routes
    ]
    headers = ["channel", "window", "input rows", "input cols", "gradient to", "max", "delta"]
    return "".join(parts) + table(headers, rows)


def _span(pair: Any) -> str:
    if isinstance(pair, list | tuple) and len(pair) == 2:
        return f"{pair[0]}–{pair[1]}"
    return str(pair)


def _floats(value: Any) -> Any:
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return math.nan if value is None else value
