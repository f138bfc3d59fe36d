"""gradcheck: prove a network's backpropagation right, or show exactly where it is wrong."""

from __future__ import annotations

from .api import check
from .errors import ConfigError, GradcheckError, NumericalError, PluginError
from .protocol import FieldError, Layer, Loss, register_layer, register_loss
from .report import Report

__version__ = "0.1.0"

__all__ = [
    "check",
    "ConfigError",
    "FieldError",
    "GradcheckError",
    "Layer",
    "Loss",
    "NumericalError",
    "PluginError",
    "Report",
    "__version__",
    "register_layer",
    "register_loss",
]
