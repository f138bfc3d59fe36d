"""Errors that map to exit codes. Only the CLI turns them into text and an exit code.

ConfigError (exit 2): the config or command line is invalid; carries every issue found.
PluginError (exit 2): a layer broke the protocol (wrong gradient shape, missing key,
    exception in forward or backward), reported against the layer by name.
NumericalError (exit 3): NaN/Inf in a forward pass, the loss or a gradient;
    NondeterministicError, a forward that gives different outputs for the same input.
TooLargeError (exit 2): the check would not fit in memory; refused before it starts.
CheckTimedOut (exit 3): the run went past its timeout.
WorkerDied (exit 3): the process running the check (or a ``--jobs`` helper) ended
    without a verdict.
WorkerError (exit 4): an internal error in that process.
HelperUnavailable: a ``--jobs`` helper cannot take part (it could not load the same
    problem); never shown to the user: the check goes on without it.

Every error pickles with all its data, so that a worker process can hand it to the
command line that supervises it (``gradcheck_cli/supervise.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .exit_codes import ExitCode


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config: where it is and what would be right.

    path is the key path inside the YAML document, e.g. ``layers[2].kernel_size``;
    line is 1-based, or None when the problem has no single place (a missing key is
    reported at its parent mapping's line).
    """

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class GradcheckError(Exception):
    """Base of every error gradcheck reports to the user (never a traceback)."""

    exit_code = ExitCode.INTERNAL


class ConfigError(GradcheckError):
    exit_code = ExitCode.INVALID

    def __init__(self, issues: list[ConfigIssue] | ConfigIssue):
        self.issues = [issues] if isinstance(issues, ConfigIssue) else list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def __reduce__(self):
        return (type(self), (self.issues,))


class UsageError(GradcheckError):
    """A command-line value is invalid (exit 2)."""

    exit_code = ExitCode.INVALID


class OutputError(UsageError):
    """An output (a report, ``schema -o``) could not be written (exit 2)."""


@dataclass(frozen=True)
class OptionHint:
    """A check option that would change an outcome, as data: its name as in a config's
    ``check:`` block (``sample``), its value (True for a switch) and a remark. The front
    end phrases it: ``--sample 20`` on the command line, ``sample=20`` in Python."""

    option: str
    value: object = True
    remark: str = ""

    def as_flag(self) -> str:
        flag = "--" + self.option.replace("_", "-")
        text = flag if self.value is True else f"{flag} {self.value}"
        return f"{text} {self.remark}" if self.remark else text

    def as_keyword(self) -> str:
        text = f"{self.option}={self.value!r}"
        return f"{text} {self.remark}" if self.remark else text


#: What a message part is: plain text, or an option its reader's front end phrases.
Part = str | OptionHint


class TooLargeError(UsageError):
    """The check would not fit in memory (exit 2): refused before any work is done,
    with the estimate and the options that would make it fit.

    ``parts`` is the message as text and OptionHints; ``phrase`` words the options for a
    front end (the CLI passes ``OptionHint.as_flag``); ``str()`` uses Python keywords.
    """

    def __init__(self, parts: list[Part]):
        self.parts = list(parts)
        super().__init__(self.phrase(OptionHint.as_keyword))

    def __reduce__(self):
        return (type(self), (self.parts,))

    @property
    def hints(self) -> list[OptionHint]:
        return [p for p in self.parts if isinstance(p, OptionHint)]

    def phrase(self, option: Callable[[OptionHint], str]) -> str:
        return "".join(p if isinstance(p, str) else option(p) for p in self.parts)


class PluginError(GradcheckError):
    exit_code = ExitCode.INVALID

    #: where the layer is written, once ``locate`` has been told
    file: str | None = None
    line: int | None = None
    path: str = ""

    def __init__(self, layer: str, message: str):
        self.layer = layer
        self.message = message
        super().__init__(f"layer {layer!r}: {message}")

    def locate(self, file: str, line: int | None, path: str) -> PluginError:
        """Name where the layer is written: ``net.yaml:7: layers[1]: layer 'act': ...``."""
        self.file, self.line, self.path = file, line, path
        where = file if line is None else f"{file}:{line}"
        where = f"{where}: {path}" if path else where
        self.args = (f"{where}: layer {self.layer!r}: {self.message}",)
        return self

    def __reduce__(self):
        return (
            _plugin_error,
            (type(self), self.layer, self.message, self.file, self.line, self.path),
        )


def _plugin_error(cls, layer, message, file, line, path) -> PluginError:
    error = cls(layer, message)
    return error.locate(file, line, path) if file is not None else error


class NumericalError(GradcheckError):
    exit_code = ExitCode.NOT_CARRIED_OUT


class NondeterministicError(NumericalError):
    """A layer's (or the loss's) forward gives different outputs for the same input
    (exit 3): finite differences of a function that changes between calls measure
    nothing. ``layer`` names it, and ``locate`` says where it is written, as in
    PluginError."""

    file: str | None = None
    line: int | None = None
    path: str = ""

    def __init__(self, layer: str, message: str):
        self.layer = layer
        self.message = message
        super().__init__(f"layer {layer!r}: {message}")

    locate = PluginError.locate
    #: rebuilt from its fields on the other side of the worker's pipe, located or not
    #: (the default would call the constructor with the message alone: exit 4)
    __reduce__ = PluginError.__reduce__


class CheckTimedOut(GradcheckError):
    """The run went past its timeout (exit 3); the message names what was running."""

    exit_code = ExitCode.NOT_CARRIED_OUT


class WorkerDied(GradcheckError):
    """The process running the check ended without a verdict (exit 3): an exit status, a
    crash, the out-of-memory killer. The message names the call that was running."""

    exit_code = ExitCode.NOT_CARRIED_OUT


class HelperUnavailable(GradcheckError):
    """A helper process (``--jobs``, an executor's worker) cannot judge chunks of this
    check: it could not load the config, or it loaded a different problem (layers
    registered only in the calling process, a file changed since). The engine then
    judges the chunk itself and goes on alone (engine/schedule.py)."""


class WorkerError(GradcheckError):
    """An internal error (exit 4) raised in the worker process, told by its type name,
    message and traceback (the exception itself stays there)."""

    exit_code = ExitCode.INTERNAL

    def __init__(self, type_name: str, message: str, traceback: str):
        super().__init__(message)
        self.type_name = type_name
        self.traceback = traceback

    def __reduce__(self):
        return (type(self), (self.type_name, str(self), self.traceback))
