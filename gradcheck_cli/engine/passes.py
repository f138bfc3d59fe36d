"""Forward and backward passes through a validated network (gradcheck_cli/network.py).

Arrays carry a leading batch axis: every value is (N, *shape). Values are named: the
network inputs (``input``, or ``input.<name>``) and each node's output (the node's
name). Every call into a layer is guarded so that a plugin's mistake is reported against
that layer by name (PluginError), never as a traceback.

A value read by several nodes (a fork) receives the SUM of what their backwards send
to it (the chain rule); a parameter used by several nodes (``share:``) gets the sum of
its gradients over every use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import NumericalError, PluginError
from ..network import INPUT, Node
from ..problem import LossSpec, Problem
from ..protocol import Params

#: dtype arguments numpy takes: a dtype, a type, a name
DType = Any


@dataclass
class Trace:
    """Everything one forward pass leaves behind.

    values: every network input and node output by name, each (N, *shape); caches: one
    per node; losses: (N,) per-example losses; loss: the reduced scalar; loss_cache:
    for the loss's backward; output: the name of the value the loss read.
    """

    values: dict[str, np.ndarray]
    caches: dict[str, Any]
    losses: np.ndarray
    loss: float
    loss_cache: Any
    output: str

    def inputs_of(self, node: Node) -> list[np.ndarray]:
        """The arrays ``node`` read, in its input order."""
        return [self.values[v] for v in node.inputs]


@dataclass
class Gradients:
    """Analytic gradients of the loss.

    deltas[value]: dE/d(value), (N, *shape), for every node output and network input
    (for a value read by several nodes, the sum of their contributions).
    contributions[(node, slot)]: what that node's backward sent to its input ``slot``.
    params[owner][param]: shaped like the parameter (internal shape), summed over every
    node that uses it; per_use[node][param]: one node's own share (its own backward).
    """

    deltas: dict[str, np.ndarray]
    params: dict[str, Params]
    contributions: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    per_use: dict[str, Params] = field(default_factory=dict)

    @property
    def dx(self) -> np.ndarray:
        """dE/d of the network's one input (configs with ``input:``)."""
        return self.deltas[INPUT]


def reduce_losses(losses: np.ndarray, n: int, reduction: str) -> np.ndarray:
    """(P*N,) per-example losses, copy-major -> (P,) reduced per copy (sum or mean)."""
    per_copy = losses.reshape(-1, n).sum(axis=1)
    return per_copy / n if reduction == "mean" else per_copy


class OutOfTime(Exception):
    """A call into a layer would start past ``Calls.deadline`` (``--time-budget``)."""


class Calls:
    """Which call into a layer (or the loss) is running, for whoever supervises the check
    to name on a timeout or a crash: ``current`` is ``(layer, call)`` while user code
    runs (``("conv1", "forward")``; ``("loss", "backward")``), None between calls;
    ``last`` is the call that ran most recently. Set around every guarded call below and
    in engine/objective.py; a supervisor thread reads them (gradcheck_cli/worker.py).
    """

    current: tuple[str, str] | None = None
    last: tuple[str, str] | None = None
    #: told ``(layer, call)`` as each call starts and ``None`` as it ends: a supervised
    #: worker writes it where its supervisor reads it even after a crash
    listener: Callable[[tuple[str, str] | None], None] | None = None
    #: ``time.perf_counter()`` past which no call starts (OutOfTime): a time budget
    #: overruns by at most the one call running when it passes
    deadline: float | None = None

    @classmethod
    def enter(cls, layer: str, call: str) -> None:
        if cls.deadline is not None and time.perf_counter() > cls.deadline:
            raise OutOfTime(f"the time budget ran out before {layer} {call}")
        cls.current = cls.last = (layer, call)
        if cls.listener is not None:
            cls.listener(cls.current)

    @classmethod
    def leave(cls) -> None:
        cls.current = None
        if cls.listener is not None:
            cls.listener(None)


#: numpy dtype kinds that hold real numbers: bool, signed and unsigned int, float.
REAL_KINDS = "biuf"


def require_real(layer: str, what: str, a: np.ndarray) -> None:
    """PluginError (exit 2) when a layer hands back an array of objects, complex numbers
    or text where real numbers belong: no finite difference or comparison means anything
    there, and numpy's own error would read like a bug in gradcheck."""
    if a.dtype.kind not in REAL_KINDS:
        raise PluginError(
            layer, f"{what} has dtype {a.dtype}; it must hold real numbers (float or int)"
        )


def node_forward(node: Node, xs: list[np.ndarray], params: Params) -> tuple[np.ndarray, Any]:
    """Guarded forward of one node: xs, one (M, *in_shape) array per input, -> y
    (M, *out_shape). A one-input layer gets the array, a multi-input layer the tuple."""
    Calls.enter(node.name, "forward")
    try:
        out = node.layer.forward(tuple(xs) if node.multi_input else xs[0], params)
    except (NumericalError, PluginError):
        raise
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() is its mistake too
        raise PluginError(node.name, f"forward raised {type(exc).__name__}: {exc}") from exc
    finally:
        Calls.leave()
    if not (isinstance(out, tuple) and len(out) == 2):
        raise PluginError(node.name, "forward must return a pair (y, cache)")
    y = out[0]
    expected = (xs[0].shape[0], *node.out_shape)
    if not isinstance(y, np.ndarray) or y.shape != expected:
        got = list(y.shape) if isinstance(y, np.ndarray) else type(y).__name__
        raise PluginError(
            node.name,
            f"forward returned y of shape {got}, expected {list(expected)} "
            f"(batch axis, then output_shape {list(node.out_shape)})",
        )
    require_real(node.name, "forward's y", y)
    return out


def loss_forward(spec: LossSpec, y: np.ndarray, target: np.ndarray | None):
    """Guarded per-example loss: y (M, *shape) -> ((M,) losses, cache)."""
    Calls.enter("loss", "forward")
    try:
        losses, cache = spec.loss.forward(y, target)
    except (Exception, SystemExit) as exc:
        msg = f"{spec.type} forward raised {type(exc).__name__}: {exc}"
        raise PluginError("loss", msg) from exc
    finally:
        Calls.leave()
    losses = np.asarray(losses)
    require_real("loss", f"{spec.type} forward's losses", losses)
    if losses.shape != (y.shape[0],):
        raise PluginError(
            "loss", f"{spec.type} forward must return one loss per example, shape ({y.shape[0]},)"
        )
    return losses, cache


def as_inputs(inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """Network inputs by name; a bare array is the one input ``input``."""
    if isinstance(inputs, np.ndarray):
        return {INPUT: inputs}
    return dict(inputs)


def node_params(params: Mapping[str, Params], node: Node) -> Params:
    """The parameters a node runs with: its owner's (itself, or the node it shares)."""
    return params[node.owner]


def forward(
    problem: Problem,
    inputs: Mapping[str, np.ndarray] | np.ndarray,
    params: Mapping[str, Params],
    target: np.ndarray | None = None,
) -> Trace:
    """Run the whole network on its inputs (each (N, *shape)) with params
    {owner name: {param: array}}, then the loss (target: default the problem's, cast to
    the inputs' float dtype)."""
    values = as_inputs(inputs)
    caches = {}
    for node in problem.network:
        y, cache = node_forward(node, [values[v] for v in node.inputs], node_params(params, node))
        values[node.name] = y
        caches[node.name] = cache
    output = problem.network.output
    dtype = values[output].dtype
    if target is None:
        target = problem.loss.target
        if (
            target is not None
            and target.dtype != dtype
            and np.issubdtype(target.dtype, np.floating)
        ):
            target = target.astype(dtype)
    losses, loss_cache = loss_forward(problem.loss, values[output], target)
    n = values[output].shape[0]
    loss = float(reduce_losses(losses, n, problem.loss.reduction)[0])
    return Trace(values, caches, losses, loss, loss_cache, output)


def loss_backward(problem: Problem, trace: Trace) -> np.ndarray:
    """dE/d(network output), (N, *shape), from the loss's own backward (and the mean)."""
    y = trace.values[trace.output]
    Calls.enter("loss", "backward")
    try:
        dy = np.asarray(problem.loss.loss.backward(trace.loss_cache))
    except (Exception, SystemExit) as exc:
        raise PluginError("loss", f"backward raised {type(exc).__name__}: {exc}") from exc
    finally:
        Calls.leave()
    if dy.shape != y.shape:
        raise PluginError(
            "loss", f"backward returned shape {list(dy.shape)}, expected {list(y.shape)}"
        )
    require_real("loss", "backward's gradient", dy)
    if problem.loss.reduction == "mean":
        dy = dy / y.shape[0]
    return dy


def backward(problem: Problem, trace: Trace, params: Mapping[str, Params]) -> Gradients:
    """Backpropagate from the loss to every input, checking each layer's protocol.

    Nodes run in reverse topological order; a value's delta is complete once every node
    reading it has run, since readers come later in the order.
    """
    network = problem.network
    deltas: dict[str, np.ndarray] = {network.output: loss_backward(problem, trace)}
    contributions: dict[tuple[str, int], np.ndarray] = {}
    per_use: dict[str, Params] = {}
    for node in reversed(network.nodes):
        dy = deltas.get(node.name)
        if dy is None:  # nobody reads this output: nothing flows back into it
            dy = np.zeros_like(trace.values[node.name])
            deltas[node.name] = dy
        xs = trace.inputs_of(node)
        dxs, per_use[node.name] = node_backward(
            node, dy, trace.caches[node.name], node_params(params, node), xs
        )
        for slot, (value, dx) in enumerate(zip(node.inputs, dxs, strict=True)):
            contributions[(node.name, slot)] = dx
            deltas[value] = dx if value not in deltas else deltas[value] + dx
    for value in network.input_names:
        if value not in deltas:  # an input nothing reads
            deltas[value] = np.zeros_like(trace.values[value])
    grads: dict[str, Params] = {}
    for node in network.nodes:
        own = per_use[node.name]
        total = grads.setdefault(node.owner, {})
        for p, g in own.items():
            total[p] = g if p not in total else total[p] + g
    return Gradients(deltas, grads, contributions, per_use)


def node_backward(
    node: Node, dy: np.ndarray, cache: Any, params: Params, xs: list[np.ndarray]
) -> tuple[list[np.ndarray], Params]:
    """Guarded backward of one node: (one dx per input, {param: grad}); checks the
    shapes of every dx and the grads' keys and shapes."""
    Calls.enter(node.name, "backward")
    try:
        out = node.layer.backward(dy, cache, params)
    except (Exception, SystemExit) as exc:
        raise PluginError(node.name, f"backward raised {type(exc).__name__}: {exc}") from exc
    finally:
        Calls.leave()
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise PluginError(node.name, "backward must return a pair (dx, {param_name: dparam})")
    dx, grads = out
    if node.multi_input:
        if not isinstance(dx, (tuple, list)) or len(dx) != len(xs):
            raise PluginError(
                node.name, f"backward must return one dx per input ({len(xs)}) as a tuple"
            )
        dxs = [np.asarray(d) for d in dx]
    else:
        dxs = [np.asarray(dx)]
    for slot, (d, x) in enumerate(zip(dxs, xs, strict=True)):
        if d.shape != x.shape:
            which = "dx" if len(xs) == 1 else f"dx for input {slot} ({node.inputs[slot]})"
            raise PluginError(
                node.name,
                f"backward returned {which} of shape {list(d.shape)}, expected {list(x.shape)}",
            )
        require_real(node.name, f"backward's {'dx' if len(xs) == 1 else f'dx {slot}'}", d)
    missing = sorted(set(params) - set(grads))
    extra = sorted(set(grads) - set(params))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing gradient for {', '.join(missing)}")
        if extra:
            parts.append(f"gradient for unknown parameter {', '.join(extra)}")
        raise PluginError(
            node.name, f"backward: {'; '.join(parts)} (grads must use exactly the keys of params)"
        )
    checked = {}
    for name, g in grads.items():
        g = np.asarray(g)
        if g.shape != params[name].shape:
            raise PluginError(
                node.name,
                f"backward returned d{name} of shape {list(g.shape)}, "
                f"expected {list(params[name].shape)} (the shape of {name})",
            )
        require_real(node.name, f"backward's d{name}", g)
        checked[name] = g
    return dxs, checked


def problem_params(problem: Problem, dtype: DType = None) -> dict[str, Params]:
    """{owner name: {param: array}}, optionally cast (float32 problems upcast for
    numerics). Nodes that share another's parameters have no entry of their own."""
    return {
        n.name: {k: (v if dtype is None else v.astype(dtype)) for k, v in n.params.items()}
        for n in problem.network
        if n.share is None
    }


def require_finite(what: str, a: np.ndarray | float) -> None:
    """Raise NumericalError (exit 3) when a value the check needs is NaN or Inf."""
    if not np.all(np.isfinite(a)):
        raise NumericalError(
            f"{what} contains NaN or Inf; the check cannot be carried out "
            "(look for overflow, log of 0, or inputs that are too large)"
        )


def analytic_pass(problem: Problem, params: Mapping[str, Params]) -> tuple[Trace, Gradients]:
    """Forward and backward in the problem's dtype, refusing NaN/Inf (exit 3)."""
    with np.errstate(all="ignore"):
        trace = forward(problem, problem.inputs, params)
    for node in problem.network:
        require_finite(f"the output of layer {node.name!r}", trace.values[node.name])
    require_finite("the loss", trace.loss)
    with np.errstate(all="ignore"):
        grads = backward(problem, trace, params)
    for value in problem.network.input_names:
        what = "the input" if value == INPUT else value
        require_finite(f"the gradient with respect to {what}", grads.deltas[value])
    for owner, g in grads.params.items():
        for p, v in g.items():
            require_finite(f"the gradient of {owner}.{p}", v)
    return trace, grads
