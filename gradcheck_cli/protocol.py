"""The layer and loss protocol, and the one registry that built-in and user layers share.

A layer is a small object built from the YAML keys that are not arrays. It never
mutates itself in ``forward``: the numeric check calls ``forward`` thousands of times.

Shapes: ``in_shape`` and ``out_shape`` are per-example shapes (no batch axis). Every
array passed to ``forward``/``backward`` carries a leading batch axis ``N``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
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


class Layer:
    """Base class of every layer, built-in or plugin.

    Subclasses set ``param_names`` (the YAML keys that hold arrays, e.g. ``("weight",
    "bias")``; an instance may narrow it, as conv2d does for ``bias: false``) and take
    every other YAML key as a keyword argument of ``__init__``.
    """

    param_names: tuple[str, ...] = ()
    #: One line for ``gradcheck layers``; defaults to the docstring's first line.
    summary: ClassVar[str] = ""
    #: Documented non-differentiable points (shown by ``gradcheck layers``).
    kinks: ClassVar[str] = ""
    #: True when ``forward_perturbed`` is implemented (vectorised numeric checks).
    supports_perturbed: ClassVar[bool] = False
    #: True when the layer needs a flat per-example vector (dense and friends).
    needs_flat_input: ClassVar[bool] = False
    #: True when row r of the output depends only on row r of the input (no batch
    #: statistics). The engine then stacks perturbed copies along the batch axis;
    #: otherwise each copy runs through this layer on its own (slower, always right).
    batch_independent: ClassVar[bool] = False
    #: True when the layer needs the batch size N as ``batch_size=`` (dropout's mask).
    wants_batch_size: ClassVar[bool] = False

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
    them with ``reduction: mean``. ``backward`` returns d(sum of losses)/dy.
    """

    #: YAML key holding this loss's array (``"target"``, ``"grad"``) or None.
    target_name: ClassVar[str | None] = "target"
    summary: ClassVar[str] = ""
    kinks: ClassVar[str] = ""

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


def describe(cls: type) -> str:
    """The one-line description of a registered class."""
    text = getattr(cls, "summary", "") or (cls.__doc__ or "").strip().splitlines()[0:1]
    return text if isinstance(text, str) else (text[0] if text else "")


def squeezed(shape: Shape) -> Shape:
    """The shape without its size-1 axes: (1, 4, 4) -> (4, 4)."""
    return tuple(d for d in shape if d != 1)
