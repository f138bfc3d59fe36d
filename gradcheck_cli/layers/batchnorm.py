"""batchnorm: batch normalisation with the batch's own statistics (training mode)."""

from __future__ import annotations

import math
from numbers import Real
from typing import NamedTuple

import numpy as np

from ..protocol import FieldError, Layer, Note, Params, Shape, register_layer
from ._fields import checked_int


class BatchNormCache(NamedTuple):
    x_hat: np.ndarray  # (N, F) or (N, C, H, W), the normalised input
    inv_std: np.ndarray  # (1, F) or (1, C, 1, 1), 1 / sqrt(var + eps)


def _stat_axes(x: np.ndarray) -> tuple[int, ...]:
    """The axes one feature's (or channel's) statistics run over: all but axis 1."""
    return (0, *range(2, x.ndim))


def _per_channel(p: np.ndarray, ndim: int) -> np.ndarray:
    """A (F,) or (C,) parameter shaped to broadcast against an ndim-dimensional batch."""
    return p.reshape(-1, *(1,) * (ndim - 2))


@register_layer("batchnorm")
class BatchNorm(Layer):
    """Batch normalisation with the batch's statistics, like torch.nn.BatchNorm1d/2d in training.

    x: (N, F), gamma, beta: (F,) -> y: (N, F), statistics of each feature over the batch;
    x: (N, C, H, W), gamma, beta: (C,) -> y: (N, C, H, W), statistics of each channel
    over the batch and H, W. With m the number of values a statistic runs over:

        mean = sum(x) / m,  var = sum((x - mean)^2) / m      (biased, as in training)
        x_hat = (x - mean) / sqrt(var + eps),  y = gamma * x_hat + beta

    No running statistics are kept (forward stays pure). Every output of a feature
    depends on every input of it, across examples: ``batch_independent`` is False, and the
    engine checks the layer one perturbed copy of the batch at a time. With m = 1 (one
    flat example) the variance is 0 and y = beta whatever x; PyTorch refuses that in
    training, and so does this layer's ``output_shape`` when it knows the batch size.
    """

    summary = (
        "batch normalisation, training mode: per feature of (N, F), per channel of "
        "(N, C, H, W); batch statistics, biased variance"
    )
    param_names = ("gamma", "beta")
    param_axes = {"gamma": "(features,) or (channels,)", "beta": "(features,) or (channels,)"}
    param_defaults = {"gamma": "ones", "beta": "zeros"}  # as PyTorch
    field_bounds = {"eps": {"exclusiveMinimum": 0}}
    kinks = ""  # none: eps > 0 keeps sqrt(var + eps) smooth, even where var = 0
    derivation = Note(
        "batch norm: dE/dx = gamma / sqrt(var + eps) * (d - mean(d) - x_hat * mean(d * x_hat)), "
        "means over the batch (and H, W) of each feature or channel, so every input moves "
        "every output of its feature; dE/dgamma = sum(d * x_hat), dE/dbeta = sum(d)"
    )
    batch_independent = False  # every row is normalised with the whole batch's statistics
    #: The config loader passes batch_size=N, to refuse statistics of one value.
    wants_batch_size = True

    def __init__(self, eps: float = 1e-5, batch_size: int | None = None):
        ok = isinstance(eps, Real) and not isinstance(eps, bool) and math.isfinite(eps)
        if not ok or eps <= 0:
            raise FieldError("eps", f"must be a number > 0, got {eps!r}")
        self.eps = float(eps)
        self.batch_size = None if batch_size is None else checked_int(batch_size, "batch_size")

    def output_shape(self, in_shape: Shape) -> Shape:
        name = getattr(self, "type_name", "batchnorm")
        if len(in_shape) not in (1, 3):
            raise FieldError(
                "type",
                f"{name} normalises a flat (features,) input per feature or a (channels, "
                f"height, width) input per channel, got shape {list(in_shape)}",
            )
        if self.batch_size is not None and self.batch_size * math.prod(in_shape[1:]) == 1:
            what = "feature over the batch" if len(in_shape) == 1 else "channel over N, H, W"
            raise FieldError(
                "type",
                f"{name} normalises each {what}, and here that is one value: its variance "
                "is 0 and every output would be beta whatever the input (PyTorch refuses "
                "this in training too); give a batch of at least 2 examples, "
                "input: {value: [...], batched: true}",
            )
        return in_shape

    def init_params(self, in_shape: Shape, rng: np.random.Generator) -> Params:
        # param_defaults: gamma = 1 and beta = 0, a plain normalisation to start from.
        return {"gamma": np.ones(in_shape[0]), "beta": np.zeros(in_shape[0])}

    def forward(self, x: np.ndarray, params: Params) -> tuple[np.ndarray, BatchNormCache]:
        axes = _stat_axes(x)
        centred = x - x.mean(axis=axes, keepdims=True)
        var = (centred**2).mean(axis=axes, keepdims=True)
        inv_std = 1.0 / np.sqrt(var + self.eps)
        x_hat = centred * inv_std
        gamma, beta = (_per_channel(params[k], x.ndim) for k in ("gamma", "beta"))
        return gamma * x_hat + beta, BatchNormCache(x_hat, inv_std)

    def backward(
        self, dy: np.ndarray, cache: BatchNormCache, params: Params
    ) -> tuple[np.ndarray, Params]:
        axes = _stat_axes(dy)
        x_hat = cache.x_hat
        grads = {"gamma": (dy * x_hat).sum(axis=axes), "beta": dy.sum(axis=axes)}
        dx_hat = dy * _per_channel(params["gamma"], dy.ndim)
        # x_hat depends on x directly and through the mean and the variance, which every
        # value of the feature shares: the two means below are those two paths.
        mean_d = dx_hat.mean(axis=axes, keepdims=True)
        mean_dx = (dx_hat * x_hat).mean(axis=axes, keepdims=True)
        return cache.inv_std * (dx_hat - mean_d - x_hat * mean_dx), grads
