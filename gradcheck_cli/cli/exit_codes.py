"""The exit codes' text for ``--help``; the codes are ``gradcheck_cli.exit_codes.ExitCode``."""

from __future__ import annotations

import textwrap

from ..exit_codes import ExitCode


def _epilog() -> str:
    lines = ["\b", "Exit codes:"]
    for code in ExitCode:
        if code.meaning:
            lines += textwrap.wrap(
                code.meaning,
                width=72,
                initial_indent=f"  {code.value:<5}",
                subsequent_indent=" " * 7,
            )
    return "\n".join(lines) + "\n"


EPILOG = _epilog()


def __getattr__(name: str) -> ExitCode:
    """``exit_codes.INVALID``, as code written before ExitCode spells it."""
    try:
        return ExitCode[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
