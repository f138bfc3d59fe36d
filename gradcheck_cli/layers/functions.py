"""functions: a cs231n-style pair of plain functions from a plugin, with no glue code.

    forward(x, *params, *args) -> (out, cache)
    backward(dout, cache) -> (dx, *dparams)     (dx alone for a layer without params)

x and dout carry the batch axis, as the functions take them: x (N, d_1, ..., d_k).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..protocol import FieldError, Layer, Note, Params, RandomArray, Shape, register_layer
from ..usercode import (
    as_given,
    call,
    cannot_take,
    described,
    fresh,
    name_of,
    positional_names,
    wrong_return,
)


@register_layer("functions")
class FunctionPair(Layer):
    """A pair of plain functions: forward(x, *params, *args) -> (out, cache) and
    backward(dout, cache) -> (dx, *dparams), named in the config, defined in a plugin.

    ``params`` names the parameters in the order forward takes them after x (each an
    array, or ``{shape: [...], scale: s}`` for seeded random values), and backward
    returns their gradients in that order after dx. ``args`` are passed after the
    parameters as written (cs231n's ``conv_param``), a fresh copy for every call, so a
    forward that updates them (batch norm's running statistics in ``bn_param``) changes
    nothing that the next call sees. The output's shape is found by running forward
    once, on seeded random values, while the config loads.

    Not ``batch_independent`` unless the config says so: functions that take the whole
    batch may mix its rows (batch norm), and the engine then runs each perturbed copy of
    the batch on its own (slower, always right). ``batch_independent: true`` stacks the
    copies into one call; the purity probe checks the claim.
    """

    summary = (
        "a pair of plain functions from a plugin, cs231n style: forward(x, *params, *args) "
        "-> (out, cache), backward(dout, cache) -> (dx, *dparams)"
    )
    param_mapping = "params"
    function_fields = ("forward", "backward")
    #: The loader passes batch_size=N: forward runs once on a batch of that size.
    wants_batch_size = True
    derivation = Note(
        "a function pair: dx and every parameter's gradient are what the named backward "
        "function returns for this delta"
    )

    def __init__(
        self,
        forward: Callable[..., Any],
        backward: Callable[..., Any],
        params: Mapping[str, np.ndarray | RandomArray] | None = None,
        args: Sequence[Any] = (),
        batch_independent: bool = False,
        batch_size: int | None = None,
    ):
        if not isinstance(args, (list, tuple)):
            raise FieldError(
                "args",
                "must be a list of the arguments forward takes after the params, "
                "like [{stride: 1, pad: 1}]",
            )
        self.forward_fn = forward
        self.backward_fn = backward
        self.written = dict(params or {})
        self.param_names = tuple(self.written)
        self.args = as_given(list(args))
        self.batch_independent = bool(batch_independent)
        self.batch_size = batch_size
        self.in_shape: Shape | None = None  # set once output_shape has run
        self._check_signatures()

    def _check_signatures(self) -> None:
        """Refuse, while the config loads, functions that cannot take what they will be
        handed, and params written in another order than forward takes them."""
        names = list(self.param_names)
        passed = ["x", *names, *(f"args[{k}]" for k in range(len(self.args)))]
        problem = cannot_take(self.forward_fn, passed)
        if problem:
            raise FieldError(
                "forward",
                f"{problem}; it is handed x, then the arrays under params in the order "
                "written, then the values under args",
            )
        problem = cannot_take(self.backward_fn, ["dout", "cache"])
        if problem:
            raise FieldError("backward", problem)
        takes = positional_names(self.forward_fn)[1 : 1 + len(names)]
        if sorted(takes) == sorted(names) and takes != names:
            raise FieldError(
                "params",
                f"are handed to {name_of(self.forward_fn)} in the order written "
                f"({', '.join(names)}), but it takes them as {', '.join(takes)}; write them "
                "in that order",
            )

    def _gradient_names(self) -> str:
        """``dx, then dw, db for params w, b in the order forward takes them``."""
        names = self.param_names
        grads = ", ".join(f"d{p}" for p in names)
        return f"dx, then {grads} for params {', '.join(names)} in the order forward takes them"

    def output_shape(self, in_shape: Shape) -> Shape:
        n = self.batch_size or 1
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, *in_shape))
        params = {
            k: v.draw(rng) if isinstance(v, RandomArray) else np.array(v, dtype=np.float64)
            for k, v in self.written.items()
        }
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the numbers are random: only shapes count
                out, _ = self.forward(x, params)
        except Exception as err:  # UserCodeError, or a mistake of the pair itself
            raise FieldError(
                "forward",
                f"{err}; gradcheck runs forward once while the config loads, on random "
                f"values (x of shape {[n, *in_shape]}), to find the shape of its output",
            ) from None
        if out.ndim == 0 or out.shape[0] != n:
            raise FieldError(
                "forward",
                f"{name_of(self.forward_fn)} returned out of shape {list(out.shape)} for x of "
                f"shape {[n, *in_shape]}; its first axis must stay the batch (N = {n})",
            )
        self.in_shape = tuple(in_shape)
        return tuple(out.shape[1:])

    def init_params(self, in_shape: Shape, rng: np.random.Generator) -> Params:
        return {
            k: v.draw(rng) if isinstance(v, RandomArray) else v for k, v in self.written.items()
        }

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, Any]:
        fn = self.forward_fn
        name = name_of(fn)
        out = call(fn, x, *(params[k] for k in self.param_names), *fresh(self.args))
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise wrong_return(
                fn, f"{name} returned {described(out)}; expected a pair (out, cache)"
            )
        y, cache = out
        if not isinstance(y, np.ndarray):
            raise wrong_return(fn, f"{name} returned {described(y)} for out; expected an array")
        return y, cache

    def backward(self, dy: np.ndarray, cache: Any, params: Params) -> tuple[np.ndarray, Params]:
        fn = self.backward_fn
        name = name_of(fn)
        out = call(fn, dy, cache)
        names = self.param_names
        if not names and not isinstance(out, (tuple, list)):
            out = (out,)  # dx alone
        if not isinstance(out, (tuple, list)) or len(out) != 1 + len(names):
            got = f"{len(out)} values" if isinstance(out, (tuple, list)) else described(out)
            wanted = "dx alone (no params)"
            if names:
                wanted = f"{1 + len(names)} ({self._gradient_names()})"
            raise wrong_return(fn, f"{name} returned {got}; expected {wanted}")
        x_shape = None if self.in_shape is None else (dy.shape[0], *self.in_shape)
        dx = self._array(fn, out[0], "dx", x_shape, "x")
        grads = {
            p: self._array(fn, g, f"d{p}", params[p].shape, p)
            for p, g in zip(names, out[1:], strict=True)
        }
        return dx, grads

    @staticmethod
    def _array(
        fn: Callable[..., Any], value: Any, what: str, shape: Shape | None, of: str
    ) -> np.ndarray:
        """A returned gradient as an array of the right shape, or a UserCodeError naming
        it by parameter (``affine_backward returned dw of shape [5, 12], expected [12,
        5], the shape of w``)."""
        name = name_of(fn)
        wanted = "" if shape is None else f" of shape {list(shape)}, the shape of {of}"
        if value is None or not isinstance(value, (np.ndarray, np.generic, float, int)):
            raise wrong_return(
                fn, f"{name} returned {described(value)} for {what}; expected an array{wanted}"
            )
        array = np.asarray(value)
        if shape is not None and array.shape != tuple(shape):
            raise wrong_return(
                fn,
                f"{name} returned {what} of shape {list(array.shape)}, expected "
                f"{list(shape)} (the shape of {of})",
            )
        return array
