"""Built-in layers, one family per module. Importing this package registers every one.

Every module here whose name does not start with ``_`` is imported, in name order, so a
new built-in layer is one new file: its class declares all that the loader, the schema
and ``explain`` need (see ``gradcheck_cli.protocol.Layer``).
"""

from __future__ import annotations

import importlib
import pkgutil

__all__ = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))

for _name in __all__:
    importlib.import_module(f"{__name__}.{_name}")
