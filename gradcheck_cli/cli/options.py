"""Options that several commands share, each declared once as a decorator.

Value types validate at the edge: a bad ``--eps`` is a usage error (exit 2) that names
the option, before any config is read.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ..errors import UsageError
from ..problem import CheckSettings, Method

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    """Per-invocation state that error handling needs after the command has unwound."""

    debug: bool = False


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


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses NaN and infinity (NaN slips through range checks)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class ByteSize(click.ParamType):
    """A memory size: ``512MiB``, ``1GiB``, ``2GB`` or plain bytes (``api.parse_size``)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        from ..api import parse_size

        try:
            return parse_size(value)
        except UsageError as e:
            self.fail(str(e).removeprefix("--max-memory "), param, ctx)


def check_options(f: F) -> F:
    """The options that override a config's ``check:`` block (README.md, "Commands").

    Each defaults to None, meaning "keep the config's value"; see ``apply_check_options``.
    """
    decorators = [
        click.option(
            "--eps",
            type=FiniteFloat(min=0, min_open=True),
            help="Finite-difference step (> 0).",
        ),
        click.option("--atol", type=FiniteFloat(min=0), help="Absolute tolerance (>= 0)."),
        click.option("--rtol", type=FiniteFloat(min=0), help="Relative tolerance (>= 0)."),
        click.option(
            "--only",
            metavar="GLOB",
            multiple=True,
            help="Check only tensors matching GLOB; repeatable (conv1.*, input).",
        ),
        click.option(
            "--sample",
            metavar="K",
            type=click.IntRange(min=1),
            help="Check K randomly chosen elements per tensor.",
        ),
        click.option(
            "--fast",
            is_flag=True,
            default=None,
            help="Random-direction check, then localise any failure.",
        ),
        click.option(
            "--time-budget",
            metavar="SECONDS",
            type=FiniteFloat(min=0, min_open=True),
            help="Check as many elements as fit in SECONDS.",
        ),
        click.option(
            "--method",
            type=click.Choice([m.value for m in Method]),
            help="Numeric reference: central differences or a Taylor-order test.",
        ),
        click.option(
            "--seed",
            type=click.IntRange(min=0),
            help="Seed for everything random: values the config leaves out, sampling, directions.",
        ),
        click.option(
            "--strict-kinks/--no-strict-kinks",
            default=None,
            help="Count elements at non-differentiable points as failures.",
        ),
        click.option(
            "--max-memory",
            type=ByteSize(),
            metavar="SIZE",
            help="Memory for batched perturbed forward passes (512MiB, 1GiB; default 1GiB).",
        ),
    ]
    for decorate in reversed(decorators):
        f = decorate(f)
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
    """A copy of ``settings`` with every option the user gave applied (``api.apply_options``,
    the Python API's rules), after refusing modes that cannot be combined.

    >>> s = apply_check_options(CheckSettings(), eps=1e-5, only=("conv1.*",), sample=3)
    >>> (s.eps, s.only, s.mode, s.sample)
    (1e-05, ('conv1.*',), <Mode.SAMPLE: 'sample'>, 3)
    """
    from ..api import apply_options

    modes = [
        f"--{key.replace('_', '-')}"
        for key in ("fast", "sample", "time_budget")
        if given.get(key) not in (None, False)
    ]
    if len(modes) > 1:
        raise click.UsageError(f"{' and '.join(modes)} cannot be combined: pick one mode.")
    given["only"] = given.get("only") or None  # click gives () for "not given"
    return apply_options(settings, **given)


def check_only_globs(globs: tuple[str, ...], names: list[str]) -> None:
    """Refuse ``--only`` globs that match no tensor, listing the tensors there are."""
    unmatched = [g for g in globs if not any(fnmatch.fnmatchcase(n, g) for n in names)]
    if unmatched:
        raise click.BadParameter(
            f"{', '.join(map(repr, unmatched))} matches no tensor; "
            f"the tensors are: {', '.join(names)}",
            param_hint="'--only'",
        )
