"""gradcheck: prove a network's backpropagation right, or show exactly where it is wrong."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import check
    from .errors import CheckTimedOut, ConfigError, GradcheckError, NumericalError, PluginError
    from .protocol import FieldError, Layer, Loss, register_layer, register_loss
    from .report import Report

__version__ = "0.1.0"

#: Public names and the module each lives in. They load on first use (PEP 562), so that
#: ``gradcheck --version`` and the pytest plugin start without importing numpy.
_LAZY = {
    "check": "api",
    "CheckTimedOut": "errors",
    "ConfigError": "errors",
    "GradcheckError": "errors",
    "NumericalError": "errors",
    "PluginError": "errors",
    "FieldError": "protocol",
    "Layer": "protocol",
    "Loss": "protocol",
    "register_layer": "protocol",
    "register_loss": "protocol",
    "Report": "report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "check",
    "CheckTimedOut",
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
