"""Built-in layers. Importing this package registers every family, one per module."""

from __future__ import annotations

from . import activations, conv, dense, dropout, pool, reshape, softmax

__all__ = ["activations", "conv", "dense", "dropout", "pool", "reshape", "softmax"]
