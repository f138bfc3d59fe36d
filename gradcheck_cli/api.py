"""The Python API: ``gradcheck_cli.check(path_or_dict, **options) -> Report``.

    import gradcheck_cli as gc

    report = gc.check("configs/example_a.yaml", eps=1e-6, only=["conv1.*"])
    assert report.passed, report.to_json()

The options are the ``run`` command's, with the same meanings and the same
validation; they override the config's ``check:`` block.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import UsageError
from .options import OPTIONS, CheckSettings, OptionError, match_globs, merge, read_options
from .problem import Problem
from .report import Report

#: Options accepted by ``check`` and ``apply_options`` (``None`` means "keep the config's").
OPTION_NAMES = tuple(OPTIONS)


def apply_options(settings: CheckSettings, **options: Any) -> CheckSettings:
    """The settings with every option that is not None applied; UsageError on bad values."""
    return merge(settings, _read(options))


def _read(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options' values (``gradcheck_cli.options.read_options``), or a UsageError
    naming the keyword: ``eps: must be a positive number, got 0``."""
    try:
        return read_options(options)
    except OptionError as e:
        raise UsageError(e.text()) from None


def load(
    source: str | os.PathLike | Mapping[str, Any],
    base_dir: str | None = None,
    seed: int | None = None,
) -> Problem:
    """A validated Problem from a YAML path or an already-built mapping.

    ``seed`` replaces the config's seed: it seeds every value the config leaves out."""
    from .config import load_problem, problem_from_dict

    if isinstance(source, Mapping):
        return problem_from_dict(dict(source), base_dir=Path(base_dir or Path.cwd()), seed=seed)
    return load_problem(source, seed=seed)


def check(source: str | os.PathLike | Mapping[str, Any], **options: Any) -> Report:
    """Check every gradient a config describes and return the Report.

    source: a YAML path, or a mapping with the same structure (layers may use types
    registered in this process with ``@gradcheck_cli.register_layer``).
    Raises ConfigError/PluginError (the CLI's exit 2) or NumericalError (exit 3).
    """
    from .engine import run_check

    values = _read(options)
    problem = load(source, seed=values.get("seed"))
    problem.settings = merge(problem.settings, values)
    if "only" in values:
        try:
            match_globs(problem.settings.only, problem.tensor_names())
        except OptionError as e:
            raise UsageError(e.text()) from None
    return run_check(problem)
