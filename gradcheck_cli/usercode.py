"""Calling the user's plain functions (cs231n-style pairs and losses), and saying where
in the user's code something went wrong.

The built-in ``functions`` layer and ``function`` loss call functions that a plugin
defines. Every mistake met there is a UserCodeError whose message names the function
and a place in the user's file: for an exception, the line that raised it (the last
frame of the traceback in the function's own file, so a helper in another module is
reported where the function called it); for a wrong return value, the line where the
function is defined.
"""

from __future__ import annotations

import copy
import inspect
import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .protocol import UserCodeError

_PACKAGE = str(Path(__file__).resolve().parent)
#: A number YAML 1.1 reads as a string (``1e-5``, no dot): a number in every other key
#: of a config, so in ``args`` too.
_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _shown(filename: str) -> str:
    """A file as messages show it: relative to the current folder when below it."""
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return filename


def defined_at(fn: Callable[..., Any]) -> str:
    """``layers.py:41``, where ``fn`` is defined (empty when Python does not know)."""
    code = getattr(fn, "__code__", None)
    return f"{_shown(code.co_filename)}:{code.co_firstlineno}" if code is not None else ""


def cannot_take(fn: Callable[..., Any], passed: list[str]) -> str | None:
    """Why ``fn`` cannot be called with arguments named ``passed``, in that order
    (``affine_forward(x, w, b) cannot be called as affine_forward(x, w): missing a
    required argument: 'b'``); None when it can, or when Python cannot tell."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*passed)
    except TypeError as err:
        name = name_of(fn)
        return f"{name}{signature} cannot be called as {name}({', '.join(passed)}): {err}"
    return None


def positional_names(fn: Callable[..., Any]) -> list[str]:
    """The names of ``fn``'s positional parameters, in order ([] when unknown)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in kinds]


def raised(fn: Callable[..., Any], exc: BaseException) -> UserCodeError:
    """``affine_backward raised ValueError: ... (at layers.py:41, in affine_backward:
    dx = dout.dot(w.T))``: the exception, and the line of the user's code that raised
    it, the last frame in ``fn``'s own file (else the last frame outside gradcheck)."""
    code = getattr(fn, "__code__", None)
    text = f"{name_of(fn)} raised {type(exc).__name__}: {exc}"
    return UserCodeError(text + where_raised(exc, None if code is None else code.co_filename))


def where_raised(exc: BaseException, own_file: str | None = None) -> str:
    """`` (at layers.py:41, in affine_backward: dx = dout.dot(w.T))``: the line of the
    user's code that raised ``exc``, the last frame in ``own_file`` (else the last frame
    outside gradcheck); empty when every frame is gradcheck's (a built-in layer)."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if own_file is not None and f.filename == own_file]
    user = own or [f for f in frames if not f.filename.startswith(_PACKAGE)]
    if not user:
        return ""
    frame = user[-1]
    text = f" (at {_shown(frame.filename)}:{frame.lineno}, in {frame.name}"
    return text + (f": {frame.line})" if frame.line else ")")


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``; any exception it raises becomes a located UserCodeError."""
    try:
        return fn(*args)
    except (Exception, SystemExit) as exc:  # a plugin's sys.exit() is its mistake too
        raise raised(fn, exc) from exc


def wrong_return(fn: Callable[..., Any], message: str) -> UserCodeError:
    """A mistake in what ``fn`` returned: ``message`` and where ``fn`` is defined."""
    where = defined_at(fn)
    return UserCodeError(f"{message}; {name_of(fn)} is at {where}" if where else message)


def described(value: Any) -> str:
    """What a returned value is, for messages: ``None``, ``a float``, ``an array of
    shape [3, 4]``, ``a tuple of 2 values``."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of shape {list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    kind = type(value).__name__
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def as_given(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """A YAML value as plain Python: mappings as dicts, sequences as lists, a number
    that YAML read as a string (``1e-5``) as a float; everything else as it is. A value
    YAML shares between places (an alias) is converted once and stays shared."""
    memo = {} if memo is None else memo
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, dict):
        out: Any = {}
        memo[id(value)] = out
        out.update((k, as_given(v, memo)) for k, v in value.items())
        return out
    if isinstance(value, (list, tuple)):
        out = []
        memo[id(value)] = out
        out.extend(as_given(v, memo) for v in value)
        return out
    if isinstance(value, str) and _EXPONENT.match(value.strip()):
        return float(value)
    return value


def fresh(args: list[Any]) -> list[Any]:
    """A deep copy of the trailing arguments for one call: a function that updates them
    (cs231n's batch norm keeps running statistics in ``bn_param``) changes its own copy,
    so nothing carries over from one call to the next."""
    return copy.deepcopy(args)
