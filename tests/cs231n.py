"""The shipped cs231n-style functions (configs/examples/cs231n_functions/layers.py), for
tests that hand them to the ``functions`` layer and ``function`` loss directly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: The file itself: configs name it under ``plugins:``.
PATH = Path(__file__).resolve().parent.parent / "configs/examples/cs231n_functions/layers.py"

_spec = importlib.util.spec_from_file_location("cs231n_example_layers", PATH)
assert _spec is not None and _spec.loader is not None
layers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layers)
