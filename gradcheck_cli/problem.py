"""The validated problem: what the config loader produces and the engine consumes.

Everything here is already checked: shapes fit, arrays are finite numpy arrays of the
problem's dtype, and every parameter has a value. The engine never re-validates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

# CheckSettings, Method and Mode live with the option table; imported from here as well
from .network import INPUT, LayerSpec, Network
from .options import OPTIONS, CheckSettings, Method, Mode  # noqa: F401
from .protocol import Loss, Shape

#: The keys of a config's ``check:`` block, which are also the ``run`` options and the
#: keyword arguments of ``gradcheck_cli.check``; declared in ``gradcheck_cli.options``.
CHECK_OPTIONS = tuple(OPTIONS)


@dataclass
class LossSpec:
    type: str
    loss: Loss
    target: np.ndarray | None  # (N, ...) after loss.prepare_target, or None
    reduction: str = "sum"  # "sum" or "mean" over the batch axis
    line: int | None = None
    #: set by the purity probes when the loss changes y or the target in place: every
    #: call the engine makes then hands it copies (engine/passes.py ``loss_forward``)
    defended: bool = False
    #: N, the examples of one batch (a loss that is not per example is called on one
    #: copy of the batch at a time: engine/passes.py ``loss_forward``)
    batch_size: int = 1
    #: set by the purity probes when the loss declares ``per_example`` (the default) but
    #: an example's loss depends on other rows: it is then taken as not per example
    mixes_rows: bool = False

    @property
    def per_example(self) -> bool:
        """Example n's loss depends on row n alone: the loss says so (``per_example``,
        True by default) and the purity probe did not find otherwise."""
        return bool(getattr(self.loss, "per_example", True)) and not self.mixes_rows


@dataclass
class Expectation:
    """A hand-derived value to compare: key like ``conv1.weight.grad`` or, for one
    element or a slice, ``conv1.weight.grad[0, 0, 1, 1]`` (gradcheck_cli/indexing.py).

    value: in the shape the user wrote. base: the key without its index. shape: the
    tensor's shape the key is read in, whose coordinates reports use (the value's own
    shape for a whole tensor). positions: for an index, the flat position in ``shape``
    of each element of value (shaped like value); None for a whole tensor. places: the
    unit in the last written place of each element (config/written.py), NaN where the
    value has no written text (a file); None when no element has one.
    """

    key: str
    value: np.ndarray
    line: int | None = None
    base: str = ""
    shape: tuple[int, ...] | None = None
    positions: np.ndarray | None = None
    places: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.base = self.base or self.key
        if self.shape is None:
            self.shape = tuple(self.value.shape)

    @property
    def indexed(self) -> bool:
        return self.positions is not None


@dataclass
class NamedInput:
    """One of several network inputs (``inputs: {x: ..., h0: ...}``).

    value: (N, *shape); user_shape: as written (no batch axis unless batched).
    """

    value: np.ndarray
    user_shape: Shape
    line: int | None = None


@dataclass
class Problem:
    """A whole validated config.

    x: (N, *in_shape) with N = 1 for an unbatched config. input_user_shape is the input's
    shape as written (no batch axis for unbatched configs, e.g. (5, 5) for a 2-D input).
    A config with several inputs (``inputs:``) has them in ``named_inputs`` by value name
    (``input.x``, ``input.h0``); ``x`` and ``input_user_shape`` are then the first one's.
    Every input has the batch size N.
    """

    path: str
    name: str
    seed: int
    dtype: str
    x: np.ndarray
    batched: bool
    input_user_shape: Shape
    layers: list[LayerSpec]
    loss: LossSpec
    settings: CheckSettings
    expectations: list[Expectation] = field(default_factory=list)
    #: the ``expect:`` block's ``tolerance:``; without one, each written number is
    #: compared to half a unit in its last written place, and a number with no written
    #: text (from a file) to these defaults (engine/expectations.py)
    expect_atol: float = 1e-6
    expect_rtol: float = 0.0
    expect_tolerance_given: bool = False
    warnings: list[str] = field(default_factory=list)
    #: resolved paths of every file the config read (arrays, plugins): never written to
    sources: tuple[str, ...] = ()
    #: the network inputs by value name when the config gives several (``inputs:``);
    #: empty when it gives one (``input:``), which is ``x``
    named_inputs: dict[str, NamedInput] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.x.shape[0])

    @functools.cached_property
    def network(self) -> Network:
        """The layers as a network of named values (gradcheck_cli/network.py)."""
        return Network({k: tuple(v.shape[1:]) for k, v in self.inputs.items()}, self.layers)

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        """Every network input by value name, each (N, *shape)."""
        if self.named_inputs:
            return {k: v.value for k, v in self.named_inputs.items()}
        return {INPUT: self.x}

    def input_user_shapes(self) -> dict[str, Shape]:
        """Each network input's shape as the user wrote it (no batch axis unless batched)."""
        if self.named_inputs:
            return {k: tuple(v.user_shape) for k, v in self.named_inputs.items()}
        return {INPUT: tuple(self.input_user_shape)}

    def where(self, layer: str) -> tuple[int | None, str]:
        """(line, key path) of the layer named ``layer`` (``"loss"``: the loss block)."""
        if layer == "loss":
            return self.loss.line, "loss"
        for k, spec in enumerate(self.layers):
            if spec.name == layer:
                return spec.line, f"layers[{k}]"
        return None, ""

    def tensor_names(self) -> list[str]:
        """Every checkable tensor: the inputs first, then ``<layer>.<param>`` in order."""
        return self.network.tensor_names()
