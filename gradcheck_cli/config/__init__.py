"""Load a YAML config (or an already-parsed mapping) into a validated Problem.

>>> problem = load_problem("configs/example_a.yaml")  # doctest: +SKIP

Both entry points raise ConfigError listing every issue found, each with the file, the
1-based line and the key path (``layers[2].kernel_size``); nothing else escapes.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import layers as _layers  # noqa: F401 - registers the built-in layers
from .. import losses as _losses  # noqa: F401 - registers the built-in losses
from ..errors import ConfigError, ConfigIssue
from ..problem import Problem
from .build import build_problem, default_name
from .context import Context
from .files import MAX_CONFIG_BYTES, NotRegular, nul_in, open_regular
from .yamlload import duplicate_issues, load_yaml

__all__ = ["load_problem", "problem_from_dict"]


def load_problem(path: str | os.PathLike, *, seed: int | None = None) -> Problem:
    """Read, validate and build the config at ``path`` (relative files: its folder).

    ``seed`` replaces the config's top-level seed (the ``--seed`` option)."""
    file = os.fspath(path)
    text = read_config(file)
    doc = load_yaml(text, file)
    ctx = Context(file=file, base_dir=Path(file).resolve().parent, seed=seed)
    ctx.issues.extend(duplicate_issues(doc, file))
    return build_problem(doc, ctx, default_name(file))


def read_config(file: str) -> str:
    """The text of the config at ``file``: a regular file of at most MAX_CONFIG_BYTES,
    in UTF-8 (a BOM is dropped). Raises ConfigError naming the file otherwise."""

    def refuse(message: str) -> ConfigError:
        return ConfigError(ConfigIssue(file, None, "", message))

    if nul_in(file):
        raise refuse("a path cannot hold a NUL character")
    try:
        handle, size = open_regular(file)
    except FileNotFoundError:
        raise refuse(f"config file not found: {Path(file).absolute()}") from None
    except NotRegular as err:
        if err.kind == "a folder":
            raise refuse("is a folder; name a .yaml config file") from None
        raise refuse(
            f"is {err.kind}, not a regular file; configs are read from files "
            "(save it to a .yaml file first)"
        ) from None
    except OSError as err:
        raise refuse(
            f"cannot read the config: {type(err).__name__}: {err.strerror or err}"
        ) from None
    with handle:
        if size > MAX_CONFIG_BYTES:
            raise refuse(
                f"is {size / 2**20:.1f} MiB; configs are limited to "
                f"{MAX_CONFIG_BYTES // 2**20} MiB (keep large arrays in .npy files and "
                "write {file: array.npy})"
            )
        data = handle.read(MAX_CONFIG_BYTES + 1)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise refuse(
            f"is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from None


def problem_from_dict(
    doc: dict, *, base_dir: Path | None = None, source: str = "<dict>", seed: int | None = None
) -> Problem:
    """The same as :func:`load_problem` for a mapping already in memory (the Python API).

    Relative files resolve against ``base_dir`` (default: the working directory). Plain
    dicts carry no line numbers, so issues have ``line=None``.
    """
    if not isinstance(doc, dict):
        raise ConfigError(
            ConfigIssue(
                source, None, "", f"a config must be a mapping (dict), got {type(doc).__name__}"
            )
        )
    ctx = Context(
        file=source, base_dir=Path(base_dir) if base_dir is not None else Path.cwd(), seed=seed
    )
    return build_problem(doc, ctx, default_name(source))
