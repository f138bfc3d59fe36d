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

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import protocol
from ..network import Node
from ..problem import Problem
from ..protocol import describe
from ..report import ExpectationResult, Mismatch
from .expectations import compare_expectations
from .passes import Gradients, Trace, analytic_pass, node_backward, node_params, problem_params

#: Sums listed term by term only when a tensor has at most this many entries.
MAX_SUMS = 16
#: Nonzero terms listed per sum; the rest are counted in ``Sum.omitted``.
MAX_TERMS = 16
#: Max-pooling windows probed one by one at most (one backward call each).
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
class Factor:
    label: str  # "d[0,2]", "o[0,2]", "W[1,3]"
    value: float


@dataclass
class Sum:
    """``target = sum of products``; only nonzero products are kept in ``terms``.

    total: the sum of every product; value: what the layer's backward gave for target.
    """

    target: str
    terms: list[tuple[Factor, ...]]
    total: float
    value: float
    omitted: int = 0  # nonzero terms beyond MAX_TERMS, not listed
    count: int = 0  # products in the sum, zero or not (0: nothing contributes)
    slack: float = 0.0  # rounding the layer's backward may carry (its dtype, its sizes)

    @property
    def agrees(self) -> bool:
        return abs(self.total - self.value) <= self.slack


@dataclass
class Accumulation:
    """How one gradient is assembled: a formula and, for small tensors, its sums."""

    title: str
    formula: str
    legend: str = ""
    sums: list[Sum] = field(default_factory=list)
    entries: int = 0  # how many sums the tensor has (listed only when <= MAX_SUMS)


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


Detail = Accumulation | Routing | LocalDerivative | Note


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

    @property
    def input(self) -> np.ndarray:
        """The (first) network input, example k in the shape the user wrote."""
        return next(iter(self.inputs.values()))

    @property
    def input_grad(self) -> np.ndarray:
        return next(iter(self.input_grads.values()))


def explain(problem: Problem, example: int = 0) -> Explanation:
    """The explanation of example ``example`` (0-based) of a validated problem.

    Raises NumericalError (NaN/Inf) and PluginError like a check does; ValueError when
    ``example`` is out of range.
    """
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
            fork=_fork(problem, spec.name, grads, example),
            sent=_sent(spec, grads, example),
        )
        previous = spec.name
        step.details = _details(problem, spec, trace, grads, params, example, step)
        for e in take(f"{spec.name}.output", f"{spec.name}.delta"):
            step.expected.append(_sliced(e, problem, example))
        grads_of = [f"{spec.name}.{p}.grad" for p in spec.params] if spec.share is None else []
        step.expected += [_whole(e) for e in take(*grads_of)]
        steps.append(step)
    by_name = {step.name: step for step in steps}
    for step in steps:
        if step.share is None and len(network.users(step.name)) > 1:
            users = [by_name[n.name] for n in network.users(step.name)]
            step.uses = [_uses(step.name, p, users) for p in step.grads]
    input_keys = {f"{v}.grad" for v in network.input_names}
    rest = [_sliced(e, problem, example) if e.base in input_keys else _whole(e) for e in pending]
    shapes = problem.input_user_shapes()
    return Explanation(
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
            if (fork := _fork(problem, v, grads, example)) is not None
        },
    )


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


def _fork(problem: Problem, value: str, grads: Gradients, k: int) -> Fork | None:
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
    )
    return Fork(value, parts, sums)


def _sent(spec: Node, grads: Gradients, k: int) -> Sent | None:
    """What a multi-input node's backward sent to each of its inputs."""
    if not spec.multi_input:
        return None
    return Sent([(v, grads.contributions[(spec.name, s)][k]) for s, v in enumerate(spec.inputs)])


def _uses(owner: str, param: str, users: list[Step]) -> Uses:
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
    )
    return Uses(param, parts, sums)


def _sum_of_parts(
    title: str,
    target: str,
    parts: list[tuple[str, np.ndarray]],
    total: np.ndarray,
    prefix: str,
) -> Accumulation:
    """``target = part_1 + part_2 + ...``, element by element when small."""
    formula = f"{target} = " + " + ".join(f"({prefix}{label})" for label, _ in parts)
    acc = Accumulation(title, formula, entries=int(total.size))
    if total.size <= MAX_SUMS:
        for ix in np.ndindex(total.shape):
            terms = [(Factor(f"{prefix}{label}", float(a[ix])),) for label, a in parts]
            where = _index(*ix) if ix else ""
            # every part is a path of its own: a 0 on one of them is worth seeing
            acc.sums.append(_sum(f"{target}{where}", terms, total[ix], keep_zeros=True))
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
    problem: Problem, spec: Node, trace: Trace, grads: Gradients, params: dict, k: int, step: Step
) -> list[Detail]:
    how = derivation(spec.layer)
    x = trace.values[spec.inputs[0]]
    dx = grads.contributions[(spec.name, 0)]  # what this node's own backward sent down
    if isinstance(how, protocol.ElementWise):
        return [LocalDerivative(how.derivative, _local_derivative(spec, trace, params)[k])]
    if isinstance(how, protocol.Routing):
        return [_routing(spec, trace, grads, params, k)]
    if isinstance(how, protocol.Note):
        return [Note(how.text)]
    if isinstance(how, protocol.ConvSums):
        return _conv(spec, x[k], grads.deltas[spec.name][k], dx[k], step.grads)
    if isinstance(how, protocol.DenseSums):
        return _dense(problem, spec, trace, grads, params, x[k], dx[k], step.grads, k)
    return []


def _local_derivative(spec: Node, trace: Trace, params: dict) -> np.ndarray:
    """f'(x) of an element-wise node, (N, *shape): its own backward fed ones."""
    ones = np.ones_like(trace.values[spec.name])
    xs = trace.inputs_of(spec)
    fprime, _ = node_backward(spec, ones, trace.caches[spec.name], node_params(params, spec), xs)
    return fprime[0]


def _routing(spec: Node, trace: Trace, grads: Gradients, params: dict, k: int) -> Routing:
    g = spec.layer.geometry
    delta = grads.deltas[spec.name]
    xs = trace.inputs_of(spec)
    c, ho, wo = spec.out_shape
    h, w = spec.in_shape[1:]
    rule = "each window passes its whole gradient to its maximum; its other inputs get 0"
    routing = Routing(rule, ties=getattr(type(spec.layer), "kinks", ""), windows=c * ho * wo)
    if routing.windows > MAX_WINDOWS:
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


def _index(*ix: int) -> str:
    return "[" + ",".join(str(v) for v in ix) + "]"


def _sum(
    target: str,
    products: list[tuple[Factor, ...]],
    value: np.generic | float,
    keep_zeros: bool = False,
) -> Sum:
    """A Sum of the given products (zeros dropped unless ``keep_zeros``, at most
    MAX_TERMS listed).

    value: the layer's backward result, whose dtype bounds how far it may round away
    from the exact sum: a few units in the last place per term, relative to sum |term|.
    """
    values = [math.prod(f.value for f in t) for t in products]
    nonzero = [t for t, v in zip(products, values, strict=True) if v != 0 or keep_zeros]
    dtype = value.dtype if isinstance(value, np.generic) else np.dtype(np.float64)
    eps = float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else 0.0
    scale = math.fsum(abs(v) for v in values)
    return Sum(
        target=target,
        terms=nonzero[:MAX_TERMS],
        total=float(math.fsum(values)),
        value=float(value),
        omitted=max(len(nonzero) - MAX_TERMS, 0),
        count=len(products),
        slack=4 * (len(values) + 1) * eps * scale + np.finfo(np.float64).tiny,
    )


def _sizes(*pairs: tuple[str, int]) -> str:
    return " ".join(f"sum_{{{v}<{n}}}" for v, n in pairs)


def _conv(
    spec: Node, o: np.ndarray, d: np.ndarray, do: np.ndarray, own: dict[str, np.ndarray]
) -> list[Detail]:
    """conv2d of one example: o (C, H, W) its input, d (O, Ho, Wo) its delta, do its dx."""
    g = spec.layer.geometry
    n_out, ho, wo = d.shape
    n_in, h, w = o.shape
    simple = n_out == 1 and n_in == 1
    row = f"{g.sh}i+m" if g.sh != 1 else "i+m"
    col = f"{g.sw}j+n" if g.sw != 1 else "j+n"
    ranges = _sizes(("i", ho), ("j", wo))
    legend = "o = the layer's input, d = its delta dE/d(output)"
    if g.ph or g.pw:
        legend += f", o zero-padded by ({g.ph}, {g.pw}) (padding adds nothing)"
    if simple:
        formula = f"dE/dw[m,n] = {ranges} d[i,j] * o[{row}, {col}]"
    else:
        formula = f"dE/dw[k,c,m,n] = {ranges} d[k,i,j] * o[c, {row}, {col}]"
    formula += f"   for m < {g.kh}, n < {g.kw}"
    opad = np.pad(o, ((0, 0), (g.ph, g.ph), (g.pw, g.pw)))

    def o_label(c: int, r: int, s: int) -> str:
        rr, ss = r - g.ph, s - g.pw
        return f"o{_index(rr, ss)}" if simple else f"o{_index(c, rr, ss)}"

    def d_label(kk: int, i: int, j: int) -> str:
        return f"d{_index(i, j)}" if simple else f"d{_index(kk, i, j)}"

    def w_label(kk: int, c: int, m: int, n: int) -> str:
        return f"w{_index(m, n)}" if simple else f"w{_index(kk, c, m, n)}"

    kernel = Accumulation(
        "kernel gradient: every output position adds its contribution (shared weights)",
        formula,
        legend,
        entries=n_out * n_in * g.kh * g.kw,
    )
    dw = own["weight"].reshape(n_out, n_in, g.kh, g.kw)
    if kernel.entries <= MAX_SUMS:
        for kk, c, m, n in np.ndindex(n_out, n_in, g.kh, g.kw):
            products = [
                (
                    Factor(d_label(kk, i, j), float(d[kk, i, j])),
                    Factor(
                        o_label(c, i * g.sh + m, j * g.sw + n),
                        float(opad[c, i * g.sh + m, j * g.sw + n]),
                    ),
                )
                for i in range(ho)
                for j in range(wo)
            ]
            target = f"dE/dw{_index(m, n)}" if simple else f"dE/dw{_index(kk, c, m, n)}"
            kernel.sums.append(_sum(target, products, dw[kk, c, m, n]))
    details: list[Detail] = [kernel]
    if "bias" in own:
        bias = Accumulation(
            "bias gradient: the sum of the delta over the output positions",
            f"dE/db[k] = {ranges} d[k,i,j]",
            entries=n_out,
        )
        if n_out <= MAX_SUMS:
            for kk in range(n_out):
                products = [
                    (Factor(d_label(kk, i, j), float(d[kk, i, j])),) for i, j in np.ndindex(ho, wo)
                ]
                bias.sums.append(_sum(f"dE/db{_index(kk)}", products, own["bias"].reshape(-1)[kk]))
        details.append(bias)
    details.append(_conv_input(spec, d, do, d_label, w_label, o_label, simple))
    return details


def _conv_input(spec, d, do, d_label, w_label, o_label, simple) -> Accumulation:
    """Each input pixel gets the SUM over every output that read it of d * w."""
    g = spec.layer.geometry
    weight = spec.params["weight"]
    n_out, ho, wo = d.shape
    n_in, h, w = do.shape
    step_r = f"{g.sh}i" if g.sh != 1 else "i"
    step_c = f"{g.sw}j" if g.sw != 1 else "j"
    if simple:
        formula = f"dE/do[r,s] = sum over (i,j) d[i,j] * w[r-{step_r}, s-{step_c}]"
    else:
        formula = f"dE/do[c,r,s] = sum over (k,i,j) d[k,i,j] * w[k, c, r-{step_r}, s-{step_c}]"
    formula += f"   (outputs whose {g.kh}x{g.kw} window covers it; none: 0)"
    acc = Accumulation(
        "input gradient: a pixel read by several outputs gets the SUM of their gradients",
        formula,
        entries=n_in * h * w,
    )
    if acc.entries > MAX_SUMS:
        return acc
    for c, r, s in np.ndindex(n_in, h, w):
        rp, sp = r + g.ph, s + g.pw
        products = []
        for kk, i, j in np.ndindex(n_out, ho, wo):
            m, n = rp - i * g.sh, sp - j * g.sw
            if 0 <= m < g.kh and 0 <= n < g.kw:
                products.append(
                    (
                        Factor(d_label(kk, i, j), float(d[kk, i, j])),
                        Factor(w_label(kk, c, m, n), float(weight[kk, c, m, n])),
                    )
                )
        target = f"dE/d{o_label(c, rp, sp)}"
        acc.sums.append(_sum(target, products, do[c, r, s]))
    return acc


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
    inputs = Accumulation(
        "input gradient: every input gets a different sum, because W differs",
        formula + f"   for j < {n_in}",
        legend,
        entries=n_in,
    )
    if n_in <= MAX_SUMS:
        for j in range(n_in):
            products = []
            for o in range(n_out):
                factors = [Factor(f"grad(FC_{o})", float(upstream[o]))]
                if fprime is not None:
                    factors.append(Factor(f"f'(z_{o})", float(fprime[o])))
                factors.append(Factor(f"W[{o},{j}]", float(weight[o, j])))
                products.append(tuple(factors))
            inputs.sums.append(_sum(f"grad(P_{j})", products, dx[j]))
    weights = Accumulation(
        "weight gradient: the outer product of the delta and the input",
        "dE/dW[i,j] = d[i] * x[j]   (d = the delta of " + spec.name + ", x = its input)",
        entries=weight.size,
    )
    if weight.size <= MAX_SUMS:
        dw = own["weight"].reshape(n_out, n_in)
        for o, j in np.ndindex(n_out, n_in):
            products = [(Factor(f"d[{o}]", float(delta[o])), Factor(f"x[{j}]", float(x[j])))]
            weights.sums.append(_sum(f"dE/dW[{o},{j}]", products, dw[o, j]))
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
