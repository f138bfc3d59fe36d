"""``gradcheck run``: check every gradient a config describes.

The check runs in a supervised worker process (gradcheck_cli/supervise.py) when this
is the ``gradcheck`` command, and in this process when the command is called from
Python (click's CliRunner, an IDE): either way the same job, the same events, the same
endings (cli/endings.py) and a report on every ending.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from .. import worker
from ..errors import CheckTimedOut, UsageError, WorkerDied
from ..exit_codes import ExitCode
from ..options import OptionError, read_options
from ..supervise import Watch, inline, stdout_to_stderr, supervise, supervised_by_default
from ..worker import Job
from . import exit_codes
from .formats import ReportCommand, check_report_paths, report_options, stdout_taken
from .io import in_place, make_console, open_in_place, write_output
from .options import CliState, _usage_error, check_options, output_options, verbosity_options

if TYPE_CHECKING:
    from rich.console import Console

    from ..problem import Problem
    from ..render import Format
    from ..report import Report
    from ..worker import Loaded
    from .progress import LazyProgress


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

    Options override the config's check: block. Each numeric value comes with an
    estimate of its own error (truncation and rounding); an element passes when
    |analytic - numeric| is within 10 times it, or within atol + rtol *
    max(|analytic|, |numeric|) when you set them (README: "How verdicts are reached").

    \b
    Examples:
      gradcheck run net.yaml
      gradcheck run net.yaml --only 'conv1.*' --only input -v
      gradcheck run net.yaml --sample 20 --seed 1 --json report.json
      gradcheck run net.yaml --json - | jq .passed
      gradcheck run net.yaml --junit gradcheck.xml -q --timeout 600
    """
    outputs = Outputs(reports, config)
    if quiet and verbose:
        outputs.refuse(click.UsageError("-q/--quiet and -v/--verbose cannot be combined."))
    # every report path is checked and made absolute before any user code runs (a
    # plugin that changes folder cannot move a report), before the config is even read
    outputs.check(protect=(config,))
    values = _read_values(overrides, outputs)
    # the config as written: messages name it so (the worker shares the cwd)
    job = Job(config, values, explain=outputs.read_explain)

    watch = Watch(on_loaded=outputs.protect_inputs)  # never overwrite what the config read
    consoles: list[Console] = []
    progress: list[LazyProgress] = []

    def get_ready() -> None:
        """What this process needs to show the outcome: made while the worker starts
        (rich, numpy and the renderers load on this core as the config loads on the
        other)."""
        err = make_console(sys.stderr, no_color=no_color)
        out = err if outputs.stdout_taken else make_console(sys.stdout, no_color=no_color)
        consoles.extend([err, out])
        from .progress import LazyProgress  # the bar and its estimate: cli/progress.py

        progress.append(LazyProgress(err, enabled=_isatty(sys.stderr) and not quiet))
        watch.progress = progress[0]
        _warm_up()

    try:
        if supervised_by_default(embedded=_embedded()):
            outcome = supervise(job, watch, timeout=values.get("timeout"), meanwhile=get_ready)
        else:
            get_ready()
            guard = stdout_to_stderr() if outputs.stdout_taken else contextlib.nullcontext()
            with guard:
                outcome = inline(
                    job,
                    watch,
                    timeout=values.get("timeout"),
                    load=_load_problem,
                    check=_run_check,
                )
    except (UsageError, click.UsageError) as refused:  # a report would replace an input
        outputs.refuse(refused)
    finally:
        for bar in progress:
            bar.__exit__()
    err, out = consoles
    from ..report import RunError
    from .endings import ending, run_error

    report, error = ending(config, watch, outcome)
    if isinstance(error, OptionError):  # --only matches nothing: said as click says it
        error = _usage_error(error)
    if error is None or (report.checks and isinstance(error, CheckTimedOut | WorkerDied)):
        # the reports first: one that cannot be written (no space left) makes the run
        # exit 2, and the table printed then must not read PASS
        try:
            outputs.write(report)
        except UsageError as unwritten:
            report.error = run_error(unwritten, config)
            with contextlib.suppress(BrokenPipeError):
                _print_report(report, out, quiet=quiet, verbose=verbose)
            raise
        try:
            _print_report(report, out, quiet=quiet, verbose=verbose)
        except BrokenPipeError:  # `| head`: exit 141, and the reports say that too
            if report.error is None:
                report.error = RunError(
                    "output",
                    "the reader of gradcheck's output closed it early",
                    exit_code=ExitCode.BROKEN_PIPE,
                )
            with contextlib.suppress(UsageError, BrokenPipeError):
                outputs.write(report)
            raise
    else:
        outputs.write(report)
    if error is not None:
        raise error
    if report.error is not None:  # the engine's own (a time budget that reached nothing)
        err.print(f"gradcheck: {report.error.message}", soft_wrap=True)
    if report.interrupted:
        how = "terminated (SIGTERM)" if report.exit_code == ExitCode.TERMINATED else "interrupted"
        err.print(f"gradcheck: {how}; the report above is partial")
    return report.exit_code


def _warm_up() -> None:
    """Import what showing a report needs (numpy with the report model, the renderers)."""
    from ..render import json, junit, table  # noqa: F401


def _print_report(report: Report, out: Console, *, quiet: bool, verbose: bool) -> None:
    from ..render.table import Verbosity, report_body, verdict_line

    verbosity = Verbosity.QUIET if quiet else Verbosity.VERBOSE if verbose else Verbosity.NORMAL
    for part in report_body(report, verbosity):
        out.print(part)
    out.print(verdict_line(report), soft_wrap=True)  # one line whatever the width, for grep


def _read_values(overrides: dict[str, Any], outputs: Outputs) -> dict[str, Any]:
    """The command line's check options, read and checked together (two modes at once is
    a usage error) before any work."""
    given = {name: value if value != () else None for name, value in overrides.items()}
    try:
        return read_options(given)
    except OptionError as e:
        outputs.refuse(_usage_error(e))
        raise  # unreachable: refuse raises


def _embedded() -> bool:
    """Whether this command was called from Python (click's CliRunner, an IDE) rather
    than as the ``gradcheck`` command: see gradcheck_cli/supervise.py."""
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(CliState) if ctx is not None else None
    return not (state is not None and state.process)


class Outputs:
    """The report paths of one run: checked and made absolute before any user code
    runs, refused if they would replace a file the config reads, and written on every
    ending, also when the run is refused (cli/io.py says how each kind of path is
    written)."""

    def __init__(self, reports: dict[Format, str], config: str):
        self.reports = dict(reports)
        self.config = config
        #: the formats whose paths passed their checks (the others cannot be written)
        self.valid: set[Format] = set()

    @property
    def read_explain(self) -> bool:
        """Whether a report written reads the ``explain`` section (JSON, HTML)."""
        return any(fmt.spec.reads_explain for fmt in self.reports)

    @property
    def stdout_taken(self) -> bool:
        return stdout_taken(self.reports)

    def check(self, protect: tuple[str, ...]) -> None:
        """check_report_paths, then the paths made absolute."""
        try:
            check_report_paths(self.reports, protect=protect)
        except (UsageError, click.UsageError) as e:
            for fmt, path in self.reports.items():
                with contextlib.suppress(UsageError, click.UsageError):
                    check_report_paths({fmt: path}, protect=protect)
                    self.valid.add(fmt)
            self.refuse(e)
        self.valid = set(self.reports)
        self.reports = {
            fmt: path if path == "-" else os.path.abspath(path)
            for fmt, path in self.reports.items()
        }

    def refuse(self, error: BaseException) -> None:
        """Write the report of ``error`` (a run refused before its check) to every
        report path that can take it, then raise ``error``."""
        from .endings import error_report

        with contextlib.suppress(UsageError):
            self.write(error_report(self.config, error), only_valid=True)
        raise error

    def protect_inputs(self, loaded: Loaded) -> None:
        """Refuse, once the config is loaded, a report path that is a file it read (the
        other reports then say so)."""
        try:
            check_report_paths(self.reports, protect=loaded.sources)
        except (UsageError, click.UsageError):
            for fmt, path in self.reports.items():
                try:
                    check_report_paths({fmt: path}, protect=loaded.sources)
                except (UsageError, click.UsageError):
                    self.valid.discard(fmt)
            raise

    def write(self, report: Report, *, only_valid: bool = False) -> None:
        """Every report, so that none of them says passed unless the run exits 0:

        1. every stream (stdout, a FIFO, a device) is opened first: one that cannot be
           (a FIFO nobody reads) makes the report the report of that failure (exit 2)
           before any stream is told anything;
        2. the streams are written; a write that fails (no space left) turns the
           reports not yet written into the report of that failure;
        3. regular files last, atomically; one that fails has those written before it
           written again with the failure.

        The failure is raised at the end. (A stream already written cannot be taken
        back: only a later write failing on another stream can leave it behind.)"""
        from .endings import error_report

        chosen = {
            fmt: path for fmt, path in self.reports.items() if not only_valid or fmt in self.valid
        }
        failure: UsageError | None = None

        def failed(e: UsageError) -> None:
            nonlocal failure, report
            if failure is None:
                failure, report = e, error_report(self.config, e)

        streams: dict[Any, Any] = {}
        for fmt, path in chosen.items():
            if path != "-" and in_place(path):
                try:
                    streams[fmt] = open_in_place(path, option=fmt.spec.option)
                except UsageError as e:
                    failed(e)
        for fmt, path in chosen.items():
            if path == "-" or fmt in streams:
                try:
                    if path == "-":
                        write_output(path, fmt.render(report), option=fmt.spec.option)
                    else:
                        streams[fmt].write(fmt.render(report))
                except UsageError as e:
                    failed(e)
                finally:
                    if fmt in streams:
                        streams[fmt].close()
        files = [(fmt, path) for fmt, path in chosen.items() if path != "-" and not in_place(path)]
        written = []
        for fmt, path in files:
            before = failure
            try:
                write_output(path, fmt.render(report), option=fmt.spec.option)
                written.append((fmt, path))
            except UsageError as e:
                failed(e)
            if failure is not None and before is None:  # the files before it said passed
                for fmt_done, path_done in written:
                    with contextlib.suppress(UsageError):
                        write_output(path_done, fmt_done.render(report), option="")
        if failure is not None:
            raise failure


def _load_problem(path: str, seed: int | None = None) -> Problem:
    """The validated problem; raises ConfigError (exit 2) or PluginError (exit 2)."""
    return worker.load(path, seed=seed)


def _run_check(problem: Problem, progress: Any) -> Report:
    """The engine's report; after Ctrl-C, the partial report marked ``interrupted``.

    A plugin's protocol error (exit 2) or non-deterministic forward (exit 3) is
    located: the config file, line and key path of the layer it names."""
    return worker.check(problem, progress)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
