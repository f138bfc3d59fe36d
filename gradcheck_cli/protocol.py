"""The layer and loss protocol, and the one registry that built-in and user layers share.

A layer is a small object built from the YAML keys that are not arrays. It never
mutates itself in ``forward``: the numeric check calls ``forward`` thousands of times.

Shapes: ``in_shape`` and ``out_shape`` are per-example shapes (no batch axis). Every
array passed to ``forward``/``backward`` carries a leading batch axis ``N``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, TypeVar

import numpy as np

Shape = tuple[int, ...]
Params = dict[str, np.ndarray]


class FieldError(ValueError):
    """A hyper-parameter of a layer or loss is out of range.

    Raised from ``__init__``, ``output_shape`` or ``prepare_target`` so that the config
    loader can point at the YAML key: ``FieldError("kernel_size", "must be >= 1, got 0")``
    becomes ``layers[2].kernel_size: must be >= 1, got 0`` with the file and line.
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UserCodeError(Exception):
    """A mistake in user code that a layer or loss found while calling it, with a
    message that says what and where (``affine_backward returned 2 values; expected 3
    ... (at layers.py:41)``). gradcheck reports the message as it is, against the layer
    that raised it (or ``loss``), exit 2. The built-in ``functions`` layer and
    ``function`` loss raise it around the user's functions (gradcheck_cli/usercode.py).
    """


@dataclass(frozen=True)
class RandomArray:
    """A parameter written as ``{shape: [12, 5]}`` (optionally ``scale: 0.01``) in a
    layer's ``param_mapping``: seeded random, standard normal times ``scale``, as
    cs231n initialises weights with ``weight_scale * np.random.randn(...)``."""

    shape: tuple[int, ...]
    scale: float = 1.0

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return self.scale * rng.standard_normal(self.shape)


class InputKind(Enum):
    """What one example of a layer's input must look like."""

    #: Any shape the layer's ``output_shape`` accepts.
    ANY = "any"
    #: A flat vector (F,); anything else is a config error that suggests ``flatten``.
    FLAT = "flat"
    #: An image (C, H, W); a 2-D network input (H, W) read first by such a layer is
    #: one channel, (1, H, W).
    IMAGE = "image"


def image_shape(in_shape: Shape, layer: str) -> tuple[int, int, int]:
    """(C, H, W) from a per-example shape, or FieldError for anything but a 3-D shape."""
    if len(in_shape) != 3:
        raise FieldError(
            "type",
            f"{layer} needs a (channels, height, width) input per example, "
            f"got shape {list(in_shape)}",
        )
    c, h, w = in_shape
    return c, h, w


# How ``gradcheck explain`` derives a layer's backward (``Layer.derivation``). The engine
# dispatches on these declarations, never on type names, so a subclass of a built-in
# inherits its explanation and a plugin may declare one of its own.


@dataclass(frozen=True)
class ElementWise:
    """delta_in = delta * f'(x), element by element: explain shows f' as computed by the
    layer's own backward (fed ones), under ``derivative``, the formula in words.

    ``activation``: the layer is an activation f in FC_i = f(z_i), so a dense layer
    right before it explains its input gradient with f'(z_i) (dropout is not one).
    """

    derivative: str
    activation: bool = True


@dataclass(frozen=True)
class Routing:
    """Max-like pooling: each window sends its whole gradient to one input. Explain
    probes the layer's backward window by window. The layer needs a ``geometry`` (kh, kw,
    sh, sw, ph, pw, as ``layers._windows.Geometry``) and (C, H, W) input and output."""


@dataclass(frozen=True)
class ConvSums:
    """conv2d's sums of products: weight (O, C, kh, kw), optional bias (O,) and a
    ``geometry`` like ``Routing``'s; explain writes every gradient out as its sums."""


@dataclass(frozen=True)
class DenseSums:
    """A dense layer's sums of products, y = W x + b with weight (O, F), bias (O,)."""


@dataclass(frozen=True)
class Note:
    """One sentence on how the backward works, shown as it is."""

    text: str


@dataclass(frozen=True)
class SoftmaxNote(Note):
    """A softmax over axis 1 (``text`` as for a Note). A loss on probabilities right
    after it may say what the delta at the softmax's input comes to
    (``LossDelta.after_softmax``: p - y for cross-entropy), and explain shows it there."""


Derivation = ElementWise | Routing | ConvSums | DenseSums | Note


@dataclass(frozen=True)
class LossDelta:
    """How a loss's dE/dy comes out of its numbers, for ``gradcheck explain``.

    formula: the rule and what each name means (``dE/dz = p - y, p = softmax(z), y = the
    target``); expression: the rule over the names in ``parts`` (``p - y``), which
    explain writes out entry by entry with their values (names joined by ``+ - * /`` and
    parentheses); parts: (name, array (N, *y_shape)); value: what the expression gives,
    (N, *y_shape), before the batch reduction (a ``mean`` divides it by N), compared
    with what the loss's backward gave. after_softmax: for a loss on probabilities, the
    same for the input of a softmax layer (``SoftmaxNote``) that feeds it.
    """

    formula: str
    expression: str
    parts: tuple[tuple[str, np.ndarray], ...]
    value: np.ndarray
    after_softmax: LossDelta | None = None


class Layer:
    """Base class of every layer, built-in or plugin.

    Subclasses set ``param_names`` (the YAML keys that hold arrays, e.g. ``("weight",
    "bias")``; an instance may narrow it, as conv2d does for ``bias: false``) and take
    every other YAML key as a keyword argument of ``__init__``.

    Everything the config loader, the schema and ``explain`` need to know about a layer
    is declared here, on its class, never in a table elsewhere: a new layer is one file.
    Every attribute below has a default that suits a plain element-wise layer.
    """

    param_names: tuple[str, ...] = ()
    #: One line for ``gradcheck layers``; defaults to the docstring's first line.
    summary: ClassVar[str] = ""
    #: Documented non-differentiable points and the derivative taken there (shown by
    #: ``gradcheck layers`` and ``explain``); empty for a layer smooth everywhere.
    kinks: ClassVar[str] = ""
    #: True when ``forward_perturbed`` is implemented (vectorised numeric checks).
    supports_perturbed: ClassVar[bool] = False
    #: True when ``forward_local`` is implemented: the engine then carries a
    #: perturbation through this layer as the few outputs it changes (engine/local.py).
    supports_local: ClassVar[bool] = False
    #: What one example of the input must be: any shape, a flat vector or an image.
    #: (``needs_flat_input = True``, the earlier spelling of FLAT, is still honoured.)
    input_kind: ClassVar[InputKind] = InputKind.ANY
    #: True when row r of the output depends only on row r of the input (no batch
    #: statistics). The engine then stacks perturbed copies along the batch axis;
    #: otherwise each copy runs through this layer on its own (slower, always right).
    batch_independent: ClassVar[bool] = False
    #: With ``batch_independent``: row r of the output also depends on which example
    #: row r is, r mod N (the built-in dropout's fixed mask for example r mod N). The
    #: engine then hands the layer rows only at positions of their own example's
    #: residue mod N; without it, a layer whose rows depend on their position is found
    #: out by the purity probe (engine/purity.py) and checked one copy at a time.
    example_dependent: ClassVar[bool] = False
    #: True when the layer needs the batch size N as ``batch_size=`` (dropout's mask).
    wants_batch_size: ClassVar[bool] = False
    #: The axes of each parameter, for shape messages: ``{"bias": "(out_features,)"}``.
    param_axes: ClassVar[Mapping[str, str]] = {}
    #: How ``init_params`` fills a parameter the config leaves out, in words, for
    #: ``gradcheck schema``: ``{"gamma": "ones"}``; unnamed ones say "seeded random".
    param_defaults: ClassVar[Mapping[str, str]] = {}
    #: Shorter ways a config may write a parameter, for messages: ``{"weight": "(kh, kw)
    #: for one channel"}``; ``from_written`` turns them into the parameter's shape.
    param_shorthands: ClassVar[Mapping[str, str]] = {}
    #: Required ``__init__`` fields a given parameter array already says, per parameter:
    #: ``{"weight": ("out_features",)}``. The config may leave them out when it gives
    #: that array; ``sizes_from`` reads them off its shape.
    inferred_from: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: JSON Schema bounds of ``__init__`` fields that annotations cannot say, for
    #: ``gradcheck schema``: ``{"p": {"minimum": 0, "exclusiveMaximum": 1}}``. The layer
    #: still checks them itself (with FieldError): the loader is the authority.
    field_bounds: ClassVar[Mapping[str, Mapping[str, float]]] = {}
    #: How ``gradcheck explain`` derives the backward (ElementWise, Routing, ConvSums,
    #: DenseSums or Note); None shows the output and delta only. A property may stand
    #: here when the text depends on the instance (avgpool2d's window size).
    derivation: Derivation | None = None
    #: How many values the layer reads (a config lists them under ``inputs:``). 1, the
    #: default, keeps every signature below exactly as it is. A multi-input layer says
    #: k >= 2 (exactly k) or None (any number from 2 up); then ``forward`` takes a tuple
    #: ``xs`` of arrays (N, *in_shapes[i]) in the order the config lists them,
    #: ``backward`` returns a tuple with one dx per input (each shaped like its x), and
    #: ``output_shape``, ``init_params`` and ``param_sizes`` take the tuple
    #: ``in_shapes`` where a one-input layer takes ``in_shape``. ``input_kind`` then
    #: applies to every input.
    n_inputs: ClassVar[int | None] = 1
    #: The YAML key of a mapping in which the config names the layer's parameters
    #: itself, ``params: {w: {shape: [12, 5]}, b: [0, 0]}``, for a layer whose
    #: parameters are not known before the config says them (the ``functions`` layer).
    #: None (the default): ``param_names`` are fixed YAML keys. The loader reads each
    #: entry as an array (``{shape: [...], scale: s}``: a RandomArray) and passes the
    #: mapping to ``__init__`` under this key, in the order written, given arrays as
    #: arrays; the instance sets ``param_names`` to its keys.
    param_mapping: ClassVar[str | None] = None
    #: ``__init__`` fields that name a function defined in the config's plugins
    #: (``forward: affine_forward``): the loader looks each name up in the plugins, in
    #: their order, and passes the function itself.
    function_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        if "needs_flat_input" in own and "input_kind" not in own:
            cls.input_kind = InputKind.FLAT if own["needs_flat_input"] else InputKind.ANY

    @classmethod
    def sizes_from(cls, name: str, shape: Shape) -> dict[str, Any]:
        """The fields of ``inferred_from[name]`` that a given array of ``shape`` says
        (``{"out_features": 4}`` for a (4, 9) dense weight); {} when that shape cannot say
        them (the loader then asks for the fields)."""
        return {}

    def from_written(self, name: str, value: np.ndarray, needed: Shape) -> np.ndarray | None:
        """``value``, written as one of ``param_shorthands[name]``, in the ``needed`` shape;
        None when it is no shorthand. (The exact shape, and one number for a parameter of
        one element, are always accepted.)"""
        return None

    def param_sizes(self, in_shape: Shape, out_shape: Shape) -> dict[str, tuple[str, int]]:
        """Per parameter: (the field that sets its size, its number of elements) for these
        shapes, so that the loader refuses a parameter too large to check (a typo in
        ``out_features``) before ``init_params`` allocates it. {} guards nothing."""
        return {}

    def output_shape(self, in_shape: Shape) -> Shape:
        """Per-example output shape for a per-example input shape (no batch axis)."""
        return in_shape

    def init_params(self, in_shape: Shape, rng: np.random.Generator) -> Params:
        """Seeded defaults for every parameter; also defines each parameter's shape."""
        return {}

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, Any]:
        """x: (N, *in_shape) -> (y: (N, *out_shape), cache). Must not mutate self."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray, cache: Any, params: Params) -> tuple[np.ndarray, Params]:
        """dy: (N, *out_shape) -> (dx: (N, *in_shape), {name: dparam shaped like param})."""
        raise NotImplementedError

    def forward_perturbed(
        self, x: np.ndarray, params: Params, name: str, index: np.ndarray, delta: np.ndarray
    ) -> np.ndarray:
        """Forward of P copies of the layer, copy p having ``params[name].flat[index[p]]``
        increased by ``delta[p]``.

        x: (N, *in_shape), index: (P,) int flat indices, delta: (P,) -> y: (P, N, *out_shape).
        Only called when ``supports_perturbed`` is True. The default below is the
        reference: one plain ``forward`` per copy, on a copy of the parameter.
        """
        return perturbed_by_loop(self, x, params, name, index, delta)

    def forward_local(
        self,
        x: np.ndarray,
        y: np.ndarray,
        params: Params,
        rows: np.ndarray,
        index: np.ndarray,
        values: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The outputs that change when a few inputs of some examples do.

        x: (N, *in_shape) and y: (N, *out_shape), the base input and output; rows: (R,)
        the example each changed row is a copy of; index: (R, K) flat positions in one
        example's input (C order) and values: (R, K) the row's new values there (its
        other inputs are x[rows]); a row with fewer than K changes is padded by repeating
        its first position and value. Returns (out_index, out_values), both
        (R, K'), under the same convention: flat positions in one example's output
        and the row's values there (every other output equals y[rows]). A row's values
        must depend on that row alone (its own changes, never the other rows passed with
        it or how they are padded), so that no result depends on how copies are
        chunked; a row a layer cannot compute locally it computes whole, as ``forward``
        does. They must equal what ``forward`` gives, up to rounding. Return None only
        for a reason that holds for every call (the engine then runs ``forward`` on the
        whole rows). Only called when ``supports_local`` is True.
        """
        return None

    def perturbed_local(
        self,
        x: np.ndarray,
        y: np.ndarray,
        params: Params,
        name: str,
        index: np.ndarray,
        delta: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``forward_perturbed`` as the few outputs each copy changes, for a parameter
        whose elements each reach few outputs (a dense weight: one unit; a conv weight:
        one channel).

        x: (N, *in_shape), y: (N, *out_shape) the base input and output; index, delta:
        (P,) as in ``forward_perturbed``. Returns (out_index, out_values), both
        (P * N, K), row p * N + n the copy p of example n, under ``forward_local``'s
        convention; or None (the engine then calls ``forward_perturbed``). Only called
        when ``supports_local`` and ``supports_perturbed`` are True.
        """
        return None


def perturbed_by_loop(
    layer: Layer, x: np.ndarray, params: Params, name: str, index: np.ndarray, delta: np.ndarray
) -> np.ndarray:
    """Reference for ``forward_perturbed``: one ``forward`` per copy, params copied."""
    outs = []
    for i, d in zip(index.tolist(), delta.tolist(), strict=True):
        p = params[name].copy()
        p.flat[i] += d
        y, _ = layer.forward(x, {**params, name: p})
        outs.append(y)
    return np.stack(outs)


class Loss:
    """Base class of every loss.

    ``forward`` returns one loss value per example; the engine sums them, or averages
    them with ``reduction: mean``. ``backward`` returns d(sum of losses)/dy. A loss
    whose ``__init__`` takes ``reduction`` is handed the config's (``sum`` or ``mean``).
    """

    #: YAML key holding this loss's array (``"target"``, ``"grad"``) or None.
    target_name: ClassVar[str | None] = "target"
    #: True when example n's loss depends on example n alone (the protocol's per-example
    #: losses): the engine may then recompute only the examples a perturbation reaches.
    per_example: ClassVar[bool] = True
    #: True when ``forward`` takes the target of N examples for y of P*N rows (P
    #: perturbed copies of the batch, copy-major) and repeats it itself: the engine then
    #: hands it the N rows, not a tiling. False (the default): the engine tiles it.
    tiles_target: ClassVar[bool] = False
    summary: ClassVar[str] = ""
    kinks: ClassVar[str] = ""
    #: What the loss reads, in a few words (``on probabilities``, ``on logits``): a
    #: did-you-mean that proposes this loss says it, so that a near name of a different
    #: kind (cross_entropy for softmax_cross_entropy) is never proposed silently.
    reads: ClassVar[str] = ""
    #: ``__init__`` fields that name a function in the config's plugins, as on Layer.
    function_fields: ClassVar[tuple[str, ...]] = ()

    def prepare_target(self, target: np.ndarray, y_shape: Shape) -> np.ndarray:
        """Check and normalise the target. target: (N, ...) as written plus the batch
        axis; y_shape: per-example shape of the network output. Raise FieldError.

        A target written without the output's size-1 axes (a 4x4 grad for a one-channel
        (1, 4, 4) conv output) is accepted and reshaped."""
        if target.shape[1:] != y_shape and squeezed(target.shape[1:]) == squeezed(y_shape):
            target = target.reshape(target.shape[0], *y_shape)
        if target.shape[1:] != y_shape:
            raise FieldError(
                self.target_name or "target",
                f"shape {list(target.shape[1:])} does not match the network output "
                f"shape {list(y_shape)}",
            )
        return target

    def forward(self, y: np.ndarray, target: np.ndarray | None) -> tuple[np.ndarray, Any]:
        """y: (N, *y_shape) -> (losses: (N,), cache)."""
        raise NotImplementedError

    def backward(self, cache: Any) -> np.ndarray:
        """-> dy: (N, *y_shape), the gradient of sum(losses) with respect to y."""
        raise NotImplementedError

    def derive(self, y: np.ndarray, target: np.ndarray | None) -> LossDelta | None:
        """How dE/dy comes out of y (N, *y_shape) and the target, for ``explain``; None
        (the default) shows the loss's summary only."""
        return None

    def rounding_terms(self, y: np.ndarray, target: np.ndarray | None) -> float:
        """The magnitude of what ``forward`` rounds on y (N, *y_shape) that neither its
        |losses| nor |dE/dy * y| shows; 0 (the default) when they show it all. The
        engine's rounding floor for one evaluation is a few epsilons of their sum
        (engine/numeric.py ``magnitude``): a loss that takes the log of a sum whose
        largest term is 1 (a log-sum-exp) rounds each example to about an epsilon
        however small the loss, which its value and gradient, both tiny on saturated
        logits, do not show."""
        return 0.0

    def input_warning(self, y: np.ndarray, target: np.ndarray | None) -> str | None:
        """One sentence when the network output ``y`` (N, *y_shape) is not what this loss
        is meant for (``cross_entropy`` fed logits), else None. The check goes on: it
        is shown as a warning naming the loss."""
        return None


LAYERS: dict[str, type[Layer]] = {}
LOSSES: dict[str, type[Loss]] = {}
#: Where each registered type came from: "built-in" or the plugin's path/module.
ORIGINS: dict[tuple[str, str], str] = {}
_origin: ContextVar[str] = ContextVar("gradcheck_origin", default="built-in")

T = TypeVar("T", bound=type)


@contextlib.contextmanager
def registering_from(origin: str) -> Iterator[None]:
    """Record ``origin`` (a plugin's path or module name) as where every type registered
    inside the block comes from; outside any block it is "built-in"."""
    token = _origin.set(origin)
    try:
        yield
    finally:
        _origin.reset(token)


def _registrar(kind: str, base: type, registry: dict[str, Any], name: str) -> Callable[[T], T]:
    decorator = f"register_{kind}"
    if not isinstance(name, str) or not name:
        raise TypeError(f"{decorator} needs a non-empty type name")

    def decorate(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            hint = ""
            if isinstance(cls, type) and issubclass(cls, (Layer, Loss)):  # the other one
                other = "layer" if issubclass(cls, Layer) else "loss"
                hint = f"; use @register_{other} for a {other}"
            raise TypeError(f"@{decorator}({name!r}) needs a {base.__name__} subclass{hint}")
        registry[name] = cls
        ORIGINS[(kind, name)] = _origin.get()
        cls.type_name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def register_layer(name: str) -> Callable[[T], T]:
    """Class decorator: make ``type: <name>`` available under ``layers:`` in configs.

    A later registration under the same name replaces the earlier one (a plugin may
    override a built-in on purpose).
    """
    return _registrar("layer", Layer, LAYERS, name)


def register_loss(name: str) -> Callable[[T], T]:
    """Class decorator: make ``loss: {type: <name>}`` available in configs.

    A later registration under the same name replaces the earlier one.
    """
    return _registrar("loss", Loss, LOSSES, name)


def takes_several(layer: Layer | type[Layer]) -> bool:
    """True when a layer reads several values (``n_inputs`` is not 1): its forward takes
    a tuple of arrays and its backward returns a tuple of dx."""
    return getattr(layer, "n_inputs", 1) != 1


def inputs_wanted(layer: Layer | type[Layer]) -> str:
    """How many inputs a layer reads, in words: ``one``, ``2``, ``2 or more``."""
    n = getattr(layer, "n_inputs", 1)
    return "one" if n == 1 else "2 or more" if n is None else str(n)


def describe(cls: type) -> str:
    """The one-line description of a registered class."""
    text = getattr(cls, "summary", "") or (cls.__doc__ or "").strip().splitlines()[0:1]
    return text if isinstance(text, str) else (text[0] if text else "")


def squeezed(shape: Shape) -> Shape:
    """The shape without its size-1 axes: (1, 4, 4) -> (4, 4)."""
    return tuple(d for d in shape if d != 1)
