"""The stable exit codes (contract section 1): one enum for the errors, the report and
the command line, which alone exits with them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """A ``gradcheck`` process's exit status. ``meaning`` is its line in ``--help``
    (None: not listed there)."""

    meaning: str | None

    def __new__(cls, code: int, meaning: str | None = None) -> ExitCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.meaning = meaning
        return member

    OK = 0, "every checked gradient and every expectation agrees"
    DISAGREE = 1, "at least one gradient or expectation disagrees"
    INVALID = 2, "the command line or the config is invalid"
    NOT_CARRIED_OUT = (
        3,
        "the check could not be carried out (NaN/Inf in a forward pass, the loss or a "
        "gradient; a forward that gives different outputs for the same input; elements "
        "no step resolves (inconclusive) and no failure; past --timeout; the process "
        "running the check exited, crashed or was killed)",
    )
    INTERNAL = 4, "internal error, a bug in gradcheck (traceback with --debug)"
    INTERRUPTED = 130, "interrupted (Ctrl-C); the partial report is written"
    #: stdout closed early by its reader (``gradcheck run ... | head``): 128 + SIGPIPE,
    #: as shells report it
    BROKEN_PIPE = 141, "the output's reader closed it early (gradcheck run ... | head)"
    #: 128 + SIGTERM, as shells report it
    TERMINATED = 143, "terminated (SIGTERM); the partial report is written"
