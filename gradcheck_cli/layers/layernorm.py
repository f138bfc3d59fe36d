"""layernorm: each example normalised over all of its own values."""

from __future__ import annotations

import math
from numbers import Real
from typing import NamedTuple

import numpy as np

from ..protocol import FieldError, Layer, Note, Params, Shape, register_layer


class LayerNormCache(NamedTuple):
    x_hat: np.ndarray  # (N, *shape), the normalised input
    inv_std: np.ndarray  # (N, 1, ..., 1), 1 / sqrt(var + eps) of each example


def _per_example(a: np.ndarray) -> np.ndarray:
    """(N, *shape) -> (N, size): one row per example (a view when a is contiguous)."""
    return a.reshape(a.shape[0], -1)


@register_layer("layernorm")
class LayerNorm(Layer):
    """Layer normalisation over all of an example's axes, like torch.nn.LayerNorm(in_shape).

    x: (N, *shape), gamma, beta: shape -> y: (N, *shape). With m = prod(shape) the
    number of values in one example, and the statistics of each example on its own:

        mean = sum(x) / m,  var = sum((x - mean)^2) / m      (biased, as PyTorch)
        x_hat = (x - mean) / sqrt(var + eps),  y = gamma * x_hat + beta

    gamma and beta scale and shift every value of an example separately (PyTorch's
    elementwise_affine). Unlike batchnorm, no statistic crosses the batch:
    ``batch_independent`` is True. An example of one value normalises to x_hat = 0, so
    y = beta whatever x; PyTorch allows that, and so does this layer.
    """

    summary = "layer normalisation over all of an example's axes; gamma, beta shaped like it"
    param_names = ("gamma", "beta")
    param_axes = {"gamma": "(the shape of one example)", "beta": "(the shape of one example)"}
    param_defaults = {"gamma": "ones", "beta": "zeros"}  # as PyTorch
    field_bounds = {"eps": {"exclusiveMinimum": 0}}
    kinks = ""  # none: eps > 0 keeps sqrt(var + eps) smooth, even where var = 0
    derivation = Note(
        "layer norm: dE/dx = (d - mean(d) - x_hat * mean(d * x_hat)) / sqrt(var + eps) with "
        "d = gamma * delta, means over each example's own values, so every input moves every "
        "output of its example; dE/dgamma = sum over the batch of delta * x_hat, "
        "dE/dbeta = sum of delta"
    )
    batch_independent = True  # each example is normalised with its own statistics
    #: gamma and beta enter the output linearly: every perturbed copy is the base output
    #: plus one term (forward_perturbed), instead of one forward per copy.
    supports_perturbed = True

    def __init__(self, eps: float = 1e-5):
        ok = isinstance(eps, Real) and not isinstance(eps, bool) and math.isfinite(eps)
        if not ok or eps <= 0:
            raise FieldError("eps", f"must be a number > 0, got {eps!r}")
        self.eps = float(eps)

    def init_params(self, in_shape: Shape, rng: np.random.Generator) -> Params:
        # param_defaults: gamma = 1 and beta = 0, a plain normalisation to start from.
        return {"gamma": np.ones(in_shape), "beta": np.zeros(in_shape)}

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, LayerNormCache]:
        # Statistics from one (N, m) row per example: row r never depends on the others,
        # bit for bit, however many examples (or perturbed copies) are stacked.
        rows = _per_example(x)
        centred = rows - rows.mean(axis=1, keepdims=True)
        var = (centred**2).mean(axis=1, keepdims=True)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        x_hat = (centred * inv_std).reshape(x.shape)
        y = params["gamma"] * x_hat + params["beta"]
        return y, LayerNormCache(x_hat, inv_std.reshape(-1, *(1,) * (x.ndim - 1)))

    def backward(
        self, dy: np.ndarray, cache: LayerNormCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        x_hat = cache.x_hat
        grads = {"gamma": (dy * x_hat).sum(axis=0), "beta": dy.sum(axis=0)}
        d = _per_example(dy * params["gamma"])
        # x_hat depends on x directly and through the example's mean and variance: the
        # two means below are those two paths (batchnorm's backward, per example).
        rows = _per_example(x_hat)
        mean_d = d.mean(axis=1, keepdims=True)
        mean_dx = (d * rows).mean(axis=1, keepdims=True)
        return (cache.inv_std * (d - mean_d - rows * mean_dx).reshape(dy.shape)), grads

    def forward_perturbed(
        self, x: np.ndarray, params: Params, name: str, index: np.ndarray, delta: np.ndarray
    ) -> np.ndarray:
        """y: (P, N, *shape), copy p with params[name].flat[index[p]] += delta[p].

        y = gamma * x_hat + beta is linear in gamma and beta: copy p is the base output
        plus delta[p] (beta) or delta[p] * x_hat (gamma) at that one position of every
        example.
        """
        y, cache = self.forward(x, params)
        copies = np.repeat(y[None], len(index), axis=0)
        flat = copies.reshape(len(index), x.shape[0], -1)  # a view: copies is contiguous
        p = np.arange(len(index))
        if name == "gamma":
            flat[p, :, index] += delta[:, None] * _per_example(cache.x_hat)[:, index].T
        else:
            flat[p, :, index] += delta[:, None]
        return copies
