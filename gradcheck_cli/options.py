"""Every check option, declared once.

A check option (``eps``, ``only``, ``fast``, ``max_memory``, ...) is one field of
``CheckSettings`` declared with ``option(...)``: its kind (the parser), default, help
text and, when it picks what gets checked, its mode. Everything else is derived:

- ``gradcheck run --max-memory 512MiB``: cli/options.py loops over ``OPTIONS``;
- ``gradcheck_cli.check(path, max_memory="512MiB")``: api.py reads with ``read_options``;
- ``check: {max_memory: 512MiB}`` in a config: config/settings.py parses each key with
  ``Option.parse``;
- the JSON Schema's ``check`` properties (``Option.schema``), the docs' option table
  (docs/gen_config_reference.py) and the report's ``settings`` (``report_settings``).

All three front ends read a value with the same parser, so ``1TiB``, ``512m`` or an empty
glob get the same answer everywhere. A parser raises ``OptionError`` with a message like
"must be a positive number, got 0", which each front end places: ``Invalid value for
'--eps'`` (exit 2) on the command line, ``net.yaml:7: check.eps`` in a config,
``eps: ...`` in a UsageError from the API. The rules across options are written once
too: one mode at most (``mode_of``), a glob must match a tensor (``match_globs``), and
the command line's values go over the config's (``merge``).

Adding an option
----------------
Declare it as one more field below, then use it in the engine::

    timeout: float | None = option(
        Real(positive=True), None, "give up after this many seconds", metavar="SECONDS"
    )

``--timeout SECONDS``, ``timeout=`` in the API, ``check: {timeout: ...}``, its schema,
its docs row and its report key follow (``reported=False`` keeps it out of the report).
A new kind of value is a new ``Kind`` subclass here; a new method is a new ``Method``
member (``--method complex``). Regenerate docs/config.md afterwards
(``python docs/gen_config_reference.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from fnmatch import fnmatchcase
from typing import Any


class Method(str, Enum):
    """How the numeric reference is obtained."""

    CENTRAL = "central"
    TAYLOR = "taylor"


class Mode(str, Enum):
    """Which elements get checked."""

    FULL = "full"
    SAMPLE = "sample"
    FAST = "fast"
    BUDGET = "budget"


class OptionError(ValueError):
    """A bad option value, or options that cannot go together.

    message: what would be right, for the front end to place: "must be a positive
    number, got 0". option: the option it is about (None: not one option).
    """

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.message = message
        self.option = option

    def __reduce__(self):  # whole, across a worker process's pipe
        return (OptionError, (self.message, self.option))

    def text(self, spell: Callable[[str], str] = str) -> str:
        """The whole message, naming options as ``spell`` does (``--max-memory``)."""
        return f"{spell(self.option)}: {self.message}" if self.option else self.message


class ModeConflict(OptionError):
    """More than one mode was chosen (``--fast`` and ``--sample``)."""

    def __init__(self, names: list[str]):
        self.names = names
        super().__init__(self.text())

    def text(self, spell: Callable[[str], str] = str) -> str:
        chosen = " and ".join(spell(n) for n in self.names)
        return f"{chosen} choose different check modes; keep one of them"


# --- kinds of value: one parser each, with what it accepts described beside it ---------

#: What ``float()`` reads (PyYAML loads ``1e-6``, without a dot, as a string).
NUMBER_PATTERN = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
#: An integral number written as a string (``"2e0"``, ``"3.0"``).
INTEGER_PATTERN = r"^\s*[-+]?\d+(\.0*)?([eE]\+?\d+)?\s*$"
#: A memory size: plain bytes or a number with a unit (``512MiB``, ``1 GiB``, ``2GB``,
#: ``512m``, ``1TiB``); letters in either case. Decimal units (k, kB) are powers of 1000,
#: binary ones (KiB) powers of 1024.
SIZE_PATTERN = (
    r"^\s*((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"  # the number
    r"\s*([kKmMgGtT](?:[iI]?[bB])?|[bB])?\s*$"  # the unit
)
_UNITS = {
    **{"": 1, "b": 1},
    **{"k": 10**3, "kb": 10**3, "kib": 2**10},
    **{"m": 10**6, "mb": 10**6, "mib": 2**20},
    **{"g": 10**9, "gb": 10**9, "gib": 2**30},
    **{"t": 10**12, "tb": 10**12, "tib": 2**40},
}


def shown(value: Any, limit: int = 60) -> str:
    """A value as its writer would recognise it: ``'lots'``, ``0``, ``true``, ``[1, 2]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, numbers.Integral):
        text = str(int(value))
    elif isinstance(value, numbers.Real):
        text = json.dumps(float(value))  # NaN, Infinity as YAML readers know them
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _real(value: Any) -> float | None:
    """A number, or a string that ``float()`` reads; None otherwise (booleans too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _integer(value: Any) -> int | None:
    """An integral number (``3``, ``3.0``, ``"3"``, ``"2e0"``); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    number = _real(value)
    if number is None or not math.isfinite(number) or not number.is_integer():
        return None
    return int(number)


def _unsigned(pattern: str) -> str:
    """A numeric-string pattern without the minus sign (for values that must be >= 0)."""
    return pattern.replace("[-+]?", r"\+?", 1)  # the leading sign, not the exponent's


class Kind:
    """One sort of option value: how it is read (``parse``), described for the JSON
    Schema (``schema``) and the docs (``describe``), and written back (``format``)."""

    #: the command line's placeholder for a value
    metavar = "VALUE"
    #: the command line takes the option several times (``--only a --only b``)
    multiple = False

    def parse(self, value: Any) -> Any:
        """The value read, or OptionError saying what would be right."""
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def selects(self, value: Any) -> bool:
        """Whether ``value`` turns the option on (for options that choose a mode)."""
        return value is not None

    def selects_schema(self, name: str) -> dict[str, Any]:
        """The JSON Schema condition "this option is on"."""
        return {"required": [name]}

    def jsonable(self, value: Any) -> Any:
        return value

    def format(self, value: Any) -> str:
        return str(value)


@dataclass(frozen=True)
class Real(Kind):
    """A finite number, > 0 when ``positive``, else >= 0; below ``below`` when given
    (``hint`` then says why: a relative tolerance is a fraction)."""

    positive: bool = False
    below: float | None = None
    hint: str = ""
    metavar = "FLOAT"

    @property
    def _wanted(self) -> str:
        return "a positive number" if self.positive else "a number >= 0"

    def parse(self, value: Any) -> float:
        number = _real(value)
        if number is None or not math.isfinite(number):
            raise OptionError(f"must be {self._wanted} like 1e-6, got {shown(value)}")
        if number < 0 or (self.positive and number == 0):
            raise OptionError(f"must be {self._wanted}, got {shown(value)}")
        if self.below is not None and number >= self.below:
            hint = f" ({self.hint})" if self.hint else ""
            raise OptionError(f"must be below {self.below:g}{hint}, got {shown(value)}")
        return number

    def schema(self) -> dict[str, Any]:
        bound: dict[str, Any] = {"exclusiveMinimum": 0} if self.positive else {"minimum": 0}
        if self.below is not None:
            bound["exclusiveMaximum"] = self.below
        string = {"type": "string", "pattern": _unsigned(NUMBER_PATTERN)}
        return {"anyOf": [{"type": "number", **bound}, string]}

    def describe(self) -> str:
        low = "number > 0" if self.positive else "number >= 0"
        return low if self.below is None else f"{low}, below {self.below:g}"

    def format(self, value: Any) -> str:
        return f"{value:g}"


@dataclass(frozen=True)
class Integer(Kind):
    """An integer, >= 1 when ``positive``, else >= 0."""

    positive: bool = False
    metavar = "INT"

    def parse(self, value: Any) -> int:
        number = _integer(value)
        if number is None or number < int(self.positive):
            wanted = "a positive integer" if self.positive else "a non-negative integer"
            raise OptionError(f"must be {wanted}, got {shown(value)}")
        return number

    def schema(self) -> dict[str, Any]:
        string = {"type": "string", "pattern": _unsigned(INTEGER_PATTERN)}
        return {"anyOf": [{"type": "integer", "minimum": int(self.positive)}, string]}

    def describe(self) -> str:
        return f"integer >= {int(self.positive)}"


@dataclass(frozen=True)
class Size(Kind):
    """A positive number of bytes, plain or with a unit (``SIZE_PATTERN``)."""

    metavar = "SIZE"

    def parse(self, value: Any) -> int:
        size = 0
        try:
            if isinstance(value, str):
                match = re.match(SIZE_PATTERN, value)
                if match:
                    unit = _UNITS[(match.group(2) or "").lower()]
                    size = int(float(match.group(1)) * unit)
            elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                size = int(value)
        except (ValueError, OverflowError):  # nan, inf, 1e400
            size = 0
        if size < 1:
            raise OptionError(
                "must be a positive number of bytes or a size like 512MiB or 1GiB, "
                f"got {shown(value)}"
            )
        return size

    def schema(self) -> dict[str, Any]:
        string = {"type": "string", "pattern": SIZE_PATTERN}
        return {"anyOf": [{"type": "number", "minimum": 1}, string]}

    def describe(self) -> str:
        return "bytes or a size like `512MiB`"

    def format(self, value: Any) -> str:
        for unit in ("TiB", "GiB", "MiB", "KiB"):
            scale = _UNITS[unit.lower()]
            if value % scale == 0:
                return f"{value // scale}{unit}"
        return str(value)


@dataclass(frozen=True)
class Globs(Kind):
    """Tensor names or globs (``conv1.*``, ``input``): one, or a non-empty list."""

    metavar = "GLOB"
    multiple = True

    def parse(self, value: Any) -> tuple[str, ...]:
        patterns = [value] if isinstance(value, str) else value
        if (
            isinstance(patterns, (list, tuple))
            and patterns
            and all(isinstance(p, str) and p for p in patterns)
        ):
            return tuple(patterns)
        raise OptionError(
            "must be a tensor name or glob, or a list of them like "
            f'["conv1.*", input], got {shown(value)}'
        )

    def schema(self) -> dict[str, Any]:
        glob = {"type": "string", "minLength": 1}
        return {"anyOf": [glob, {"type": "array", "minItems": 1, "items": glob}]}

    def describe(self) -> str:
        return "glob or list of globs"

    def jsonable(self, value: Any) -> Any:
        return list(value)

    def format(self, value: Any) -> str:
        return ", ".join(value)


@dataclass(frozen=True)
class Flag(Kind):
    """true or false; on the command line ``--name`` (and ``--no-name``)."""

    def parse(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise OptionError(f"must be true or false, got {shown(value)}")

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def describe(self) -> str:
        return "boolean"

    def selects(self, value: Any) -> bool:
        return value is True

    def selects_schema(self, name: str) -> dict[str, Any]:
        return {"properties": {name: {"const": True}}, "required": [name]}

    def format(self, value: Any) -> str:
        return "true" if value else "false"


@dataclass(frozen=True)
class Choice(Kind):
    """One value of a string Enum (``Method``): a new member is a new choice."""

    enum: type[Enum]

    @property
    def choices(self) -> list[str]:
        return [m.value for m in self.enum]

    @property
    def metavar(self) -> str:  # type: ignore[override]
        return "[" + "|".join(self.choices) + "]"

    def parse(self, value: Any) -> Enum:
        for member in self.enum:
            if value is member or (isinstance(value, str) and value == member.value):
                return member
        *head, last = self.choices
        wanted = f"{', '.join(head)} or {last}" if head else last
        raise OptionError(f"must be {wanted}, got {shown(value)}")

    def schema(self) -> dict[str, Any]:
        return {"enum": self.choices}

    def describe(self) -> str:
        return "one of " + ", ".join(f"`{c}`" for c in self.choices)

    def jsonable(self, value: Any) -> Any:
        return value.value

    def format(self, value: Any) -> str:
        return value.value


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; ``os.cpu_count()``
    where there is none), at least 1: the default of ``jobs``."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --- the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One check option: a field of CheckSettings declared with ``option(...)``.

    name: the field, the API keyword and the ``check:`` key (``max_memory``); the
    command line spells it ``--max-memory`` (``flag``).
    """

    kind: Kind
    help: str  # one phrase, lower case and without a full stop; every front end shows it
    default: Any = None
    default_factory: Callable[[], Any] | None = None
    #: how the docs and ``--help`` state a default that the value alone would misstate
    default_text: str | None = None
    metavar: str | None = None  # the command line's placeholder; default: the kind's
    #: the mode chosen by turning this option on (``fast``, ``sample``, ``time_budget``)
    mode: Mode | None = None
    #: whether the report's ``settings`` shows it, under its name
    reported: bool = True
    name: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, value: Any) -> Any:
        """The value read by this option's kind; OptionError names this option."""
        try:
            return self.kind.parse(value)
        except OptionError as e:
            raise OptionError(e.message, self.name) from None

    def default_value(self) -> Any:
        return self.default_factory() if self.default_factory else self.default

    def _fixed_default(self) -> bool:
        """Whether ``default`` is a value worth stating (not "none", not computed)."""
        computed = self.default_factory is not None or self.default_text is not None
        return not computed and self.default not in (None, ())

    def shown_default(self) -> str | None:
        """The default as ``--help`` and the docs state it (None: nothing to state)."""
        if self.default_text is not None:
            return self.default_text
        return self.kind.format(self.default) if self._fixed_default() else None

    def schema(self) -> dict[str, Any]:
        """This option's ``check:`` property in the JSON Schema."""
        described = self.help + (f"; default: {self.default_text}" if self.default_text else "")
        schema = {**self.kind.schema(), "description": described}
        if self._fixed_default():
            schema["default"] = self.kind.jsonable(self.default)
        return schema


def option(
    kind: Kind,
    default: Any = None,
    help: str = "",
    *,
    default_factory: Callable[[], Any] | None = None,
    default_text: str | None = None,
    metavar: str | None = None,
    mode: Mode | None = None,
    reported: bool = True,
) -> Any:
    """A CheckSettings field that is a check option (see the module docstring)."""
    declared = Option(
        kind,
        help,
        default=default,
        default_factory=default_factory,
        default_text=default_text,
        metavar=metavar,
        mode=mode,
        reported=reported,
    )
    if default_factory is not None:
        return field(default_factory=default_factory, metadata={"option": declared})
    return field(default=default, metadata={"option": declared})


@dataclass
class CheckSettings:
    """Settings of one check. Each field declared with ``option`` is a check option;
    the fields' order is the order of ``gradcheck run --help`` and the docs."""

    eps: float = option(
        Real(positive=True),
        1e-6,
        "finite-difference step, relative to each element's magnitude (> 0)",
    )
    atol: float = option(
        Real(),
        0.0,
        "absolute tolerance added to the error estimate: an explicit widening (>= 0)",
    )
    rtol: float = option(
        Real(below=1.0, hint="a fraction: 0.05 allows 5%"),
        0.0,
        "relative tolerance added to the error estimate: an explicit widening (0 <= rtol < 1)",
    )
    only: tuple[str, ...] = option(
        Globs(), (), "check only the tensors matching these globs (conv1.*, input)"
    )
    sample: int | None = option(
        Integer(positive=True),
        None,
        "check this many randomly chosen elements per tensor",
        metavar="K",
        mode=Mode.SAMPLE,
    )
    fast: bool = option(
        Flag(),
        False,
        "random-direction check, then localise any failure",
        mode=Mode.FAST,
        reported=False,  # the report's mode says it
    )
    time_budget: float | None = option(
        Real(positive=True),
        None,
        "check as many elements as fit in this many seconds",
        metavar="SECONDS",
        mode=Mode.BUDGET,
    )
    method: Method = option(
        Choice(Method),
        Method.CENTRAL,
        "numeric reference: central differences or a Taylor-order test",
    )
    seed: int = option(
        Integer(),
        0,
        "seed for sampling and random directions; given on the command line or to the "
        "API, also for the values the config leaves out",
        default_text="the config's seed",
    )
    strict_kinks: bool = option(
        Flag(), False, "count elements at non-differentiable points as failures"
    )
    max_memory: int = option(
        Size(),
        1 << 30,
        "memory for batched perturbed forward passes (512MiB, 1GiB)",
        reported=False,
    )
    timeout: float | None = option(
        Real(positive=True),
        None,
        "give up after this many seconds, config and plugins included: exit 3, naming the "
        "layer and the call that was running (the command line stops a hung plugin "
        "wherever it hangs; in Python, code that returns to the interpreter)",
        metavar="SECONDS",
        reported=False,
    )
    jobs: int = option(
        Integer(positive=True),
        help="processes for the numeric side (the process running the check and its "
        "helpers); a check too small to pay for a helper's start-up runs in one",
        default_factory=lambda: available_cores(),
        default_text="the CPU cores available",
        metavar="N",
        reported=False,  # the report is the same whatever N is
    )
    #: not an option: chosen by the one mode option that is on (``fast``, ``sample``,
    #: ``time_budget``), full otherwise
    mode: Mode = Mode.FULL


OPTIONS: dict[str, Option] = {
    f.name: dataclasses.replace(f.metadata["option"], name=f.name)
    for f in dataclasses.fields(CheckSettings)
    if "option" in f.metadata
}
#: the options that choose a mode, in table order
MODE_OPTIONS = [o for o in OPTIONS.values() if o.mode is not None]


# --- rules across options ---------------------------------------------------------------


def read_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the options given (None: not given), read and checked together.

    >>> read_options({"eps": "1e-5", "max_memory": "512m", "only": None})
    {'eps': 1e-05, 'max_memory': 512000000}
    """
    values = {}
    for name, value in given.items():
        if name not in OPTIONS:
            raise OptionError(f"unknown option {name!r}; options are {', '.join(OPTIONS)}")
        if value is not None:
            values[name] = OPTIONS[name].parse(value)
    mode_of(values)
    return values


def mode_of(values: Mapping[str, Any]) -> Mode | None:
    """The mode that ``values`` turn on (None: none); ModeConflict for more than one,
    named in the order given."""
    on = [name for name, value in values.items() if name in OPTIONS and _turns_on(name, value)]
    if len(on) > 1:
        raise ModeConflict(on)
    return OPTIONS[on[0]].mode if on else None


def _turns_on(name: str, value: Any) -> bool:
    o = OPTIONS[name]
    return o.mode is not None and o.kind.selects(value)


def merge(settings: CheckSettings, values: Mapping[str, Any]) -> CheckSettings:
    """``settings`` with ``values`` (already read) on top: the command line's over the
    config's. A mode turned on replaces the settings' mode and clears its option
    (``--fast`` over ``check: {sample: 3}`` checks fast, and the report's ``sample`` is
    null); ``fast=False`` switches a fast mode off."""
    chosen = mode_of(values)
    changes = dict(values)
    if chosen is not None:
        for o in MODE_OPTIONS:
            if o.name not in values:
                changes[o.name] = o.default_value()
        changes["mode"] = chosen
    elif any(o.name in values and settings.mode is o.mode for o in MODE_OPTIONS):
        changes["mode"] = Mode.FULL
    return dataclasses.replace(settings, **changes)


def match_globs(globs: tuple[str, ...], names: list[str]) -> None:
    """Refuse globs that match no tensor: such a check would check nothing and pass.

    The OptionError (about ``only``) lists the tensors there are, and suggests
    ``'conv1.*'`` for a ``'conv1'`` that names a layer.
    """
    missed = []
    for pattern in globs:
        if any(fnmatchcase(n, pattern) for n in names):
            continue
        wider = pattern + ".*"
        hint = any(fnmatchcase(n, wider) for n in names)
        suggestion = f"; did you mean {wider!r}?" if hint else ""
        missed.append(f"{pattern!r} matches no tensor{suggestion}")
    if missed:
        from .text import listing

        shown = listing(names, 30)
        raise OptionError(f"{'; '.join(missed)} (the tensors are: {shown})", "only")


#: The report's first ``settings`` keys, in the order of the contract's example; the
#: other reported options follow in table order.
REPORT_FIRST = ("eps", "atol", "rtol", "method", "mode", "dtype", "seed")


def report_settings(settings: CheckSettings, dtype: str, **in_force: Any) -> dict[str, Any]:
    """The report's ``settings``: every reported option, ``mode`` and ``dtype``.

    in_force: values the engine used instead of the settings' (float32 scales the
    default tolerances), by option name.
    """
    found: dict[str, Any] = {"mode": settings.mode.value, "dtype": dtype}
    for o in OPTIONS.values():
        if o.reported:
            found[o.name] = o.kind.jsonable(in_force.get(o.name, getattr(settings, o.name)))
    first = {key: found.pop(key) for key in REPORT_FIRST if key in found}
    return {**first, **found}
