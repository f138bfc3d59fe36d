"""Report formats on the command line: one ``--<format> PATH`` option per
``render.Format`` member, made from the format's own ``FormatSpec``, and the checks
every set of report paths must pass before any work is done.

A command that writes reports is declared with ``cls=ReportCommand`` and marks with
``@report_options`` where, among its options, the report options go::

    @click.command("run", cls=ReportCommand)
    @check_options
    @report_options
    @verbosity_options
    def command(reports: dict[Format, str], ...): ...

Its callback receives ``reports``, the formats given on the command line and their
paths, in ``Format`` order. ``offers`` narrows the formats: a command that renders a
saved JSON report again takes ``offers=lambda spec: spec.from_saved_report``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import GradcheckError
from .io import check_writable, is_stdout, same_file

if TYPE_CHECKING:
    from ..render import Format
    from ..render.format import FormatSpec

F = TypeVar("F", bound=Callable[..., Any])

#: Set by ``report_options`` on a callback: how many of its options are declared below
#: the mark (click collects decorators bottom-up).
_MARK = "__gradcheck_report_options_below__"


def report_options(f: F) -> F:
    """Mark where the report options go among the options of a ``ReportCommand``."""
    setattr(f, _MARK, len(getattr(f, "__click_params__", ())))
    return f


class ReportCommand(click.Command):
    """A command that takes one ``--<format> PATH`` option per ``render.Format`` member.

    The options are made from each format's ``FormatSpec`` the first time click asks for
    the command's parameters (to parse arguments, for ``--help``, for shell completion),
    not when the command is defined: the renderers then stay unloaded until a command
    runs, so that ``gradcheck --version`` starts fast.
    """

    def __init__(
        self, *args: Any, offers: Callable[[FormatSpec], bool] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        below = getattr(self.callback, _MARK, None)
        if below is None:
            raise TypeError(f"command {self.name!r} has no @report_options mark")
        self._slot: int | None = len(self.params) - below
        self._offers = offers

    def formats(self) -> list[Format]:
        """The formats this command offers, in ``Format`` order."""
        from ..render import Format

        return [fmt for fmt in Format if self._offers is None or self._offers(fmt.spec)]

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if self._slot is not None:
            self.params[self._slot : self._slot] = [_option(fmt) for fmt in self.formats()]
            self._slot = None
        return super().get_params(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """click's parsing; a command line it refuses (``--eps 0``, a missing config)
        still gets its reports, holding the error, so that none of them is stale."""
        given = list(args)  # click consumes the list it parses
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            self._report_refusal(given, e)
            raise

    def _report_refusal(self, args: list[str], error: click.UsageError) -> None:
        """Write the report of a refused command line to every report path that can be
        found in ``args`` and passes its checks; never replacing an argument of the
        command (it may be the config)."""
        paths, positional = {}, []
        options = {fmt.spec.option: fmt for fmt in self.formats()}
        k = 0
        while k < len(args):
            arg = args[k]
            name, eq, value = arg.partition("=")
            if arg == "--":
                positional += args[k + 1 :]
                break
            if name in options and eq:
                paths[options[name]] = value
            elif arg in options and k + 1 < len(args):
                paths[options[arg]] = args[k + 1]
                k += 1
            elif not arg.startswith("-"):
                positional.append(arg)  # the config, or another option's value
            k += 1
        self._write_refusal(paths, positional, error)

    def _write_refusal(
        self, paths: dict[Any, str], positional: list[str], error: click.UsageError
    ) -> None:
        """Write the refusal's report to each of ``paths`` that passes its checks."""
        if not paths:
            return
        from ..report import Report, RunError
        from .io import write_output

        config = positional[0] if positional else ""
        report = Report(
            config=config,
            loss=float("nan"),
            settings={},
            error=RunError("usage", error.format_message()),
        )
        for fmt, path in paths.items():
            try:
                check_report_paths({fmt: path}, protect=positional)
                write_output(path, fmt.render(report), option=fmt.spec.option)
            except (click.UsageError, GradcheckError):
                continue

    def invoke(self, ctx: click.Context) -> Any:
        """Gather the report options into the callback's ``reports`` argument."""
        paths = {fmt: ctx.params.pop(_dest(fmt), None) for fmt in self.formats()}
        for fmt, path in paths.items():
            if path == "":  # `--json "$OUT"` with OUT unset: never a report silently skipped
                error = click.BadParameter(
                    "needs a path ('-' for stdout), got an empty one", param_hint=fmt.spec.option
                )
                given = {f: p for f, p in paths.items() if p}
                inputs = [ctx.params.get(a.name) for a in self.params if _is_argument(a)]
                self._write_refusal(given, [str(x) for x in inputs if x], error)
                raise error
        ctx.params["reports"] = {fmt: path for fmt, path in paths.items() if path}
        return super().invoke(ctx)


def _is_argument(param: click.Parameter) -> bool:
    """A positional argument of the command (its config, its saved report): an input
    that no report may replace."""
    return isinstance(param, click.Argument) and param.name is not None


def _option(fmt: Format) -> click.Option:
    spec = fmt.spec
    return click.Option([spec.option, _dest(fmt)], metavar=spec.metavar, help=spec.help)


def _dest(fmt: Format) -> str:
    return f"report_{fmt.value}"


def check_report_paths(reports: Mapping[Any, str], *, protect: Iterable[str]) -> None:
    """Refuse report paths that clash, before anything is written: two formats on one
    file or both on stdout (``-``, ``/dev/stdout``), stdout for a format that cannot go
    there, and each path ``check_writable`` refuses (a missing folder, an input of the
    check in ``protect``). The keys are ``Format`` members, or anything with a ``spec``.

    Raises click.UsageError or gradcheck's UsageError (exit 2), naming the options.
    """
    protect = tuple(protect)
    for (a, path_a), (b, path_b) in itertools.combinations(reports.items(), 2):
        if "\0" not in path_a + path_b and same_file(path_a, path_b):
            raise click.UsageError(f"{a.spec.option} and {b.spec.option} need different paths.")
    for fmt, path in reports.items():
        spec: FormatSpec = fmt.spec
        if path == "-" and not spec.stdout:
            raise click.UsageError(f"{spec.option} cannot write to stdout ('-'); give a file.")
        check_writable(path, option=spec.option, protect=protect)


def stdout_taken(reports: Mapping[Any, str]) -> bool:
    """Whether a report goes to stdout (``-``, ``/dev/stdout``): the table then goes to
    stderr, and user code must not write to stdout."""
    return any("\0" not in path and is_stdout(path) for path in reports.values())
