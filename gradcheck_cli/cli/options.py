"""Options that several commands share, each declared once as a decorator.

Value types validate at the edge: a bad ``--eps`` is a usage error (exit 2) that names
the option, before any config is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..options import (
    OPTIONS,
    CheckSettings,
    Flag,
    Option,
    OptionError,
    match_globs,
    merge,
    read_options,
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """Per-invocation state that error handling needs after the command has unwound."""

    debug: bool = False
    #: run as the ``gradcheck`` command (``cli.main``), not called from Python
    process: bool = False


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        state = ctx.find_object(CliState)
        if state is not None:
            state.debug = True


debug_option = click.option(
    "--debug",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    envvar="GRADCHECK_DEBUG",
    callback=_set_debug,
    help="Show the traceback of internal errors (also GRADCHECK_DEBUG=1).",
)

no_color_option = click.option(
    "--no-color",
    is_flag=True,
    help="Plain output; also when NO_COLOR is set or the output is not a terminal.",
)


def output_options(f: F) -> F:
    """``--no-color`` and ``--debug``: every command that prints takes both."""
    return debug_option(no_color_option(f))


def verbosity_options(f: F) -> F:
    """``-q/--quiet`` and ``-v/--verbose`` (mutually exclusive)."""
    f = click.option("-v", "--verbose", is_flag=True, help="Element tables for every tensor.")(f)
    return click.option("-q", "--quiet", is_flag=True, help="Print the verdict line only.")(f)


class OptionType(click.ParamType):
    """A check option's values on the command line, read by the option's own parser
    (``gradcheck_cli.options``), so that they get the answers a config and the API get."""

    def __init__(self, option: Option):
        self.option = option
        self.name = option.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        try:
            parsed = self.option.kind.parse(value)
        except OptionError as e:
            self.fail(e.message, param, ctx)
        return value if self.option.kind.multiple else parsed  # one --only of several

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str):
        from click.shell_completion import CompletionItem

        choices = getattr(self.option.kind, "choices", ())
        return [CompletionItem(c) for c in choices if c.startswith(incomplete)]


def _help(option: Option) -> str:
    """The option's help as a sentence, with its default when there is one to state."""
    text = option.help[0].upper() + option.help[1:]
    text += "; repeatable." if option.kind.multiple else "."
    default = option.shown_default()
    if default is not None and not isinstance(option.kind, Flag):
        text += f"  [default: {default}]"
    return text


def click_option(option: Option) -> Callable[[F], F]:
    """``--name`` for one check option; None (or ()) when not given: keep the config's."""
    if isinstance(option.kind, Flag):
        # a mode is chosen by turning its option on; there is no "--no-fast" mode
        negatable = option.mode is None
        names = f"{option.flag}/--no-{option.flag[2:]}" if negatable else option.flag
        return click.option(names, option.name, is_flag=True, default=None, help=_help(option))
    return click.option(
        option.flag,
        option.name,
        type=OptionType(option),
        metavar=option.metavar or option.kind.metavar,
        multiple=option.kind.multiple,
        help=_help(option),
    )


def check_options(f: F) -> F:
    """The options that override a config's ``check:`` block, one per entry of
    ``gradcheck_cli.options.OPTIONS`` (see ``apply_check_options``)."""
    for option in reversed(OPTIONS.values()):
        f = click_option(option)(f)
    return f


def plugin_option(f: F) -> F:
    return click.option(
        "--plugin",
        "plugins",
        metavar="FILE_OR_MODULE",
        multiple=True,
        help="Also load custom layers from a .py file or an importable module; repeatable.",
    )(f)


def apply_check_options(settings: CheckSettings, **given: Any) -> CheckSettings:
    """A copy of ``settings`` with every option the user gave applied
    (``gradcheck_cli.options.merge``), after refusing modes that cannot be combined.

    >>> s = apply_check_options(CheckSettings(), eps=1e-5, only=("conv1.*",), sample=3)
    >>> (s.eps, s.only, s.mode, s.sample)
    (1e-05, ('conv1.*',), <Mode.SAMPLE: 'sample'>, 3)
    """
    # click gives () for an --only not given; the order is the command line's
    given = {name: value if value != () else None for name, value in given.items()}
    try:
        return merge(settings, read_options(given))
    except OptionError as e:
        raise _usage_error(e) from None


def check_only_globs(globs: tuple[str, ...], names: list[str]) -> None:
    """Refuse ``--only`` globs that match no tensor, listing the tensors there are."""
    try:
        match_globs(globs, names)
    except OptionError as e:
        raise _usage_error(e) from None


def _usage_error(e: OptionError) -> click.UsageError:
    """An OptionError as click tells it: ``Invalid value for '--only': ...`` (exit 2)."""
    if e.option is not None:
        return click.BadParameter(e.message, param_hint=f"'{OPTIONS[e.option].flag}'")
    return click.UsageError(e.text(lambda name: OPTIONS[name].flag) + ".")
