"""Forward and backward through a validated layer stack.

Arrays carry a leading batch axis: x (N, *in_shape); activations[k] (N, *out_shape of
layer k-1), with activations[0] = x. Every call into a layer is guarded so that a
plugin's mistake is reported against that layer by name (PluginError), never as a
traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NumericalError, PluginError
from ..problem import LayerSpec, LossSpec, Problem
from ..protocol import Params


@dataclass
class Trace:
    """Everything one forward pass leaves behind.

    activations: [x, y_1, ..., y_L], each (N, *shape); caches: one per layer;
    losses: (N,) per-example losses; loss: the reduced scalar; loss_cache: for backward.
    """

    activations: list[np.ndarray]
    caches: list[Any]
    losses: np.ndarray
    loss: float
    loss_cache: Any


@dataclass
class Gradients:
    """Analytic gradients of the loss.

    deltas[k]: dE/d(output of layer k), (N, *out_shape); dx: dE/dx, (N, *in_shape);
    params[layer_name][param_name]: shaped like the parameter (internal shape).
    """

    deltas: list[np.ndarray]
    dx: np.ndarray
    params: dict[str, Params]


def reduce_losses(losses: np.ndarray, n: int, reduction: str) -> np.ndarray:
    """(P*N,) per-example losses, copy-major -> (P,) reduced per copy (sum or mean)."""
    per_copy = losses.reshape(-1, n).sum(axis=1)
    return per_copy / n if reduction == "mean" else per_copy


def layer_forward(spec: LayerSpec, x: np.ndarray, params: Params) -> tuple[np.ndarray, Any]:
    """Guarded forward of one layer: x (M, *in_shape) -> y (M, *out_shape)."""
    try:
        out = spec.layer.forward(x, params)
    except (NumericalError, PluginError):
        raise
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() is its mistake too
        raise PluginError(spec.name, f"forward raised {type(exc).__name__}: {exc}") from exc
    if not (isinstance(out, tuple) and len(out) == 2):
        raise PluginError(spec.name, "forward must return a pair (y, cache)")
    y = out[0]
    expected = (x.shape[0], *spec.out_shape)
    if not isinstance(y, np.ndarray) or y.shape != expected:
        got = list(y.shape) if isinstance(y, np.ndarray) else type(y).__name__
        raise PluginError(
            spec.name,
            f"forward returned y of shape {got}, expected {list(expected)} "
            f"(batch axis, then output_shape {list(spec.out_shape)})",
        )
    return out


def loss_forward(spec: LossSpec, y: np.ndarray, target: np.ndarray | None):
    """Guarded per-example loss: y (M, *shape) -> ((M,) losses, cache)."""
    try:
        losses, cache = spec.loss.forward(y, target)
    except (Exception, SystemExit) as exc:
        msg = f"{spec.type} forward raised {type(exc).__name__}: {exc}"
        raise PluginError("loss", msg) from exc
    losses = np.asarray(losses)
    if losses.shape != (y.shape[0],):
        raise PluginError(
            "loss", f"{spec.type} forward must return one loss per example, shape ({y.shape[0]},)"
        )
    return losses, cache


def forward(problem: Problem, x: np.ndarray, params: dict[str, Params]) -> Trace:
    """Run the whole stack on x (N, *in_shape) with params {layer name: {param: array}}."""
    activations = [x]
    caches = []
    for spec in problem.layers:
        y, cache = layer_forward(spec, activations[-1], params[spec.name])
        activations.append(y)
        caches.append(cache)
    target = problem.loss.target
    if target is not None and target.dtype != x.dtype and np.issubdtype(target.dtype, np.floating):
        target = target.astype(x.dtype)
    losses, loss_cache = loss_forward(problem.loss, activations[-1], target)
    loss = float(reduce_losses(losses, x.shape[0], problem.loss.reduction)[0])
    return Trace(activations, caches, losses, loss, loss_cache)


def backward(problem: Problem, trace: Trace, params: dict[str, Params]) -> Gradients:
    """Backpropagate from the loss to the input, checking each layer's protocol."""
    n = trace.activations[0].shape[0]
    try:
        dy = np.asarray(problem.loss.loss.backward(trace.loss_cache))
    except (Exception, SystemExit) as exc:
        raise PluginError("loss", f"backward raised {type(exc).__name__}: {exc}") from exc
    if dy.shape != trace.activations[-1].shape:
        raise PluginError(
            "loss",
            f"backward returned shape {list(dy.shape)}, "
            f"expected {list(trace.activations[-1].shape)}",
        )
    if problem.loss.reduction == "mean":
        dy = dy / n
    deltas: list[np.ndarray] = [np.empty(0)] * len(problem.layers)
    grads: dict[str, Params] = {}
    for k in range(len(problem.layers) - 1, -1, -1):
        spec = problem.layers[k]
        deltas[k] = dy
        dy, grads[spec.name] = layer_backward(
            spec, dy, trace.caches[k], params[spec.name], trace.activations[k].shape
        )
    return Gradients(deltas=deltas, dx=dy, params=grads)


def layer_backward(
    spec: LayerSpec, dy: np.ndarray, cache: Any, params: Params, x_shape: tuple[int, ...]
) -> tuple[np.ndarray, Params]:
    """Guarded backward of one layer; checks dx's shape and the grads' keys and shapes."""
    try:
        out = spec.layer.backward(dy, cache, params)
    except (Exception, SystemExit) as exc:
        raise PluginError(spec.name, f"backward raised {type(exc).__name__}: {exc}") from exc
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise PluginError(spec.name, "backward must return a pair (dx, {param_name: dparam})")
    dx, grads = out
    dx = np.asarray(dx)
    if dx.shape != x_shape:
        raise PluginError(
            spec.name, f"backward returned dx of shape {list(dx.shape)}, expected {list(x_shape)}"
        )
    missing = sorted(set(params) - set(grads))
    extra = sorted(set(grads) - set(params))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing gradient for {', '.join(missing)}")
        if extra:
            parts.append(f"gradient for unknown parameter {', '.join(extra)}")
        raise PluginError(
            spec.name, f"backward: {'; '.join(parts)} (grads must use exactly the keys of params)"
        )
    for name, g in grads.items():
        g = np.asarray(g)
        if g.shape != params[name].shape:
            raise PluginError(
                spec.name,
                f"backward returned d{name} of shape {list(g.shape)}, "
                f"expected {list(params[name].shape)} (the shape of {name})",
            )
        grads[name] = g
    return dx, grads


def problem_params(problem: Problem, dtype: Any = None) -> dict[str, Params]:
    """{layer name: {param: array}}, optionally cast (float32 problems upcast for numerics)."""
    return {
        s.name: {k: (v if dtype is None else v.astype(dtype)) for k, v in s.params.items()}
        for s in problem.layers
    }


def require_finite(what: str, a: np.ndarray | float) -> None:
    """Raise NumericalError (exit 3) when a value the check needs is NaN or Inf."""
    if not np.all(np.isfinite(a)):
        raise NumericalError(
            f"{what} contains NaN or Inf; the check cannot be carried out "
            "(look for overflow, log of 0, or inputs that are too large)"
        )
