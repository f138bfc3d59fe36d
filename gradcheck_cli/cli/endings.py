"""How a run ends, as a Report: every ending gets one, so that no report is stale and none
says ``passed: true`` unless the run exits 0.

- the check ran to the end: the engine's report (exit 0, 1 or 3);
- it was stopped: the partial report, ``interrupted``, exit 130 (Ctrl-C) or 143
  (SIGTERM); past ``--timeout`` the partial report holds a ``timeout`` error (exit 3);
- it ended with an error: a report holding ``error`` (kind, message, file, line, key),
  with the tensors finished before it: exit 2 (config, plugin protocol, usage), 3
  (numerics, timeout, a worker that died, out of memory) or 4 (a bug in gradcheck).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import click

from ..errors import (
    CheckTimedOut,
    ConfigError,
    GradcheckError,
    NumericalError,
    OptionHint,
    OutputError,
    PluginError,
    TooLargeError,
    WorkerDied,
    WorkerError,
)
from ..exit_codes import ExitCode
from ..options import OptionError
from ..report import Report, RunError
from ..supervise import Outcome, Stop, Watch
from ..wire import describe_call, describe_exit
from ..worker import Failure

if TYPE_CHECKING:
    from ..worker import Loaded

#: The exit code of each way a run can be stopped.
STOP_CODES = {Stop.INTERRUPT: ExitCode.INTERRUPTED, Stop.TERMINATE: ExitCode.TERMINATED}


def ending(config: str, watch: Watch, outcome: Outcome) -> tuple[Report, BaseException | None]:
    """The report of a run, and the error to tell the user (None: the report says it)."""
    kind, payload = watch.ending or ("", None)
    if kind == "report":
        report: Report = payload
        if outcome.stop is Stop.TIMEOUT:
            error = _timed_out(outcome)
            report.error = run_error(error, config)
            report.interrupted = True
            return report, error
        if outcome.stop is not None or report.interrupted:
            report.interrupted = True
            report.interrupt_code = STOP_CODES.get(outcome.stop, ExitCode.INTERRUPTED)  # type: ignore[arg-type]
        return report, None
    if isinstance(payload, KeyboardInterrupt) or (payload is None and outcome.stop):
        if outcome.stop is Stop.TIMEOUT:
            error = _timed_out(outcome)
            return partial(config, watch, error, interrupted=True), error
        report = partial(config, watch, None, interrupted=True)
        report.interrupt_code = STOP_CODES.get(outcome.stop, ExitCode.INTERRUPTED)  # type: ignore[arg-type]
        if payload is None:  # it did not answer: killed
            report.warnings.append(
                "the worker did not stop when asked and was killed; the tensor in progress"
                f"{in_progress(watch)} is not in this report"
            )
        return report, None
    if isinstance(payload, Failure):
        error = WorkerError(payload.type_name, payload.message, payload.traceback)
    elif isinstance(payload, BaseException):
        error = payload
    else:  # the worker ended without a word
        error = WorkerDied(
            "the check could not be carried out: the process running it "
            f"{describe_exit(outcome.returncode)} {describe_call(*watch.running)}"
        )
    return partial(config, watch, error), error


def _timed_out(outcome: Outcome) -> CheckTimedOut:
    return CheckTimedOut(
        f"the check could not be carried out: timed out after {outcome.timeout:g} s "
        f"{describe_call(*outcome.running)}"
    )


def partial(
    config: str, watch: Watch, error: BaseException | None, *, interrupted: bool = False
) -> Report:
    """A report of what was finished before ``error`` (or an interruption)."""
    loaded: Loaded | None = watch.loaded
    report = Report(
        config=loaded.config if loaded else config,
        loss=math.nan,
        settings=dict(loaded.settings) if loaded else {},
        checks=list(watch.checks),
        name=loaded.name if loaded else "",
        interrupted=interrupted,
    )
    if error is not None:
        report.error = run_error(error, config)
        where = in_progress(watch)
        if where:
            report.warnings.append(f"the tensor in progress{where} is not in this report")
    return report


def in_progress(watch: Watch) -> str:
    """`` (input: 12,060 of 24,576 elements done)``: the tensor the worker's last progress
    snapshot named, when no finished check holds it; empty otherwise."""
    snapshot = watch.last_progress
    tensor = getattr(snapshot, "tensor", None)
    if tensor is None or not tensor.name or any(c.name == tensor.name for c in watch.checks):
        return ""
    return f" ({tensor.name}: {snapshot.tensor_done:,} of {tensor.elements:,} elements done)"


def error_report(config: str, error: BaseException) -> Report:
    """The report of a run that ended before any check (an invalid command line)."""
    return Report(config=config, loss=math.nan, settings={}, error=run_error(error, config))


def run_error(e: BaseException, config: str) -> RunError:
    """The report's ``error`` for an exception (the CLI's words for it, options as flags)."""
    if isinstance(e, ConfigError):
        first = e.issues[0] if e.issues else None
        return RunError(
            "config",
            "\n".join(str(i) for i in e.issues),
            file=first.file if first else config,
            line=first.line if first else None,
            key=(first.path or None) if first else None,
            exit_code=e.exit_code,
        )
    if isinstance(e, PluginError):
        return RunError(
            "plugin",
            str(e),
            file=e.file or config,
            line=e.line,
            key=e.path or None,
            exit_code=e.exit_code,
        )
    if isinstance(e, OutputError):
        return RunError("report", str(e), exit_code=e.exit_code)
    if isinstance(e, TooLargeError):
        return RunError("too_large", e.phrase(OptionHint.as_flag), file=config)
    if isinstance(e, click.ClickException):
        return RunError("usage", e.format_message(), exit_code=ExitCode.INVALID)
    if isinstance(e, OptionError):
        return RunError("usage", e.text(), exit_code=ExitCode.INVALID)
    kinds: list[tuple[type, str]] = [
        (CheckTimedOut, "timeout"),
        (WorkerDied, "crashed"),
        (NumericalError, "numerical"),
        (WorkerError, "internal"),
    ]
    for cls, kind in kinds:
        if isinstance(e, cls):
            return RunError(kind, str(e), file=config, exit_code=e.exit_code)  # type: ignore[attr-defined]
    if isinstance(e, GradcheckError) and e.exit_code != ExitCode.INTERNAL:
        return RunError("usage", str(e), exit_code=e.exit_code)
    if isinstance(e, MemoryError):
        return RunError("memory", "out of memory", file=config, exit_code=ExitCode.NOT_CARRIED_OUT)
    return RunError(
        "internal", f"{type(e).__name__}: {e}", file=config, exit_code=ExitCode.INTERNAL
    )
