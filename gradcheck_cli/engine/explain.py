"""What ``gradcheck explain`` tells: one example's forward values and backward pass,
layer by layer, with the arithmetic the classic worked examples write out by hand.

Pure data (no click, no rich): :func:`explain` runs the analytic forward and backward
once on the whole batch and keeps example ``k``:

- every layer's output and delta (dE/d of its output), per example: (*out_shape);
- max pooling: which input each window routed its gradient to, found by asking the
  layer's own ``backward`` (one one-hot probe per window), so a buggy backward shows;
- conv2d: the kernel, bias and input gradients as sums of products, with the formula
  at the real sizes; dense: ``grad(P_j) = sum_i grad(FC_i) f'(z_i) W_ij`` and
  ``dE/dW_ij = d_i x_j``; element-wise layers: their local derivative f'.

Every sum carries both the total of its terms and the value the layer's backward gave,
so a wrong backward is visible as a mismatch. Which of these a layer gets is declared on
its class (``Layer.derivation``), so plugins choose too.

On a graph (gradcheck_cli/network.py) three things are told with their numbers: a value
several nodes read (a fork) gets the SUM of what each sends back (``Fork``); a node with
several inputs shows what it sends back to each (``Sent``; add copies its delta to
every input); a parameter several nodes use (``share:``) gets the sum of its gradient
over every use (``Uses``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import protocol
from ..config.suggest import did_you_mean
from ..indexing import BadIndex, parse_index, select, split_key
from ..network import Node
from ..problem import Problem
from ..protocol import describe, squeezed
from ..report import ExpectationResult, Mismatch
from .expectations import compare_expectations
from .explain_conv import FullConvolution, conv_details
from .explain_loss import (
    DeltaEntry,
    Descent,
    DescentStep,
    LossDerivation,
    after_softmax,
    descent,
    loss_delta,
)
from .passes import Gradients, Trace, analytic_pass, node_backward, node_params, problem_params
from .semantics import loss_warnings
from .sums import MAX_SUMS, MAX_TERMS, Accumulation, Factor, Listing, Sum, index_label, make_sum

__all__ = [
    "MAX_SUMS",
    "MAX_TERMS",
    "Accumulation",
    "DeltaEntry",
    "Descent",
    "DescentStep",
    "Explanation",
    "Factor",
    "FullConvolution",
    "Listing",
    "LossDerivation",
    "Sum",
    "explain",
]

#: Max-pooling windows probed one by one at most (one backward call each), unless
#: ``--terms`` lists more.
MAX_WINDOWS = 64


def derivation(layer: object) -> protocol.Derivation | None:
    """How ``layer`` declares its backward is derived (``Layer.derivation``), else None.

    Declared on the class, never looked up by type name: a plugin that subclasses Conv2d
    gets the conv explanation (and a wrong backward in it shows as sums that disagree
    with what backward gave), and a plugin may declare its own.
    """
    return getattr(layer, "derivation", None)


def _is_activation(layer: object) -> bool:
    """An activation f in FC_i = f(z_i), as the dense explanation writes it."""
    how = derivation(layer)
    return isinstance(how, protocol.ElementWise) and how.activation


@dataclass(frozen=True)
class Route:
    """Max pooling window (channel, row, col): its input rows/cols, and where its
    gradient went (``source``: (row, col) in the input, None if nowhere or spread)."""

    channel: int
    window: tuple[int, int]
    rows: tuple[int, int]  # first and last input row of the window (inclusive)
    cols: tuple[int, int]
    source: tuple[int, int] | None
    maximum: float  # the window's output value
    grad: float  # the delta it routed


@dataclass
class Routing:
    rule: str
    ties: str = ""  # the layer's documented tie policy
    routes: list[Route] = field(default_factory=list)
    windows: int = 0  # listed only when <= MAX_WINDOWS


@dataclass
class LocalDerivative:
    """An element-wise layer: delta_in = delta * f'(x); derivative shaped like the input."""

    formula: str
    derivative: np.ndarray


@dataclass
class Note:
    text: str


Detail = Accumulation | Routing | LocalDerivative | Note | FullConvolution | LossDerivation


@dataclass
class Fork:
    """A value several nodes read: its delta is the SUM of what each reader's backward
    sends back to it. parts: (reader, its contribution for example k); sums: the delta
    element by element as that sum, when small."""

    value: str
    parts: list[tuple[str, np.ndarray]]
    sums: Accumulation


@dataclass
class Sent:
    """What a multi-input node's backward sends back to each of its inputs (example k):
    (the value it read, that input's delta share)."""

    parts: list[tuple[str, np.ndarray]]


@dataclass
class Uses:
    """A parameter several nodes use (``share:``): its gradient is the sum over every
    use. parts: (node, that use's gradient for example k, in the user's shape)."""

    param: str
    parts: list[tuple[str, np.ndarray]]
    sums: Accumulation


@dataclass
class Expected:
    """An ``expect:`` value shown beside the engine's (per-example keys sliced to k).

    key: as written (``conv1.delta[0:2]``); base: the tensor's key without the index;
    tolerance: the rule in force in words; mismatches: every disagreeing element."""

    key: str
    expected: np.ndarray
    actual: np.ndarray
    passed: bool
    max_abs_error: float
    base: str = ""
    tolerance: str = ""
    mismatches: list[Mismatch] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base = self.base or self.key


@dataclass
class Step:
    """One layer of example k: output and delta (*out_shape), its parameters and their
    gradients (this example's share) in the shapes the user wrote, and how backward got
    them."""

    index: int  # 1-based position in the stack
    name: str
    type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    output: np.ndarray
    delta: np.ndarray
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    details: list[Detail] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)
    #: the values it reads and their shapes, in order
    reads: tuple[str, ...] = ()
    in_shapes: tuple[tuple[int, ...], ...] = ()
    #: True when it reads just the previous layer's output (the first: the one input)
    chain: bool = True
    #: the layer whose parameters it uses (share:); its own are then not repeated
    share: str | None = None
    #: its output is read by several nodes (else None)
    fork: Fork | None = None
    #: a multi-input node: what its backward sends to each input (else None)
    sent: Sent | None = None
    #: its parameters are used by other nodes too: each one's sum over the uses
    uses: list[Uses] = field(default_factory=list)


@dataclass
class Explanation:
    config: str
    name: str
    example: int
    batch_size: int
    batched: bool
    #: every network input (``input``, or ``input.x`` ...), example k in the user's shape
    inputs: dict[str, np.ndarray]
    input_grads: dict[str, np.ndarray]
    steps: list[Step]
    loss: float
    loss_type: str
    loss_rule: str  # one line: how dE/dy comes out of the loss
    reduction: str
    expected: list[Expected] = field(default_factory=list)  # loss, input.grad
    #: network inputs read by several nodes: the sum of what each sends back
    input_forks: dict[str, Fork] = field(default_factory=dict)
    #: the network output's delta as the loss's rule gives it (None: the loss has none)
    loss_delta: LossDerivation | None = None
    #: ``--lr``: one gradient-descent step of every parameter
    descent: DescentStep | None = None
    #: what the config and the loss are warned of (one line each, as ``run`` shows them)
    warnings: list[str] = field(default_factory=list)

    def keys(self) -> set[str]:
        """Every tensor written out as sums here, as ``--entry`` names them."""
        found: set[str] = set()
        if self.loss_delta is not None:
            found.add(self.loss_delta.key)
        for step in self.steps:
            for d in step.details:
                if isinstance(d, Accumulation | LossDerivation):
                    found.add(d.key)
                elif isinstance(d, FullConvolution):
                    found.add(d.sums.key)
            found.update(u.sums.key for u in step.uses)
            if step.fork is not None:
                found.add(step.fork.sums.key)
        found.update(f.sums.key for f in self.input_forks.values())
        return found - {""}

    @property
    def input(self) -> np.ndarray:
        """The (first) network input, example k in the shape the user wrote."""
        return next(iter(self.inputs.values()))

    @property
    def input_grad(self) -> np.ndarray:
        return next(iter(self.input_grads.values()))


def explain(
    problem: Problem,
    example: int = 0,
    listing: Listing | None = None,
    lr: float | None = None,
) -> Explanation:
    """The explanation of example ``example`` (0-based) of a validated problem.

    listing: how much to write out term by term (default: tensors of up to MAX_SUMS
    entries); lr: also one gradient-descent step with this learning rate.
    Raises NumericalError (NaN/Inf) and PluginError like a check does; ValueError when
    ``example`` is out of range.
    """
    listing = listing or Listing()
    n = problem.batch_size
    if not 0 <= example < n:
        raise ValueError(f"example {example} is out of range: the batch has {n}")
    params = problem_params(problem)
    trace, grads = analytic_pass(problem, params)
    pending = compare_expectations(problem, trace, grads)

    def take(*bases: str) -> list[ExpectationResult]:
        """The expectations of these tensors, removed from ``pending``."""
        found = [e for e in pending if e.base in bases]
        pending[:] = [e for e in pending if e.base not in bases]
        return found

    network = problem.network

    steps = []
    previous = network.input_names[0] if len(network.input_names) == 1 else None
    for i, spec in enumerate(network):
        step = Step(
            index=i + 1,
            name=spec.name,
            type=spec.type,
            in_shape=spec.in_shape,
            out_shape=spec.out_shape,
            output=trace.values[spec.name][example],
            delta=grads.deltas[spec.name][example],
            params={p: v.reshape(spec.user_shapes.get(p, v.shape)) for p, v in spec.params.items()},
            grads=_own_grads(problem, spec, trace, grads, params, example),
            reads=tuple(spec.inputs),
            in_shapes=tuple(spec.in_shapes),
            chain=tuple(spec.inputs) == (previous,),
            share=spec.share,
            fork=_fork(problem, spec.name, grads, example, listing),
            sent=_sent(spec, grads, example),
        )
        previous = spec.name
        step.details = _details(problem, spec, trace, grads, params, example, step, listing)
        for e in take(f"{spec.name}.output", f"{spec.name}.delta"):
            step.expected.append(_sliced(e, problem, example))
        grads_of = [f"{spec.name}.{p}.grad" for p in spec.params] if spec.share is None else []
        step.expected += [_whole(e) for e in take(*grads_of)]
        steps.append(step)
    by_name = {step.name: step for step in steps}
    for step in steps:
        if step.share is None and len(network.users(step.name)) > 1:
            users = [by_name[n.name] for n in network.users(step.name)]
            step.uses = [_uses(step.name, p, users, listing) for p in step.grads]
    input_keys = {f"{v}.grad" for v in network.input_names}
    rest = [_sliced(e, problem, example) if e.base in input_keys else _whole(e) for e in pending]
    shapes = problem.input_user_shapes()
    explanation = Explanation(
        config=problem.path,
        name=problem.name,
        example=example,
        batch_size=n,
        batched=problem.batched,
        inputs={v: _user_input(problem, shapes[v], a[example]) for v, a in problem.inputs.items()},
        input_grads={
            v: _user_input(problem, shapes[v], grads.deltas[v][example])
            for v in network.input_names
        },
        steps=steps,
        loss=trace.loss,
        loss_type=problem.loss.type,
        loss_rule=describe(type(problem.loss.loss)),
        reduction=problem.loss.reduction,
        expected=rest,
        input_forks={
            v: fork
            for v in network.input_names
            if (fork := _fork(problem, v, grads, example, listing)) is not None
        },
        loss_delta=loss_delta(problem, trace, grads, example, listing),
        descent=None if lr is None else descent(problem, params, grads, lr, listing),
        warnings=[*problem.warnings, *loss_warnings(problem, trace)],
    )
    last = steps[-1]
    shown = after_softmax(problem, trace, grads, example, listing)
    if shown is not None:
        last.details.append(shown)
    return explanation


def _user_input(problem: Problem, shape: tuple[int, ...], a: np.ndarray) -> np.ndarray:
    """An input-shaped array of one example in the shape the user wrote it."""
    return a.reshape(shape[1:] if problem.batched else shape)


def _reader_labels(readers: list[tuple[Node, int]]) -> list[str]:
    """How each (node, slot) reading a value is called: the node's name, with the slot
    when the node reads the value more than once (``sq[1]``)."""
    counts: dict[str, int] = {}
    for node, _ in readers:
        counts[node.name] = counts.get(node.name, 0) + 1
    return [f"{n.name}[{s}]" if counts[n.name] > 1 else n.name for n, s in readers]


def _fork(problem: Problem, value: str, grads: Gradients, k: int, listing: Listing) -> Fork | None:
    """The delta of a value several nodes read, as the sum of their contributions."""
    readers = problem.network.readers(value)
    if len(readers) < 2:
        return None
    labels = _reader_labels(readers)
    parts = [
        (label, grads.contributions[(node.name, slot)][k])
        for label, (node, slot) in zip(labels, readers, strict=True)
    ]
    total = grads.deltas[value][k]
    sums = _sum_of_parts(
        f"fork: {value} is read by {_and(labels)}, so its delta is the SUM of what each "
        "sends back (the chain rule adds up the paths from the loss)",
        f"dE/d({value})",
        parts,
        total,
        "via ",
        listing,
        value,
    )
    return Fork(value, parts, sums)


def _sent(spec: Node, grads: Gradients, k: int) -> Sent | None:
    """What a multi-input node's backward sent to each of its inputs."""
    if not spec.multi_input:
        return None
    return Sent([(v, grads.contributions[(spec.name, s)][k]) for s, v in enumerate(spec.inputs)])


def _uses(owner: str, param: str, users: list[Step], listing: Listing) -> Uses:
    """The gradient of ``owner.param`` as the sum of every user's own share."""
    parts = [(u.name, u.grads[param]) for u in users]
    total = np.sum([g for _, g in parts], axis=0)
    sums = _sum_of_parts(
        f"shared {param}: {_and([u.name for u in users])} use {owner}'s {param}, so its "
        "gradient is the SUM of what each use contributes",
        f"dE/d{param}",
        parts,
        total,
        "by ",
        listing,
        f"{owner}.{param}",
    )
    return Uses(param, parts, sums)


def _sum_of_parts(
    title: str,
    target: str,
    parts: list[tuple[str, np.ndarray]],
    total: np.ndarray,
    prefix: str,
    listing: Listing,
    key: str,
) -> Accumulation:
    """``target = part_1 + part_2 + ...``, element by element for the chosen entries."""
    formula = f"{target} = " + " + ".join(f"({prefix}{label})" for label, _ in parts)
    acc = Accumulation(title, formula, entries=int(total.size), key=key)
    for flat in listing.chosen(key, int(total.size)):
        ix = np.unravel_index(flat, total.shape) if total.ndim else ()
        terms = [(Factor(f"{prefix}{label}", float(a[ix])),) for label, a in parts]
        where = index_label(*ix) if ix else ""
        # every part is a path of its own: a 0 on one of them is worth seeing
        acc.sums.append(make_sum(f"{target}{where}", terms, total[ix], keep_zeros=True))
    return acc


def _and(names: list[str]) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]


def _whole(e: ExpectationResult) -> Expected:
    return Expected(
        e.name,
        e.expected,
        e.actual,
        e.passed,
        e.max_abs_error,
        base=e.base,
        tolerance=e.tolerance.get("description", ""),
        mismatches=list(e.mismatches),
    )


def _sliced(e: ExpectationResult, problem: Problem, k: int) -> Expected:
    """Per-example expectations of a batched config, cut down to example k (a key with
    an index is shown as written)."""
    whole = e.name == e.base
    if whole and problem.batched and e.expected.ndim and e.expected.shape[0] == problem.batch_size:
        shown = _whole(e)
        shown.expected, shown.actual = e.expected[k], e.actual[k]
        shown.mismatches = [m for m in e.mismatches if m.index[:1] == (k,)]
        return shown
    return _whole(e)


def _masked_delta(delta: np.ndarray, k: int) -> np.ndarray:
    """The delta with every example but k zeroed: backward then gives k's share."""
    if delta.shape[0] == 1:
        return delta
    out = np.zeros_like(delta)
    out[k] = delta[k]
    return out


def _own_grads(
    problem: Problem, spec: Node, trace: Trace, grads: Gradients, params: dict, k: int
) -> dict[str, np.ndarray]:
    """This example's share of a node's parameter gradients (its own use of them), in
    the user's shapes."""
    if not spec.params:
        return {}
    if problem.batch_size == 1:
        own = grads.per_use[spec.name]
    else:
        delta = _masked_delta(grads.deltas[spec.name], k)
        _, own = node_backward(
            spec, delta, trace.caches[spec.name], node_params(params, spec), trace.inputs_of(spec)
        )
    return {p: g.reshape(spec.user_shapes.get(p, g.shape)) for p, g in own.items()}


def _details(
    problem: Problem,
    spec: Node,
    trace: Trace,
    grads: Gradients,
    params: dict,
    k: int,
    step: Step,
    listing: Listing,
) -> list[Detail]:
    how = derivation(spec.layer)
    x = trace.values[spec.inputs[0]]
    dx = grads.contributions[(spec.name, 0)]  # what this node's own backward sent down
    if isinstance(how, protocol.ElementWise):
        return [LocalDerivative(how.derivative, _local_derivative(spec, trace, params)[k])]
    if isinstance(how, protocol.Routing):
        return [_routing(spec, trace, grads, params, k, listing)]
    if isinstance(how, protocol.Note):
        return [Note(how.text)]
    if isinstance(how, protocol.ConvSums):
        return conv_details(spec, x[k], grads.deltas[spec.name][k], dx[k], step.grads, listing)
    if isinstance(how, protocol.DenseSums):
        return _dense(problem, spec, trace, grads, params, x[k], dx[k], step.grads, k, listing)
    return []


def _local_derivative(spec: Node, trace: Trace, params: dict) -> np.ndarray:
    """f'(x) of an element-wise node, (N, *shape): its own backward fed ones."""
    ones = np.ones_like(trace.values[spec.name])
    xs = trace.inputs_of(spec)
    fprime, _ = node_backward(spec, ones, trace.caches[spec.name], node_params(params, spec), xs)
    return fprime[0]


def _routing(
    spec: Node, trace: Trace, grads: Gradients, params: dict, k: int, listing: Listing
) -> Routing:
    g = spec.layer.geometry
    delta = grads.deltas[spec.name]
    xs = trace.inputs_of(spec)
    c, ho, wo = spec.out_shape
    h, w = spec.in_shape[1:]
    rule = "each window passes its whole gradient to its maximum; its other inputs get 0"
    routing = Routing(rule, ties=getattr(type(spec.layer), "kinks", ""), windows=c * ho * wo)
    most = None if listing.limit is None else max(MAX_WINDOWS, listing.limit)
    if most is not None and routing.windows > most:
        return routing
    output = trace.values[spec.name][k]
    for ch in range(c):
        for a in range(ho):
            for b in range(wo):
                probe = np.zeros_like(delta)
                probe[k, ch, a, b] = 1.0
                (dx,), _ = node_backward(
                    spec, probe, trace.caches[spec.name], node_params(params, spec), xs
                )
                hit = np.argwhere(dx[k, ch] != 0)
                source = (int(hit[0][0]), int(hit[0][1])) if len(hit) == 1 else None
                r0, c0 = a * g.sh - g.ph, b * g.sw - g.pw
                routing.routes.append(
                    Route(
                        channel=ch,
                        window=(a, b),
                        rows=(max(r0, 0), min(r0 + g.kh, h) - 1),
                        cols=(max(c0, 0), min(c0 + g.kw, w) - 1),
                        source=source,
                        maximum=float(output[ch, a, b]),
                        grad=float(delta[k, ch, a, b]),
                    )
                )
    return routing


def _dense(
    problem: Problem,
    spec: Node,
    trace: Trace,
    grads: Gradients,
    params: dict,
    x: np.ndarray,
    dx: np.ndarray,
    own: dict[str, np.ndarray],
    k: int,
    listing: Listing,
) -> list[Detail]:
    """dense of one example: x (F,) its input, dx (F,) its input's delta."""
    weight = node_params(params, spec)["weight"]  # (O, F)
    n_out, n_in = weight.shape
    delta = grads.deltas[spec.name][k]
    readers = problem.network.readers(spec.name)
    after = readers[0][0] if len(readers) == 1 else None  # FC = f(z) when one f reads z
    if after is not None and _is_activation(after.layer):
        upstream = grads.deltas[after.name][k]
        fprime = _local_derivative(after, trace, params)[k]
        formula = f"grad(P_j) = sum_{{i<{n_out}}} grad(FC_i) * f'(z_i) * W[i,j]"
        legend = (
            f"P = the input of {spec.name}, z = its output, FC = f(z) the output of "
            f"{after.name} ({after.type}), grad = dE/d"
        )
    else:
        upstream, fprime = delta, None
        formula = f"grad(P_j) = sum_{{i<{n_out}}} grad(FC_i) * W[i,j]"
        legend = (
            f"P = the input of {spec.name}, FC = its output, grad = dE/d; "
            "no activation follows, so f' = 1"
        )
    key = spec.inputs[0]
    inputs = Accumulation(
        "input gradient: every input gets a different sum, because W differs",
        formula + f"   for j < {n_in}",
        legend,
        entries=n_in,
        key=key,
    )
    for j in listing.chosen(key, n_in):
        products = []
        for o in range(n_out):
            factors = [Factor(f"grad(FC_{o})", float(upstream[o]), "upstream gradient")]
            if fprime is not None:
                factors.append(Factor(f"f'(z_{o})", float(fprime[o]), "f'"))
            factors.append(Factor(f"W[{o},{j}]", float(weight[o, j]), "weight"))
            products.append(tuple(factors))
        inputs.sums.append(make_sum(f"grad(P_{j})", products, dx[j], max_terms=listing.terms(key)))
    key = f"{spec.owner}.weight"
    weights = Accumulation(
        "weight gradient: the outer product of the delta and the input",
        "dE/dW[i,j] = d[i] * x[j]   (d = the delta of " + spec.name + ", x = its input)",
        entries=weight.size,
        key=key,
    )
    dw = own["weight"].reshape(n_out, n_in)
    for flat in listing.chosen(key, weight.size):
        o, j = np.unravel_index(flat, (n_out, n_in))
        products = [
            (Factor(f"d[{o}]", float(delta[o]), "delta"), Factor(f"x[{j}]", float(x[j]), "input"))
        ]
        weights.sums.append(make_sum(f"dE/dW[{o},{j}]", products, dw[o, j]))
    details: list[Detail] = [inputs, weights]
    if "bias" in own:
        details.append(Note("bias gradient: dE/db[i] = d[i], the delta itself"))
    return details


def tensor_stats(a: np.ndarray) -> dict[str, Any]:
    """Shape, min, max, mean and 2-norm of an array (for tensors too big to print)."""
    a = np.asarray(a, dtype=np.float64)
    return {
        "shape": tuple(a.shape),
        "min": float(a.min()),
        "max": float(a.max()),
        "mean": float(a.mean()),
        "norm": float(np.linalg.norm(a.reshape(-1))),
    }


class BadEntry(ValueError):
    """An ``--entry`` that names no tensor, an index that does not fit, or a tensor that
    is not written out as sums: the message says what exists."""


def listing_for(problem: Problem, limit: int | None, entries: list[str]) -> Listing:
    """The Listing for ``--terms`` (limit; None: all) and ``--entry`` texts such as
    ``conv1.weight[0,0,1,1]``, ``input[1:3, 2]``, ``pool1.delta[0]`` (one example's
    coordinates; no index: the whole tensor). BadEntry names what would be right."""
    chosen: dict[str, set[int]] = {}
    for text in entries:
        key, shapes = _entry_tensor(problem, text)
        base, index_text = split_key(text)
        if index_text is None:
            positions = range(int(np.prod(shapes[0], dtype=np.int64)))
        else:
            try:
                picked = select(parse_index(index_text), shapes)
            except BadIndex as err:
                raise BadEntry(
                    f"--entry {text}: [{index_text}] {err}; {base} has shape {list(shapes[0])}"
                ) from None
            positions = picked.positions.reshape(-1).tolist()
        chosen.setdefault(key, set()).update(int(p) for p in positions)
    return Listing(limit, {k: frozenset(v) for k, v in chosen.items()})


def _entry_tensor(problem: Problem, text: str) -> tuple[str, list[tuple[int, ...]]]:
    """(the Listing key, the shapes its index may be read in) of an ``--entry``."""
    network = problem.network
    base, _ = split_key(text)
    stem = base[: -len(".grad")] if base.endswith(".grad") else base
    user = problem.input_user_shapes()
    if network.is_input(stem):
        shape = network.shape(stem)
        written = user[stem][1:] if problem.batched else user[stem]
        return stem, [tuple(written), shape, squeezed(shape)]
    layer, _, what = stem.rpartition(".")
    if what == "delta" and layer in network:
        shape = network.shape(layer)
        return layer, [shape, squeezed(shape)]
    if layer in network and what in network.node(layer).params:
        node = network.node(layer)
        internal = tuple(node.params[what].shape)
        owner = network.node(node.owner)
        written = tuple(owner.user_shapes.get(what, internal))
        return f"{node.owner}.{what}", [written, internal, squeezed(internal)]
    names = [*network.input_names]
    for node in network:
        names += [f"{node.name}.{p}" for p in node.params] + [f"{node.name}.delta"]
    raise BadEntry(
        f"--entry {text}: no tensor {base!r}; an entry names a parameter, an input or a "
        f"layer's delta" + did_you_mean(stem, names, listing="this config has")
    )


def missing_entries(explanation: Explanation, listing: Listing) -> list[str]:
    """The ``--entry`` tensors this explanation writes no sums for, each with why and
    what it does write out (empty when every one is there)."""
    keys = explanation.keys()
    told = ", ".join(sorted(_entry_name(k, explanation) for k in keys)) or "none"
    return [
        f"--entry {_entry_name(key, explanation)}: {_computed_by(key, explanation)}, which "
        f"writes no sum of products for it; entries with sums: {told}"
        for key in listing.entries
        if key not in keys
    ]


def _computed_by(key: str, explanation: Explanation) -> str:
    """Which layers' backward gives the tensor of Listing key ``key``, in words."""
    if "." in key and key not in explanation.inputs:  # a parameter: owner.param
        layer = key.rpartition(".")[0]
        users = [s for s in explanation.steps if layer in (s.name, s.share)]
        return f"its gradient comes from {_and([f'{s.name} ({s.type})' for s in users])}"
    readers = [s for s in explanation.steps if key in s.reads]
    if not readers:
        return "it is the network output, whose delta the loss gives"
    return f"its delta is what {_and([f'{s.name} ({s.type})' for s in readers])} sends back"


def _entry_name(key: str, explanation: Explanation) -> str:
    """A Listing key as ``--entry`` writes it: ``input``, ``conv1.weight``, ``pool1.delta``."""
    if key in explanation.inputs or "." in key:
        return key
    return f"{key}.delta"
