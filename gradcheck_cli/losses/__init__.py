"""Built-in losses. Importing this package registers every one, one family per module.

A loss returns one value per example, losses: (N,); the engine sums or averages them.
"""

from __future__ import annotations

from . import cross_entropy, function, mse, upstream

__all__ = ["cross_entropy", "function", "mse", "upstream"]
