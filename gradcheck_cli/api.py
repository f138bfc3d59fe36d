"""The Python API: ``gradcheck_cli.check(path_or_dict, **options) -> Report``.

    import gradcheck_cli as gc

    report = gc.check("configs/example_a.yaml", eps=1e-6, only=["conv1.*"])
    assert report.passed, report.summary()

The options are the ``run`` command's, with the same meanings and the same
validation; they override the config's ``check:`` block.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .options import OPTIONS, CheckSettings, OptionError, match_globs, merge, read_options
from .problem import Problem
from .report import Report

if TYPE_CHECKING:
    import concurrent.futures

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


def check(
    source: str | os.PathLike | Mapping[str, Any],
    *,
    executor: concurrent.futures.Executor | None = None,
    **options: Any,
) -> Report:
    """Check every gradient a config describes and return the Report.

    source: a YAML path, or a mapping with the same structure (layers may use types
    registered in this process with ``@gradcheck_cli.register_layer``).
    Raises ConfigError/PluginError (the CLI's exit 2) or NumericalError (exit 3), and
    CheckTimedOut (exit 3, with the partial report as ``.report``) past ``timeout``.

    The check runs in this process. A ``timeout`` (keyword, or the config's ``check:``)
    counts from the call and stops Python code at its next bytecode, in the main thread;
    a call that never returns to the interpreter cannot be stopped here (``gradcheck
    run`` can: it supervises the check in a worker process).

    ``jobs`` (an option like the others; default: the CPU cores available) lets up to
    jobs - 1 helper processes take chunks of the element-wise check once it is large
    enough to pay for their start-up (gradcheck_cli/jobs.py). ``executor``: any
    ``concurrent.futures.Executor`` to send the chunks to instead (a Dask cluster's
    ``Client.get_executor()``), 2 x jobs chunks at a time; its workers load the config
    themselves. The report is the same either way.
    """
    from . import jobs
    from .engine import CheckInterrupted, run_check
    from .errors import CheckTimedOut
    from .supervise import Outcome, Stop, Stopped, alarm
    from .wire import describe_call

    values = _read(options)
    where = jobs.Source.of(source, base_dir=None, seed=values.get("seed"))
    outcome = Outcome(timeout=values.get("timeout"))
    started = time.monotonic()

    def timed_out() -> CheckTimedOut:
        return CheckTimedOut(
            f"timed out after {outcome.timeout:g} s {describe_call(*outcome.running)}"
        )

    try:
        with alarm(outcome.timeout, outcome, terminate=False) as timer:
            problem = load(source, seed=values.get("seed"))
            problem.settings = merge(problem.settings, values)
            if outcome.timeout is None and problem.settings.timeout is not None:
                outcome.timeout = problem.settings.timeout
                if timer is not None:
                    timer.arm(outcome.timeout - (time.monotonic() - started))
            if "only" in values:
                try:
                    match_globs(problem.settings.only, problem.tensor_names())
                except OptionError as e:
                    raise UsageError(e.text()) from None
            with jobs.helpers_for(where, problem.settings.jobs, executor) as helpers:
                return run_check(problem, **({} if helpers is None else {"helpers": helpers}))
    except CheckInterrupted as e:
        if outcome.stop is not Stop.TIMEOUT:
            raise
        error = timed_out()
        error.report = e.report  # type: ignore[attr-defined]
        raise error from None
    except Stopped:  # while the config was being loaded
        raise timed_out() from None
