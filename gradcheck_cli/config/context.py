"""What every validation step shares: the issue list, the file, the folder, the dtype."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import ConfigIssue


@dataclass
class Context:
    """Collects issues while a config is validated; one per load."""

    file: str
    base_dir: Path
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float64))
    #: ``--seed`` from the command line: replaces the config's top-level seed
    seed: int | None = None
    #: every file the config made us read (arrays, plugins), so reports never overwrite them
    sources: list[Path] = field(default_factory=list)
    issues: list[ConfigIssue] = field(default_factory=list)
    #: things worth saying that do not make the config invalid (they reach the report)
    warnings: list[str] = field(default_factory=list)
    #: Key paths that a "did you mean" already points at (``layer:`` -> ``layers``):
    #: saying that they are missing too would only repeat it.
    suggested: set[str] = field(default_factory=set)
    #: Every plugin imported, in the order ``plugins:`` lists them, as (the name it is
    #: shown by, the module): function names (``forward: affine_forward``) resolve here.
    plugin_modules: list[tuple[str, ModuleType]] = field(default_factory=list)

    def add(self, path: str, line: int | None, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, line, path, message))

    def missing(self, path: str, line: int | None, message: str) -> None:
        """Report a required key that is absent, unless a near miss was reported."""
        if path not in self.suggested:
            self.add(path, line, message)


def resolve(path: Path) -> Path:
    """``path.resolve()``, or the absolute path when it cannot be resolved (a symlink
    loop): opening it then fails with an OSError that the caller reports."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def join(path: str, key: object) -> str:
    """Key path ``layers[2]`` + ``kernel_size`` -> ``layers[2].kernel_size``; a key that
    is not a string is written as in YAML (``null``, ``true``, ``1.5``).

    >>> join("layers[2]", "kernel_size"), join("layers", 2), join("", None)
    ('layers[2].kernel_size', 'layers[2]', 'null')
    """
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    name = key_text(key)
    return f"{path}.{name}" if path else name


def key_text(key: object) -> str:
    """A mapping key as the user wrote it: ``kernel_size``, ``null``, ``true``."""
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def as_number(value: object) -> float | None:
    """A YAML number, or a string that parses as one (PyYAML reads ``1e-6`` as a string).

    Booleans are not numbers. Returns None when ``value`` is not a number.
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def as_int(value: object) -> int | None:
    """An integral number (``3``, ``3.0``, ``"3"``), else None."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    number = as_number(value)
    if number is None or not math.isfinite(number) or not number.is_integer():
        return None
    return int(number)
