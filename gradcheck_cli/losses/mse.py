"""mse: half the squared error, summed over each example."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..protocol import Loss, LossDelta, register_loss
from ._common import row_sums, tiled


class MSECache(NamedTuple):
    diff: np.ndarray  # y - target, (N, *shape)


@register_loss("mse")
class MSE(Loss):
    """E_n = 1/2 * sum((target_n - y_n)^2).

    y: (N, *shape), target: (N, *shape) -> losses: (N,); dE/dy = y - target.
    """

    summary = "half squared error, 1/2 * sum((target - y)^2) per example"

    def forward(self, y: np.ndarray, target: np.ndarray | None) -> tuple[np.ndarray, MSECache]:
        diff = y - tiled(target, len(y))
        return 0.5 * row_sums(diff**2), MSECache(diff)

    def backward(self, cache: MSECache) -> np.ndarray:
        return cache.diff

    def derive(self, y: np.ndarray, target: np.ndarray | None) -> LossDelta:
        """dE/dy = y - t."""
        t = tiled(target, len(y))
        return LossDelta(
            "dE/dy = y - t   (y = the network output, t = the target)",
            "y - t",
            (("y", y), ("t", t)),
            y - t,
        )
