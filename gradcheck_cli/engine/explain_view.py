"""The backward pass of a small network as plain data: the JSON report's ``explain``
section, which the HTML report draws (``render/html_page.py``).

What ``gradcheck explain`` tells, reduced to numbers: for example 0, each network input
with its gradient, then every layer's output and delta (dE/d of its output), its
parameters and their gradients (this example's share), an element-wise layer's local
derivative f'(x), and a max pool's routing (which input each window sent its gradient
to). Arrays are nested lists in the shapes the user wrote, one example, no batch axis;
values that are not finite are ``None``.

Made only for networks small enough to read (``fits``): at most ``MAX_LAYERS`` layers,
``MAX_VALUES`` numbers per array and ``MAX_TOTAL`` in all. Pure data, no I/O.

Shape of the section::

    {"example": 0, "batch_size": 1, "loss": 0.12, "loss_type": "mse",
     "loss_rule": "...",
     "inputs": [{"name": "input", "value": [[...]], "grad": [[...]]}],
     "layers": [{"name": "conv1", "type": "conv2d", "reads": ["input"],
                 "output": [...], "delta": [...],
                 "params": {"weight": [...]}, "grads": {"weight": [...]},
                 "derivative": null | {"formula": "...", "value": [...]},
                 "routing": null | {"rule": "...", "ties": "...", "windows": 4,
                     "routes": [{"channel": 0, "window": [0, 0], "rows": [0, 1],
                                 "cols": [0, 1], "source": [1, 0] | null,
                                 "max": 0.9, "grad": 0.1}]}}]}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..problem import Problem

#: Layers at most in a network whose backward pass the report spells out.
MAX_LAYERS = 32
#: Numbers at most in one array of it (an output, a delta, a parameter).
MAX_VALUES = 256
#: Numbers at most in all of its arrays together.
MAX_TOTAL = 8192


def fits(problem: Problem) -> bool:
    """Whether the network is small enough for its backward pass to be spelled out."""
    nodes = list(problem.network)
    if len(nodes) > MAX_LAYERS:
        return False
    sizes = []  # every array the section holds, by size: each value and its gradient
    for a in problem.inputs.values():
        shape = np.shape(a)[1:] if problem.batched else np.shape(a)
        sizes += [int(np.prod(shape, dtype=np.int64))] * 2
    for node in nodes:
        sizes += [int(np.prod(node.out_shape, dtype=np.int64))] * 2
        sizes += [int(np.size(v)) for v in node.params.values() for _ in range(2)]
    return max(sizes, default=0) <= MAX_VALUES and sum(sizes) <= MAX_TOTAL


def explain_view(problem: Problem) -> dict[str, Any] | None:
    """The section (module docstring) for example 0, or None when the network is too
    large. Raises what ``engine.explain.explain`` raises (a plugin's error, NaN)."""
    if not fits(problem):
        return None
    from .explain import LocalDerivative, Routing, explain

    e = explain(problem, 0)
    layers = []
    for step in e.steps:
        derivative = routing = None
        for detail in step.details:
            if isinstance(detail, LocalDerivative):
                derivative = {"formula": detail.formula, "value": _list(detail.derivative)}
            elif isinstance(detail, Routing):
                routing = {
                    "rule": detail.rule,
                    "ties": detail.ties,
                    "windows": detail.windows,
                    "routes": [
                        {
                            "channel": r.channel,
                            "window": list(r.window),
                            "rows": list(r.rows),
                            "cols": list(r.cols),
                            "source": None if r.source is None else list(r.source),
                            "max": _number(r.maximum),
                            "grad": _number(r.grad),
                        }
                        for r in detail.routes
                    ],
                }
        layers.append(
            {
                "name": step.name,
                "type": step.type,
                "reads": list(step.reads),
                "share": step.share,
                "output": _list(step.output),
                "delta": _list(step.delta),
                "params": {} if step.share else {p: _list(v) for p, v in step.params.items()},
                "grads": {p: _list(v) for p, v in step.grads.items()},
                "derivative": derivative,
                "routing": routing,
            }
        )
    return {
        "example": e.example,
        "batch_size": e.batch_size,
        "loss": _number(e.loss),
        "loss_type": e.loss_type,
        "loss_rule": e.loss_rule,
        "inputs": [
            {"name": name, "value": _list(value), "grad": _list(e.input_grads[name])}
            for name, value in e.inputs.items()
        ],
        "layers": layers,
    }


def _list(a: Any) -> Any:
    """An array as nested lists of floats, None where not finite."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a), a, None).tolist() if a.ndim else _number(float(a))


def _number(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None
