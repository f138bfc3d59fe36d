"""upstream: a given gradient at the network's output, as in a worked example."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..protocol import Loss, LossDelta, register_loss
from ._common import row_sums, tiled


class UpstreamCache(NamedTuple):
    grad: np.ndarray  # (N, *shape), the given dE/dy


@register_loss("upstream")
class Upstream(Loss):
    """E_n = sum(grad_n * y_n), so that dE/dy = grad.

    y: (N, *shape), grad: (N, *shape) -> losses: (N,). Stands in for the rest of a
    network whose backward pass already produced grad.
    """

    target_name = "grad"
    summary = "a given output gradient: E = sum(grad * y), so dE/dy = grad"

    def forward(self, y: np.ndarray, target: np.ndarray | None) -> tuple[np.ndarray, UpstreamCache]:
        grad = tiled(target, len(y))
        return row_sums(grad * y), UpstreamCache(grad)

    def backward(self, cache: UpstreamCache) -> np.ndarray:
        return cache.grad.copy()  # the engine may scale dy in place (reduction: mean)

    def derive(self, y: np.ndarray, target: np.ndarray | None) -> LossDelta:
        """dE/dy = g, the gradient given."""
        g = tiled(target, len(y))
        return LossDelta("dE/dy = g   (g = the grad the config gives)", "g", (("g", g),), g)
