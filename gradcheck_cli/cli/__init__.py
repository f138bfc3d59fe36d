"""The ``gradcheck`` command line: a click group and the one place exit codes are chosen.

Each command lives in its own module of this package and exposes ``command``; adding
one is adding its module name to ``COMMANDS``. Commands return an exit code (or None
for 0) and raise GradcheckError subclasses; ``GradcheckGroup.main`` maps outcomes to the
stable exit codes of ``ExitCode``, and no traceback reaches the user without --debug.

Heavy imports (rich, the engine, the config loader) happen inside commands, so that
``gradcheck --help`` and a run on a tiny config start fast.
"""

from __future__ import annotations

import importlib
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

import click

from .. import __version__
from ..errors import ConfigError, GradcheckError, NumericalError, OptionHint, TooLargeError
from ..exit_codes import ExitCode
from . import exit_codes
from .options import CliState, debug_option

#: Command modules of this package, each exposing ``command``.
COMMANDS = ("run", "report", "explain", "layers", "schema", "init")


class GradcheckGroup(click.Group):
    """A click group whose ``main`` owns the exit code of every outcome."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        process: bool = False,
        **extra: Any,
    ) -> Any:
        state = CliState(process=process)
        try:
            with warnings.catch_warnings():
                # numpy's overflow and 0/0 warnings name source lines, not the user's
                # config; the engine reports NaN and Inf itself (exit 3)
                warnings.simplefilter("ignore", RuntimeWarning)
                rv = super().main(
                    args, prog_name, complete_var, standalone_mode=False, obj=state, **extra
                )
            code = rv if isinstance(rv, int) else ExitCode.OK
        except SystemExit:
            raise
        except BaseException as e:  # every other outcome, Ctrl-C included, gets its code
            code = report_error(e, debug=state.debug)
        if not standalone_mode:
            return code
        sys.exit(code)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list with each command's first sentence whole, wrapped to the
        terminal (click cuts it at the width with ``...``)."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def report_error(e: BaseException, *, debug: bool) -> int:
    """Tell the user what went wrong (stderr) and return the exit code for it."""

    from ..text import printable

    def say(line: str) -> None:  # names and messages from a config or a plugin: escaped
        click.echo(printable(line, keep_newlines=True), err=True)

    if isinstance(e, click.exceptions.Abort | KeyboardInterrupt):
        say("gradcheck: interrupted")
        return ExitCode.INTERRUPTED
    if isinstance(e, BrokenPipeError):  # `gradcheck run ... | head`: the reader left early
        _silence_stdout()
        return ExitCode.BROKEN_PIPE
    if isinstance(e, click.ClickException):
        e.message = printable(e.message, keep_newlines=True)
        e.show()
        # click uses 1 for some errors, and 1 means "a gradient disagrees" here
        return ExitCode.INVALID
    if isinstance(e, ConfigError):
        for issue in e.issues:
            say(printable(str(issue)))  # one issue, one line
        return e.exit_code
    if isinstance(e, NumericalError):
        say(f"gradcheck: the check could not be carried out: {e}")
        return e.exit_code
    if isinstance(e, MemoryError):  # past the up-front estimate: the machine, not a bug
        say(
            "gradcheck: the check could not be carried out: out of memory; try --fast, "
            "--sample K, a lower --max-memory or a smaller input or network"
        )
        return ExitCode.NOT_CARRIED_OUT
    if isinstance(e, TooLargeError):  # the engine names options; here they are flags
        say(f"gradcheck: {e.phrase(OptionHint.as_flag)}")
        return e.exit_code
    if isinstance(e, GradcheckError) and e.exit_code != ExitCode.INTERNAL:
        say(f"gradcheck: {e}")
        return e.exit_code
    remote = getattr(e, "traceback", None)  # WorkerError: raised in the worker process
    if debug:
        if isinstance(remote, str):
            sys.stderr.write(remote)
        else:
            traceback.print_exception(e, file=sys.stderr)
    name = getattr(e, "type_name", type(e).__name__)
    say(
        f"gradcheck: internal error ({name}: {_one_line(e)}). This is a bug in "
        "gradcheck; please report it with the config that caused it."
        + ("" if debug else " Re-run with --debug for the traceback.")
    )
    return ExitCode.INTERNAL


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:199] + "…"


@click.group(
    cls=GradcheckGroup,
    epilog=exit_codes.EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(
    __version__, "-V", "--version", prog_name="gradcheck", message="%(prog)s %(version)s"
)
@debug_option
def cli() -> None:
    """Check a network's hand-written backprop against numeric gradients.

    \b
    Examples:
      gradcheck init                      write a commented starter config
      gradcheck run gradcheck.yaml        check every gradient it describes
      gradcheck run net.yaml --only 'conv1.*' --json report.json
      gradcheck layers                    built-in layer and loss types
    """


for _name in COMMANDS:
    cli.add_command(importlib.import_module(f".{_name}", __name__).command)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``gradcheck`` console script and ``python -m gradcheck_cli``;
    exits with the code of the outcome."""
    cli.main(args=argv, prog_name="gradcheck", process=True)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
