"""The network model: layers as nodes with named inputs, in topological order.

Every structural question the engine asks goes through :class:`Network`: which nodes
read a value, what lies downstream of a tensor (so must be recomputed when it moves),
which values can be reused from the unperturbed forward pass (the prefix cache), and
which nodes use a parameter. Nothing outside this module indexes layers by position or
assumes that layer k reads layer k - 1, so a fork (one value read by several nodes), a
node with several inputs and a parameter shared by several nodes need no change
elsewhere.

Names. A *value* is a network input (``input``, or ``input.<name>`` when the network
takes several) or the output of a node (the node's name). A *tensor* that gets checked is
a network input or a parameter, ``<owner>.<param>``; a parameter belongs to the node that
declares it and may be *used* by other nodes too (``share:``). The network's output is
the last node's value; the loss reads it.

Shapes are per example (no batch axis). This module holds structure only: no numpy
arithmetic, no I/O.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from .protocol import Layer, Params, Shape

#: The one network input of a config with ``input:`` (several: ``input.<name>``).
INPUT = "input"


@dataclass
class Node:
    """One layer of the network, ready to run.

    params hold the layer's internal shapes (conv weight (out, in, kh, kw)); user_shapes
    the shapes the user wrote (a 2-D conv kernel stays (kh, kw) in reports). inputs name
    the values the node reads, in the order its forward takes them (empty: the previous
    node's output, or the network input for the first node; the Network resolves it).
    share names the node whose parameters this one uses (its own ``params`` are then
    that node's arrays, and its gradients are added to that node's).
    """

    name: str
    type: str
    layer: Layer
    params: Params
    in_shape: Shape
    out_shape: Shape
    user_shapes: dict[str, Shape] = field(default_factory=dict)
    line: int | None = None
    inputs: tuple[str, ...] = ()
    share: str | None = None
    #: per-example shape of every input, in order (default: (in_shape,))
    in_shapes: tuple[Shape, ...] = ()
    #: Set by the purity probes (engine/purity.py), never by the user, and read by the
    #: engine's calls into the layer. ``defended``: the layer changes arrays it is handed
    #: (or returns memory it reuses), so every call gets copies and its output is
    #: copied. ``mixes_rows``: it declares ``batch_independent`` but its rows depend on
    #: each other, so perturbed copies go through it one at a time.
    defended: bool = False
    mixes_rows: bool = False
    #: ``fast_paths``: False when a fast path of the layer (``forward_perturbed``,
    #: ``forward_local``, ``perturbed_local``) disagreed with its forward
    #: (engine/fastpaths.py): the engine then runs forward.
    fast_paths: bool = True

    def __post_init__(self) -> None:
        if not self.in_shapes:
            self.in_shapes = (tuple(self.in_shape),)

    @property
    def batch_independent(self) -> bool:
        """Row r of the output depends only on row r of the input: the layer says so
        and the purity probe did not find otherwise."""
        return bool(getattr(self.layer, "batch_independent", False)) and not self.mixes_rows

    @property
    def example_dependent(self) -> bool:
        """Row r of the output depends on row r of the input and on r mod N, which
        example it is (the protocol's ``example_dependent``): rows go through the layer
        only at positions of their own example's residue."""
        return bool(getattr(self.layer, "example_dependent", False))

    @property
    def multi_input(self) -> bool:
        """True when the layer's forward takes a tuple of inputs (add, concat, ...)."""
        return int(getattr(self.layer, "n_inputs", 1) or 0) != 1

    @property
    def owner(self) -> str:
        """The node whose parameters this node uses (itself unless it shares)."""
        return self.share or self.name

    def slot_name(self, slot: int) -> str:
        """The name of input ``slot`` in this node's isolated check: ``input`` for a
        one-input layer, ``input[0]``, ``input[1]``, ... otherwise."""
        return INPUT if len(self.inputs) <= 1 else f"{INPUT}[{slot}]"


#: The former name of Node (engine tests and plugins' helpers build them positionally).
LayerSpec = Node


class Network:
    """The nodes of a network in topological order, and the structure between them.

    input_shapes: per-example shape of each network input, by value name.
    nodes: in an order where every node comes after the values it reads (the config's
    order, which the loader checks). A node with empty ``inputs`` reads the previous
    node's output (the first node: the network's only input).
    """

    def __init__(self, input_shapes: dict[str, Shape], nodes: list[Node]):
        if not nodes:
            raise ValueError("a network needs at least one node")
        self.input_shapes = dict(input_shapes)
        self.nodes = list(nodes)
        self._by_name = {n.name: n for n in self.nodes}
        previous = next(iter(self.input_shapes)) if len(self.input_shapes) == 1 else None
        for node in self.nodes:
            if not node.inputs:
                if previous is None:
                    raise ValueError(f"node {node.name!r} must name its inputs")
                node.inputs = (previous,)
            for value in node.inputs:
                if value not in self.input_shapes and value not in self._by_name:
                    raise ValueError(f"node {node.name!r} reads unknown value {value!r}")
            previous = node.name
        self._position = {n.name: k for k, n in enumerate(self.nodes)}
        self._downstream: dict[str, tuple[Node, ...]] = {}
        for node in self.nodes:
            for value in node.inputs:
                if value in self._position and self._position[value] >= self._position[node.name]:
                    raise ValueError(f"node {node.name!r} reads {value!r}, which comes later")

    # --- names -------------------------------------------------------------------------

    @property
    def input_names(self) -> list[str]:
        return list(self.input_shapes)

    @property
    def output(self) -> str:
        """The value the loss reads: the last node's output."""
        return self.nodes[-1].name

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def shape(self, value: str) -> Shape:
        """Per-example shape of a value (a network input or a node's output)."""
        if value in self.input_shapes:
            return tuple(self.input_shapes[value])
        return tuple(self._by_name[value].out_shape)

    def param_tensors(self) -> list[str]:
        """Every parameter once, ``<owner>.<param>``, in node order (sharers add none)."""
        return [f"{n.name}.{p}" for n in self.nodes if n.share is None for p in n.params]

    def tensor_names(self) -> list[str]:
        """Every checkable tensor: the network inputs, then each parameter once."""
        return [*self.input_names, *self.param_tensors()]

    def split_param(self, tensor: str) -> tuple[str, str]:
        """``conv1.weight`` -> ("conv1", "weight"); KeyError if it is no parameter."""
        owner, _, param = tensor.rpartition(".")
        if owner not in self._by_name or param not in self._by_name[owner].params:
            raise KeyError(tensor)
        return owner, param

    def is_input(self, tensor: str) -> bool:
        return tensor in self.input_shapes

    # --- structure ---------------------------------------------------------------------

    @functools.cached_property
    def _readers(self) -> dict[str, list[tuple[Node, int]]]:
        out: dict[str, list[tuple[Node, int]]] = {v: [] for v in self.input_shapes}
        out.update({n.name: [] for n in self.nodes})
        for node in self.nodes:
            for slot, value in enumerate(node.inputs):
                out[value].append((node, slot))
        return out

    def readers(self, value: str) -> list[tuple[Node, int]]:
        """The (node, input slot) pairs that read ``value``, in node order. The network
        output is also read by the loss, which is not a node."""
        return list(self._readers[value])

    def users(self, owner: str) -> list[Node]:
        """The nodes that use the parameters of ``owner``: itself and its sharers."""
        return [n for n in self.nodes if n.owner == owner]

    def sources(self, tensor: str) -> list[Node]:
        """The nodes a perturbation of ``tensor`` enters through: its readers for a
        network input, the nodes that use it for a parameter."""
        if self.is_input(tensor):
            return [node for node, _ in self._readers[tensor]]
        owner, _ = self.split_param(tensor)
        return self.users(owner)

    def downstream(self, tensor: str) -> tuple[Node, ...]:
        """Every node whose output changes when ``tensor`` moves, in topological order.

        tensor: a network input, a parameter ``<owner>.<param>``, or a node's name (its
        output value: the nodes that read it, directly or not).
        """
        if tensor in self._downstream:
            return self._downstream[tensor]
        if tensor in self._by_name:
            start = {node.name for node, _ in self._readers[tensor]}
        else:
            start = {node.name for node in self.sources(tensor)}
        hit: set[str] = set()
        for node in self.nodes:
            if node.name in start or any(v in hit for v in node.inputs):
                hit.add(node.name)
        self._downstream[tensor] = tuple(n for n in self.nodes if n.name in hit)
        return self._downstream[tensor]

    def cached(self, tensor: str) -> set[str]:
        """The values a perturbation of ``tensor`` leaves unchanged (the prefix cache):
        every network input but a perturbed one, and every node not downstream."""
        moved = {n.name for n in self.downstream(tensor)}
        keep = {v for v in self.input_shapes if v != tensor}
        return keep | {n.name for n in self.nodes if n.name not in moved}

    def below(self, tensor: str) -> tuple[Node, ...]:
        """Nodes whose backward a gradient of ``tensor`` passes through: the nodes
        downstream of it, the sources included (for a parameter: the nodes using it).
        Its analytic gradient is right when each of these backwards (and the loss's) is.
        """
        return self.downstream(tensor)

    def value_of(self, tensor: str) -> list[str]:
        """The values whose delta a tensor's gradient is computed from: the outputs of
        the nodes that use a parameter, or the network input itself."""
        if self.is_input(tensor):
            return [tensor]
        return [n.name for n in self.sources(tensor)]

    def copy_values(self, tensor: str) -> list[str]:
        """The values one perturbed copy of the network holds when ``tensor`` moves: the
        inputs of the nodes it enters through (for a network input, itself), then the
        output of every node downstream. Memory estimates count these."""
        if self.is_input(tensor):
            entry = [tensor]
        else:
            entry = list(dict.fromkeys(v for n in self.sources(tensor) for v in n.inputs))
        return [*entry, *(n.name for n in self.downstream(tensor))]

    def example_sizes(self, values: list[str] | None = None) -> list[int]:
        """Per-example element counts of the given values (default: every value)."""
        names = values if values is not None else [*self.input_shapes, *self._by_name]
        return [math.prod(self.shape(v)) for v in names]


def chain(input_shape: Shape, nodes: list[Node]) -> Network:
    """A plain stack: node k reads node k - 1 (the first reads ``input``)."""
    return Network({INPUT: tuple(input_shape)}, nodes)


__all__ = ["INPUT", "LayerSpec", "Network", "Node", "chain"]
