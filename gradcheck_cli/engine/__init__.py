"""The maths: forward, backward, numeric differences, comparison. No I/O, no printing.

The names below load with their module on first use (PEP 562), so that importing one
light submodule (``engine.progress``, whose snapshots the command unpickles while the
worker checks) does not import the whole engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .check import CheckInterrupted, run_check
    from .passes import Gradients, Trace, backward, forward

__all__ = ["CheckInterrupted", "Gradients", "Trace", "backward", "forward", "run_check"]

#: Where each public name lives.
_HOME = {
    "CheckInterrupted": "check",
    "run_check": "check",
    "Gradients": "passes",
    "Trace": "passes",
    "backward": "passes",
    "forward": "passes",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value
