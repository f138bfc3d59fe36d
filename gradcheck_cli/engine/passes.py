"""Forward and backward passes through a validated network (gradcheck_cli/network.py).

Arrays carry a leading batch axis: every value is (N, *shape). Values are named: the
network inputs (``input``, or ``input.<name>``) and each node's output (the node's
name). Every call into a layer is guarded so that a plugin's mistake is reported against
that layer by name (PluginError), never as a traceback; that includes the dtype of what
it returns (``real_dtype``).

gradcheck keeps its own copies. The analytic pass (``forward``, ``backward``) hands every
layer copies of its inputs, parameters, ``dy`` and cache, and keeps copies of what the
layer returns, so nothing a plugin does to those arrays (a ReLU that zeroes ``dy`` in
place, a gradient buffer it overwrites later) can change a trace value, a delta, an
expectation or ``explain``. The numeric side calls ``node_forward`` tens of thousands of
times and copies nothing there, except for a node the purity probes found writing into
what it is handed (``Node.defended``, engine/purity.py). ``guarded_forward`` and
``guarded_backward`` are the bare guarded calls, with no copies, for the probes.

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
from ..losses._common import short_sums
from ..network import INPUT, Node
from ..problem import LossSpec, Problem
from ..protocol import Params, UserCodeError
from ..usercode import where_raised
from .copies import copy_params, copy_tree

#: dtype arguments numpy takes: a dtype, a type, a name
DType = Any


@dataclass
class Trace:
    """Everything one forward pass leaves behind.

    values: every network input and node output by name, each (N, *shape), gradcheck's
    own copies; caches: one per node; losses: (N,) per-example losses; loss: the reduced
    scalar; loss_cache: for the loss's backward; output: the name of the value the loss
    read; returned: each node's output as the layer returned it, never read but by the
    purity probes (engine/purity.py), to see whether the layer writes into it later.
    """

    values: dict[str, np.ndarray]
    caches: dict[str, Any]
    losses: np.ndarray
    loss: float
    loss_cache: Any
    output: str
    returned: dict[str, np.ndarray] = field(default_factory=dict)

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
    """(P*N,) per-example losses, copy-major -> (P,) reduced per copy (sum or mean), in
    numpy's order (``short_sums``)."""
    per_copy = short_sums(losses.reshape(-1, n))
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


def raised_in(owner: str, what: str, exc: BaseException) -> PluginError:
    """The PluginError for an exception raised by ``what`` (``forward``, ``backward``) of
    the layer ``owner`` (or ``loss``). A UserCodeError already says which of the user's
    functions went wrong and where (gradcheck_cli/usercode.py): it is shown as it is."""
    if isinstance(exc, UserCodeError):
        return PluginError(owner, str(exc))
    # a plugin class's method: the line of the user's code that raised it (contract 4)
    return PluginError(owner, f"{what} raised {type(exc).__name__}: {exc}{where_raised(exc)}")


def real_dtype(owner: str, what: str, a: np.ndarray, expected: np.dtype) -> np.ndarray:
    """``a`` as a real float array of the check's dtype, or PluginError (exit 2).

    owner: the layer (or ``loss``) that returned it; what: which array (``y``, ``dx``,
    ``dweight``); expected: the dtype of the arrays the call was handed.

    - complex dtypes are refused outright, even with every imaginary part 0: gradcheck
      checks real-valued functions, and a complex gradient's imaginary part would
      otherwise be dropped without a word;
    - integer, boolean and object arrays are refused: gradients and outputs are floats;
    - a float less precise than the check (float32 or float16 in a float64 check) is
      refused: the numeric side's differences would drown in its rounding;
    - a float more precise than the check (float64 in a float32 check) is accepted and
      cast down, so that a float32 check stays float32 throughout.
    """
    dtype = a.dtype
    if dtype == expected:
        return a
    if dtype.kind == "c":
        raise PluginError(
            owner,
            f"{what} has complex dtype {dtype}; gradcheck checks real-valued layers and "
            "refuses complex arrays even when every imaginary part is 0 "
            "(return np.real(...) if it is meant to be real)",
        )
    if dtype.kind != "f":
        raise PluginError(
            owner, f"{what} has dtype {dtype}; expected a float array of dtype {expected}"
        )
    if dtype.itemsize < np.dtype(expected).itemsize:
        raise PluginError(
            owner,
            f"{what} is {dtype} in a {expected} check; compute in the dtype of the arrays "
            f"the layer is handed (a {dtype} result loses the precision the numeric "
            "check needs)",
        )
    return a.astype(expected)


def guarded_forward(node: Node, xs: list[np.ndarray], params: Params) -> tuple[np.ndarray, Any]:
    """The bare guarded forward of one node (no copies): xs, one (M, *in_shape) array
    per input, -> (y (M, *out_shape) of the inputs' dtype, cache). A one-input layer
    gets the array, a multi-input layer the tuple."""
    Calls.enter(node.name, "forward")
    try:
        out = node.layer.forward(tuple(xs) if node.multi_input else xs[0], params)
    except (NumericalError, PluginError):
        raise
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() is its mistake too
        raise raised_in(node.name, "forward", exc) from exc
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
    if y.dtype != xs[0].dtype:
        y = real_dtype(node.name, "forward's y", y, xs[0].dtype)
    return y, out[1]


def node_forward(node: Node, xs: list[np.ndarray], params: Params) -> tuple[np.ndarray, Any]:
    """Guarded forward of one node, as the numeric side calls it: no copies, unless the
    purity probes found the layer writing into what it is handed or reusing its output
    (``node.defended``), in which case it gets copies and its output is copied."""
    if node.defended:
        y, cache = guarded_forward(node, [x.copy() for x in xs], copy_params(params))
        return y.copy(), cache
    return guarded_forward(node, xs, params)


def node_forward_local(
    node: Node,
    x: np.ndarray,
    y: np.ndarray,
    params: Params,
    rows: np.ndarray,
    index: np.ndarray,
    values: np.ndarray,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Guarded ``forward_local`` of a one-input node (protocol.py): the outputs a few
    changed inputs reach, as (index, values), each (R, K'); None: run ``forward``."""
    Calls.enter(node.name, "forward")
    try:
        out = node.layer.forward_local(x, y, params, rows, index, values)
    except (NumericalError, PluginError):
        raise
    except (Exception, SystemExit) as exc:
        raise raised_in(node.name, "forward_local", exc) from exc
    finally:
        Calls.leave()
    if out is None:
        return None
    ok = isinstance(out, tuple) and len(out) == 2
    where, got = (np.asarray(out[0]), np.asarray(out[1])) if ok else (None, None)
    if not ok or where.shape != got.shape or where.ndim != 2 or len(where) != len(rows):
        raise PluginError(
            node.name, "forward_local must return None or a pair (index, values), each (R, K)"
        )
    if got.dtype != values.dtype:
        got = real_dtype(node.name, "forward_local's values", got, values.dtype)
    return where, got


def guarded_loss_forward(spec: LossSpec, y: np.ndarray, target: np.ndarray | None):
    """The bare guarded per-example loss (no copies): y (M, *shape) -> ((M,) losses of
    y's dtype, cache)."""
    Calls.enter("loss", "forward")
    try:
        losses, cache = spec.loss.forward(y, target)
    except (Exception, SystemExit) as exc:
        raise raised_in("loss", f"{spec.type} forward", exc) from exc
    finally:
        Calls.leave()
    losses = np.asarray(losses)
    if losses.shape != (y.shape[0],):
        raise PluginError(
            "loss", f"{spec.type} forward must return one loss per example, shape ({y.shape[0]},)"
        )
    if losses.dtype != y.dtype:
        losses = real_dtype("loss", f"{spec.type} forward's losses", losses, y.dtype)
    return losses, cache


def loss_forward(spec: LossSpec, y: np.ndarray, target: np.ndarray | None):
    """Guarded per-example loss: y (M, *shape) -> ((M,) losses, cache). A loss the
    purity probes found writing into y or the target gets copies (``spec.defended``).

    A loss that is not per example (``LossSpec.per_example``: a batch-level loss, a
    ranking or contrastive loss over the batch) takes the rows it is handed as one
    batch, so M = P * N rows of stacked copies go to it one copy of N rows at a time
    (the cache is then None: the numeric side reads only the losses). A batch-mean loss
    handed 1,008 stacked rows had averaged over all of them (found by a hunt)."""
    if spec.defended:
        y = y.copy()
        target = None if target is None else target.copy()
    n, m = spec.batch_size, len(y)
    if spec.per_example or m <= n or m % n:
        return guarded_loss_forward(spec, y, target)
    whole = target is not None and len(target) == m  # tiled, or the N rows of one batch
    parts = [
        guarded_loss_forward(
            spec, y[k : k + n], None if target is None else target[k : k + n] if whole else target
        )[0]
        for k in range(0, m, n)
    ]
    return np.concatenate(parts), None


def tiles_target(loss) -> bool:
    """The loss declares ``tiles_target`` in the class whose ``forward`` it runs: a
    subclass that writes its own forward (a plugin deriving from a built-in loss) gets
    the tiling, whatever its base class said of the base's forward."""
    for klass in type(loss).__mro__:
        if "forward" in vars(klass):
            return bool(vars(klass).get("tiles_target", False))
    return False


def loss_rounding_terms(spec: LossSpec, y: np.ndarray, target: np.ndarray | None) -> float:
    """The loss's ``rounding_terms`` on y (N, *shape) (the protocol's: what its forward
    rounds beyond what |losses| and |dE/dy * y| show), guarded, on copies."""
    Calls.enter("loss", "rounding_terms")
    try:
        value = spec.loss.rounding_terms(y.copy(), None if target is None else target.copy())
        value = float(value)
    except (Exception, SystemExit) as exc:
        raise raised_in("loss", f"{spec.type} rounding_terms", exc) from exc
    finally:
        Calls.leave()
    if not (np.isfinite(value) and value >= 0):
        raise PluginError(
            "loss", f"{spec.type} rounding_terms must return a finite number >= 0, got {value}"
        )
    return value


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
    values = {k: np.array(v, copy=True) for k, v in as_inputs(inputs).items()}
    caches, returned = {}, {}
    for node in problem.network:
        xs = [values[v].copy() for v in node.inputs]
        y, cache = guarded_forward(node, xs, copy_params(node_params(params, node)))
        values[node.name] = y.copy()  # the layer may overwrite y later (its cache, a buffer)
        caches[node.name] = cache
        returned[node.name] = y
    output = problem.network.output
    if target is None:
        target = loss_target(problem, values[output].dtype)
    target = None if target is None else np.array(target, copy=True)
    losses, loss_cache = guarded_loss_forward(problem.loss, values[output].copy(), target)
    n = values[output].shape[0]
    loss = float(reduce_losses(losses, n, problem.loss.reduction)[0])
    return Trace(values, caches, losses, loss, loss_cache, output, returned)


def loss_target(problem: Problem, dtype: DType) -> np.ndarray | None:
    """The problem's target, a float target cast to ``dtype`` (integer labels stay)."""
    target = problem.loss.target
    if target is not None and target.dtype != dtype and np.issubdtype(target.dtype, np.floating):
        target = target.astype(dtype)
    return target


def guarded_loss_backward(spec: LossSpec, cache: Any, y: np.ndarray) -> np.ndarray:
    """The bare guarded loss backward (no copies): d(sum of losses)/dy, shaped like y
    (N, *shape), in y's dtype."""
    Calls.enter("loss", "backward")
    try:
        dy = np.asarray(spec.loss.backward(cache))
    except (Exception, SystemExit) as exc:
        raise raised_in("loss", "backward", exc) from exc
    finally:
        Calls.leave()
    if dy.shape != y.shape:
        raise PluginError(
            "loss", f"backward returned shape {list(dy.shape)}, expected {list(y.shape)}"
        )
    if dy.dtype != y.dtype:
        dy = real_dtype("loss", f"{spec.type} backward's dy", dy, y.dtype)
    return dy


def reduced_dy(spec: LossSpec, dy: np.ndarray) -> np.ndarray:
    """dE/dy for the reduced loss: the loss's own dy, divided by N for ``mean``."""
    return dy / dy.shape[0] if spec.reduction == "mean" else dy


def loss_backward(problem: Problem, trace: Trace) -> np.ndarray:
    """dE/d(network output), (N, *shape), from the loss's own backward (and the mean);
    the loss gets a copy of its cache and the result is gradcheck's own copy."""
    y = trace.values[trace.output]
    dy = guarded_loss_backward(problem.loss, copy_tree(trace.loss_cache), y)
    return np.array(reduced_dy(problem.loss, dy), copy=True)


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


def guarded_backward(
    node: Node, dy: np.ndarray, cache: Any, params: Params, xs: list[np.ndarray]
) -> tuple[list[np.ndarray], Params]:
    """The bare guarded backward of one node (no copies): (one dx per input, {param:
    grad}); checks the shape and dtype of every dx and the grads' keys, shapes and
    dtypes. xs: the node's inputs (only their shapes and dtypes are read)."""
    Calls.enter(node.name, "backward")
    try:
        out = node.layer.backward(dy, cache, params)
    except (Exception, SystemExit) as exc:
        raise raised_in(node.name, "backward", exc) from exc
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
        which = "dx" if len(xs) == 1 else f"dx for input {slot} ({node.inputs[slot]})"
        if d.shape != x.shape:
            raise PluginError(
                node.name,
                f"backward returned {which} of shape {list(d.shape)}, expected {list(x.shape)}",
            )
        if d.dtype != x.dtype:
            dxs[slot] = real_dtype(node.name, f"backward's {which}", d, x.dtype)
    missing = sorted(set(params) - set(grads))
    extra = sorted(set(grads) - set(params))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing gradient for {', '.join(missing)}")
        if extra:
            parts.append(f"gradient for unknown parameter {', '.join(map(str, extra))}")
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
        if g.dtype != params[name].dtype:
            g = real_dtype(node.name, f"backward's d{name}", g, params[name].dtype)
        checked[name] = g
    return dxs, checked


def node_backward(
    node: Node, dy: np.ndarray, cache: Any, params: Params, xs: list[np.ndarray]
) -> tuple[list[np.ndarray], Params]:
    """Guarded backward of one node, defended: the layer gets copies of dy, of its
    cache's arrays and of its parameters, and what it returns is copied, so that neither
    a layer writing into ``dy`` nor one that reuses a gradient buffer can change what
    gradcheck keeps. Never on the numeric side's hot path."""
    dxs, grads = guarded_backward(node, dy.copy(), copy_tree(cache), copy_params(params), xs)
    return [d.copy() for d in dxs], {k: g.copy() for k, g in grads.items()}


def problem_params(problem: Problem, dtype: DType = None) -> dict[str, Params]:
    """{owner name: {param: array}}, optionally cast (float32 problems upcast for
    numerics). Nodes that share another's parameters have no entry of their own."""
    return {
        n.name: {k: (v if dtype is None else v.astype(dtype)) for k, v in n.params.items()}
        for n in problem.network
        if n.share is None
    }


def require_finite(what: str, a: np.ndarray | float, hint: str | None = None) -> None:
    """Raise NumericalError (exit 3) when a value the check needs is NaN or Inf;
    ``hint``, when given, says why it may be."""
    if not np.all(np.isfinite(a)):
        raise NumericalError(
            f"{what} contains NaN or Inf; the check cannot be carried out "
            + (
                f"({hint})"
                if hint
                else "(look for overflow, log of 0, or inputs that are too large)"
            )
        )


def loss_input_hint(problem: Problem, trace: Trace) -> str | None:
    """What the loss says about the output it was fed (``Loss.input_warning``)."""
    try:
        return problem.loss.loss.input_warning(trace.values[trace.output], problem.loss.target)
    except Exception:  # a plugin's own check is no reason to hide the real error
        return None


def analytic_pass(problem: Problem, params: Mapping[str, Params]) -> tuple[Trace, Gradients]:
    """Forward and backward in the problem's dtype, refusing NaN/Inf (exit 3)."""
    with np.errstate(all="ignore"):
        trace = forward(problem, problem.inputs, params)
    for node in problem.network:
        require_finite(f"the output of layer {node.name!r}", trace.values[node.name])
    if not np.isfinite(trace.loss):
        require_finite("the loss", trace.loss, loss_input_hint(problem, trace))
    with np.errstate(all="ignore"):
        grads = backward(problem, trace, params)
    for value in problem.network.input_names:
        what = "the input" if value == INPUT else value
        require_finite(f"the gradient with respect to {what}", grads.deltas[value])
    for owner, g in grads.params.items():
        for p, v in g.items():
            require_finite(f"the gradient of {owner}.{p}", v)
    return trace, grads
