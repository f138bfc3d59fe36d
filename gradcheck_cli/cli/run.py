"""``gradcheck run``: check every gradient a config describes."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from ..exit_codes import ExitCode
from . import exit_codes
from .formats import ReportCommand, check_report_paths, report_options
from .io import make_console, write_atomic
from .options import (
    apply_check_options,
    check_only_globs,
    check_options,
    output_options,
    verbosity_options,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from ..problem import Problem
    from ..render import Format
    from ..report import Report

#: A progress bar appears only for checks that run longer than this (seconds).
PROGRESS_DELAY = 1.0


@click.command("run", cls=ReportCommand, epilog=exit_codes.EPILOG)
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@check_options
@report_options  # --json PATH, --junit PATH: one per render.Format member
@verbosity_options
@output_options
def command(
    config: str,
    reports: dict[Format, str],
    quiet: bool,
    verbose: bool,
    no_color: bool,
    **overrides: Any,
) -> int:
    """Check every gradient CONFIG describes against central differences.

    Options override the config's check: block. Elements pass when
    |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).

    \b
    Examples:
      gradcheck run net.yaml
      gradcheck run net.yaml --only 'conv1.*' --only input -v
      gradcheck run net.yaml --sample 20 --seed 1 --json report.json
      gradcheck run net.yaml --json - | jq .passed
      gradcheck run net.yaml --junit gradcheck.xml -q
    """
    from ..render.table import Verbosity, report_body, verdict_line

    if quiet and verbose:
        raise click.UsageError("-q/--quiet and -v/--verbose cannot be combined.")
    check_report_paths(reports, protect=(config,))  # before the config is even read

    with _stdout_guard(reports):  # plugins import here
        problem = _load_problem(config, seed=overrides.get("seed"))
    # never overwrite an array or plugin the config read
    check_report_paths(reports, protect=(config, *problem.sources))
    settings = apply_check_options(problem.settings, **overrides)
    if overrides.get("only"):
        check_only_globs(settings.only, problem.tensor_names())
    problem = dataclasses.replace(problem, settings=settings)

    err = make_console(sys.stderr, no_color=no_color)
    to_stdout = "-" in reports.values()
    out = err if to_stdout else make_console(sys.stdout, no_color=no_color)
    with LazyProgress(err, enabled=_isatty(sys.stderr)) as progress, _stdout_guard(reports):
        report = _run_check(problem, progress)

    for fmt, path in reports.items():
        write_atomic(path, fmt.render(report))
    verbosity = Verbosity.QUIET if quiet else Verbosity.VERBOSE if verbose else Verbosity.NORMAL
    for part in report_body(report, verbosity):
        out.print(part)
    out.print(verdict_line(report), soft_wrap=True)  # one line whatever the width, for grep
    if report.interrupted:
        err.print("gradcheck: interrupted; the report above is partial")
        return ExitCode.INTERRUPTED
    return report.exit_code


def _stdout_guard(reports: dict[Format, str]) -> contextlib.AbstractContextManager:
    """With a report on stdout (``--json -``), what user code prints (a plugin's debug
    print in forward) goes to stderr, so that stdout stays one clean document."""
    if "-" in reports.values():
        return contextlib.redirect_stdout(sys.stderr)
    return contextlib.nullcontext()


def _load_problem(path: str, seed: int | None = None) -> Problem:
    """The validated problem; raises ConfigError (exit 2) or PluginError (exit 2)."""
    from ..config import load_problem

    return load_problem(path, seed=seed)


def _run_check(problem: Problem, progress: LazyProgress) -> Report:
    """The engine's report; after Ctrl-C, the partial report marked ``interrupted``.

    A plugin's protocol error (exit 2) or non-deterministic forward (exit 3) is
    located: the config file, line and key path of the layer it names."""
    from ..engine import CheckInterrupted, run_check
    from ..errors import NondeterministicError, PluginError

    try:
        return run_check(problem, progress=progress)
    except CheckInterrupted as e:
        e.report.interrupted = True
        return e.report
    except (PluginError, NondeterministicError) as e:
        raise e.locate(problem.path, *problem.where(e.layer)) from e


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LazyProgress:
    """The engine's ``progress(done, total)`` callback: a rich bar of elements checked
    with an ETA, started only once the check has run ``delay`` seconds, so that quick
    checks print nothing extra. Disabled when stderr is not a terminal.
    """

    def __init__(self, console: Console, *, enabled: bool, delay: float = PROGRESS_DELAY):
        self.console = console
        self.enabled = enabled
        self.delay = delay
        self.started = time.monotonic()
        self._bar: Progress | None = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if not self.enabled or time.monotonic() - self.started < self.delay:
                return
            self._bar, self._task = self._start_bar(total)
        self._bar.update(self._task, completed=done, total=total)

    def _start_bar(self, total: int) -> tuple[Progress, Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("checking"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elements"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        bar.start()
        return bar, bar.add_task("check", total=total)

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
