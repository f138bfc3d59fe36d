"""The Python API: ``gradcheck_cli.check(path_or_dict, **options) -> Report``.

    import gradcheck_cli as gc

    report = gc.check("configs/example_a.yaml", eps=1e-6, only=["conv1.*"])
    assert report.passed, report.to_json()

The options are the ``run`` command's, with the same meanings and the same
validation; they override the config's ``check:`` block.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import UsageError
from .problem import CHECK_OPTIONS, CheckSettings, Method, Mode, Problem
from .report import Report

#: Options accepted by ``check`` and ``apply_options`` (``None`` means "keep the config's").
OPTION_NAMES = CHECK_OPTIONS


def apply_options(settings: CheckSettings, **options: Any) -> CheckSettings:
    """The settings with every option that is not None applied; UsageError on bad values."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r}; options are {', '.join(OPTION_NAMES)}")
    o = {k: v for k, v in options.items() if v is not None}
    changes: dict[str, Any] = {}
    for name in ("eps", "atol", "rtol", "time_budget"):
        if name in o:
            value = float(o[name])
            if value < 0 or (name in ("eps", "time_budget") and value == 0):
                sign = "> 0" if name in ("eps", "time_budget") else ">= 0"
                raise UsageError(f"--{name.replace('_', '-')} must be {sign}, got {o[name]}")
            changes[name] = value
    if "method" in o:
        try:
            changes["method"] = Method(o["method"])
        except ValueError:
            raise UsageError(f"--method must be central or taylor, got {o['method']!r}") from None
    if "only" in o:
        only = o["only"]
        changes["only"] = (only,) if isinstance(only, str) else tuple(only)
    if "seed" in o:
        if isinstance(o["seed"], bool) or int(o["seed"]) < 0:
            raise UsageError(f"--seed must be a non-negative integer, got {o['seed']!r}")
        changes["seed"] = int(o["seed"])
    if "strict_kinks" in o:
        changes["strict_kinks"] = bool(o["strict_kinks"])
    if "max_memory" in o:
        changes["max_memory"] = parse_size(o["max_memory"])
    if "sample" in o:
        if int(o["sample"]) < 1:
            raise UsageError(f"--sample must be at least 1, got {o['sample']}")
        changes.update(sample=int(o["sample"]), mode=Mode.SAMPLE)
    if "time_budget" in changes:
        changes["mode"] = Mode.BUDGET
    if o.get("fast"):
        if "sample" in o or "time_budget" in o:
            raise UsageError("--fast cannot be combined with --sample or --time-budget")
        changes["mode"] = Mode.FAST
    return dataclasses.replace(settings, **changes)


_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "kib": 1024,
    "m": 1e6,
    "mb": 1e6,
    "mib": 1 << 20,
    "g": 1e9,
    "gb": 1e9,
    "gib": 1 << 30,
}


def parse_size(value: Any) -> int:
    """Bytes from 1073741824, "512MiB", "1GiB", "2GB" (UsageError otherwise)."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            size = int(value)
        else:
            text = str(value).strip().lower().replace(" ", "")
            number = text.rstrip("kmgib")
            unit = text[len(number) :]
            size = int(float(number) * _UNITS[unit])
    except (ValueError, KeyError, OverflowError):  # "lots", "nan", "inf", "1e400"
        raise UsageError(
            f"--max-memory must be a size like 512MiB or 1GiB, got {value!r}"
        ) from None
    if size <= 0:
        raise UsageError(f"--max-memory must be positive, got {value!r}")
    return size


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

    problem = load(source, seed=options.get("seed"))
    problem.settings = apply_options(problem.settings, **options)
    if options.get("only") is not None:
        _check_globs(problem.settings.only, problem.tensor_names())
    return run_check(problem)


def _check_globs(globs: tuple[str, ...], names: list[str]) -> None:
    """An ``only`` glob that matches no tensor would check nothing and pass: refuse it,
    as ``run --only`` does."""
    import fnmatch

    unmatched = [g for g in globs if not any(fnmatch.fnmatchcase(n, g) for n in names)]
    if unmatched:
        raise UsageError(
            f"only: {', '.join(map(repr, unmatched))} matches no tensor; "
            f"the tensors are: {', '.join(names)}"
        )
