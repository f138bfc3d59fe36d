"""Objectives: scalar functions whose gradients get checked.

An objective owns a few named tensors (their base values and analytic gradients) and
evaluates itself, vectorised, at P perturbed copies where copy p has one element of one
tensor moved by delta[p]. Two kinds exist:

- ``NetworkObjective``: the whole stack and its loss; tensors are ``input`` and every
  ``<layer>.<param>``. Perturbing layer k reuses the cached activation that feeds layer k
  (prefix caching), and the P copies travel as one batch of P*N rows (copy-major).
- ``LayerObjective``: one layer alone, E = sum(delta * layer(x)) with the real upstream
  delta, so that a wrong backward can be blamed on the layer that owns it.
  ``LossObjective`` does the same for the loss.

All numerics here run in float64, whatever the problem's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import NumericalError, PluginError
from ..problem import LayerSpec, Problem
from ..protocol import Params, perturbed_by_loop
from .network import layer_forward, loss_forward, reduce_losses

#: Copies compared first when looking for unchanged ones in a chunk (_drop_unchanged).
PRUNE_PROBES = 16


def _stack_input(x: np.ndarray, index: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """x (N, *s) -> (P*N, *s) copy-major, copy p with x.flat[index[p]] += delta[p]."""
    p = len(index)
    stacked = np.broadcast_to(x, (p, *x.shape)).copy()
    flat = stacked.reshape(p, -1)
    flat[np.arange(p), index] += delta
    return stacked.reshape(p * x.shape[0], *x.shape[1:])


def _perturbed_layer(
    spec: LayerSpec, x: np.ndarray, params: Params, name: str, index: np.ndarray, delta: np.ndarray
) -> np.ndarray:
    """P copies of one layer's output with a perturbed parameter: (P*N, *out_shape).

    Guarded like ``layer_forward``: a plugin's mistake here is a PluginError naming it.
    """
    vectorised = getattr(spec.layer, "supports_perturbed", False)
    what = "forward_perturbed" if vectorised else "forward"
    try:
        if vectorised:
            y = spec.layer.forward_perturbed(x, params, name, index, delta)
        else:
            y = perturbed_by_loop(spec.layer, x, params, name, index, delta)
    except (NumericalError, PluginError):
        raise
    except (Exception, SystemExit) as exc:
        raise PluginError(spec.name, f"{what} raised {type(exc).__name__}: {exc}") from exc
    expected = (len(index), x.shape[0], *spec.out_shape)
    if not isinstance(y, np.ndarray) or y.size != int(np.prod(expected)):
        got = list(y.shape) if isinstance(y, np.ndarray) else type(y).__name__
        raise PluginError(
            spec.name,
            f"{what} returned shape {got}, expected {list(expected)} (copies, batch, output)",
        )
    return y.reshape(len(index) * x.shape[0], *spec.out_shape)


def _forward_copies(spec: LayerSpec, a: np.ndarray, params: Params, p: int) -> np.ndarray:
    """Forward of P stacked copies a (P*N, ...). A layer that does not declare
    ``batch_independent`` (it may mix examples, e.g. batch statistics) sees one copy at a
    time, so stacking never changes what it computes."""
    if p == 1 or getattr(spec.layer, "batch_independent", False):
        return layer_forward(spec, a, params)[0]
    return np.concatenate([layer_forward(spec, part, params)[0] for part in np.split(a, p)])


@dataclass
class NetworkObjective:
    """The whole network's loss as a function of the input and every parameter.

    x: (N, *in_shape) float64; params: {layer: {param: float64 array}};
    activations: the float64 forward trace's activations (prefix cache).
    """

    problem: Problem
    x: np.ndarray
    params: dict[str, Params]
    activations: list[np.ndarray]
    target: np.ndarray | None
    f0: float
    analytic: dict[str, np.ndarray]
    forward_passes: int = 0
    #: copies_through[k]: perturbed copies that really ran through layer k (profiling)
    copies_through: list[int] = field(default_factory=list)
    _target_tiles: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.copies_through = [0] * len(self.problem.layers)

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"input": self.x}
        for spec in self.problem.layers:
            for p, v in self.params[spec.name].items():
                out[f"{spec.name}.{p}"] = v
        return out

    def _layer_of(self, tensor: str) -> tuple[int, str]:
        layer, _, param = tensor.rpartition(".")
        for k, spec in enumerate(self.problem.layers):
            if spec.name == layer:
                return k, param
        raise KeyError(tensor)

    def bytes_per_copy(self, tensor: str) -> int:
        """Rough peak bytes one perturbed copy costs downstream of the tensor (x3 for caches)."""
        start = 0 if tensor == "input" else self._layer_of(tensor)[0]
        sizes = [a[0].size for a in self.activations[start:]]
        return int(8 * self.n * 3 * (sum(sizes) + max(sizes)))

    def losses(self, tensor: str, index: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """(P,) reduced losses of P copies, copy p with tensor.flat[index[p]] += delta[p]."""
        p = len(index)
        self.forward_passes += p
        if tensor == "input":
            return self._run_from(0, _stack_input(self.x, index, delta), p)
        k, name = self._layer_of(tensor)
        spec = self.problem.layers[k]
        y = _perturbed_layer(spec, self.activations[k], self.params[spec.name], name, index, delta)
        return self._run_from(k + 1, y, p)

    def _run_from(self, start: int, a: np.ndarray, p: int) -> np.ndarray:
        """Layers start..L and the loss on P stacked copies a (P*N, ...) -> (P,) losses.

        a is the input of layer ``start``. A copy whose activation equals the unperturbed
        one bit for bit (a weight on a zero input, a ReLU that stays off, a max-pool that
        ignores the change) can only give f0, since every layer maps equal rows to equal
        rows: it leaves the batch there and gets f0 without running the layers below.
        Looking for them costs a comparison of every copy at every layer, so a few
        probes spread over the chunk go first (``_drop_unchanged``); that changes the
        time, never a value.
        """
        out = np.full(p, self.f0)
        alive = np.arange(p)
        for k in range(start, len(self.problem.layers) + 1):
            # the input copies differ from x by construction
            if start > 0 or k > start:
                a, alive = self._drop_unchanged(k, a, alive)
                if not len(alive):
                    return out
            if k == len(self.problem.layers):
                break
            spec = self.problem.layers[k]
            self.copies_through[k] += len(alive)
            a = _forward_copies(spec, a, self.params[spec.name], len(alive))
        losses, _ = loss_forward(self.problem.loss, a, self._tiled_target(len(alive)))
        out[alive] = reduce_losses(losses, self.n, self.problem.loss.reduction)
        return out

    def _drop_unchanged(
        self, k: int, a: np.ndarray, alive: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keep the copies of a (P*N, ...) whose rows differ from activations[k].

        PRUNE_PROBES copies spread over the chunk are compared first, and the whole
        chunk only when one of them is unchanged: copies are ordered by element, and
        neighbours tend to share their fate (a dead unit, a zero input).
        """
        p = len(alive)
        copies, base = a.reshape(p, -1), self.activations[k].reshape(1, -1)
        if (copies[:: max(1, p // PRUNE_PROBES)] != base).any(axis=1).all():
            return a, alive
        changed = (copies != base).any(axis=1)
        if changed.all():
            return a, alive
        return copies[changed].reshape(-1, *a.shape[1:]), alive[changed]

    def _tiled_target(self, p: int) -> np.ndarray | None:
        """The target repeated for P copies (copy-major), a view of one cached tiling."""
        if self.target is None:
            return None
        rows = p * self.n
        tiles = self._target_tiles
        if tiles is None or len(tiles) < rows:
            copies = max(p, 0 if tiles is None else 2 * len(tiles) // self.n)
            tiles = np.tile(self.target, (copies,) + (1,) * (self.target.ndim - 1))
            self._target_tiles = tiles
        return tiles[:rows]

    def loss_at(self, values: dict[str, np.ndarray]) -> float:
        """The loss with some tensors replaced wholesale (directional checks).

        Runs from the first layer that owns a replaced tensor, on its cached input.
        """
        self.forward_passes += 1
        layers = [self._layer_of(t)[0] for t in values if t != "input"]
        start = 0 if "input" in values or not layers else min(layers)
        a = values.get("input", self.activations[start])
        for spec in self.problem.layers[start:]:
            params = {
                p: values.get(f"{spec.name}.{p}", v) for p, v in self.params[spec.name].items()
            }
            a, _ = layer_forward(spec, a, params)
        losses, _ = loss_forward(self.problem.loss, a, self.target)
        return float(reduce_losses(losses, self.n, self.problem.loss.reduction)[0])


@dataclass
class LayerObjective:
    """One layer in isolation: E(x, params) = sum(delta * layer(x, params)).

    x: the layer's real input (N, *in_shape); delta: the real upstream gradient
    (N, *out_shape); analytic: the layer's own backward fed that delta.
    """

    spec: LayerSpec
    x: np.ndarray
    params: Params
    delta: np.ndarray
    f0: float
    analytic: dict[str, np.ndarray]
    forward_passes: int = 0

    def tensors(self) -> dict[str, np.ndarray]:
        return {"input": self.x, **{f"{self.spec.name}.{p}": v for p, v in self.params.items()}}

    def bytes_per_copy(self, tensor: str) -> int:
        return int(8 * 3 * (self.x.size + self.delta.size))

    def losses(self, tensor: str, index: np.ndarray, delta: np.ndarray) -> np.ndarray:
        p = len(index)
        self.forward_passes += p
        if tensor == "input":
            y = _forward_copies(self.spec, _stack_input(self.x, index, delta), self.params, p)
        else:
            name = tensor.rpartition(".")[2]
            y = _perturbed_layer(self.spec, self.x, self.params, name, index, delta)
        return (y.reshape(p, -1) * self.delta.reshape(1, -1)).sum(axis=1)

    def loss_at(self, values: dict[str, np.ndarray]) -> float:
        self.forward_passes += 1
        params = {p: values.get(f"{self.spec.name}.{p}", v) for p, v in self.params.items()}
        y, _ = layer_forward(self.spec, values.get("input", self.x), params)
        return float((y * self.delta).sum())


@dataclass
class LossObjective:
    """The loss alone as a function of the network output y (N, *out_shape)."""

    problem: Problem
    x: np.ndarray
    target: np.ndarray | None
    f0: float
    analytic: dict[str, np.ndarray]
    forward_passes: int = 0

    def tensors(self) -> dict[str, np.ndarray]:
        return {"input": self.x}

    def bytes_per_copy(self, tensor: str) -> int:
        return int(8 * 3 * self.x.size)

    def losses(self, tensor: str, index: np.ndarray, delta: np.ndarray) -> np.ndarray:
        p = len(index)
        self.forward_passes += p
        target = None if self.target is None else np.concatenate([self.target] * p)
        losses, _ = loss_forward(self.problem.loss, _stack_input(self.x, index, delta), target)
        return reduce_losses(losses, self.x.shape[0], self.problem.loss.reduction)

    def loss_at(self, values: dict[str, np.ndarray]) -> float:
        self.forward_passes += 1
        losses, _ = loss_forward(self.problem.loss, values.get("input", self.x), self.target)
        return float(reduce_losses(losses, self.x.shape[0], self.problem.loss.reduction)[0])


Objective = Any  # NetworkObjective | LayerObjective | LossObjective (duck-typed)
