"""Keyword arguments of a layer or loss: checked against ``__init__``'s signature.

Annotations are read leniently: ``int``, ``float``, ``bool``, ``str``, ``Literal``,
``tuple[int, int]``/``list[int]``, unions and ``X | None`` are enforced; anything else
is passed through as written.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .context import as_int, as_number
from .suggest import show


@dataclass
class Signature:
    """What ``cls(**kwargs)`` accepts: names, required names, annotations."""

    accepted: dict[str, inspect.Parameter] = field(default_factory=dict)
    hints: dict[str, Any] = field(default_factory=dict)
    any_keyword: bool = False

    @property
    def required(self) -> list[str]:
        return [n for n, p in self.accepted.items() if p.default is inspect.Parameter.empty]

    def annotation(self, name: str) -> Any:
        """The resolved annotation of keyword ``name`` (None when it has none)."""
        param = self.accepted.get(name)
        return self.hints.get(name, param.annotation if param else None)

    def coerce(self, name: str, value: Any) -> Any:
        """``value`` converted for keyword ``name``; BadValue says what would fit."""
        return coerce(value, self.annotation(name))

    def missing(self, type_name: str, name: str) -> str:
        """The message for a required keyword the config left out."""
        ann = self.hints.get(name)
        what = f" ({describe_annotation(ann)})" if ann is not None else ""
        return f"missing: {type_name} needs {name}{what}"


def signature_of(cls: type) -> Signature:
    init = cls.__init__
    if init is object.__init__:
        return Signature()
    try:
        sig = inspect.signature(init)
    except (TypeError, ValueError):
        return Signature(any_keyword=True)
    params = list(sig.parameters.values())[1:]  # drop self
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # unresolvable annotations: be lenient
        hints = {}
    return Signature(
        accepted={p.name: p for p in params if p.kind in kinds},
        hints=hints,
        any_keyword=any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params),
    )


class BadValue(ValueError):
    """A value that does not fit its annotation; the message says what would."""


_NONE = type(None)


def describe_annotation(ann: Any) -> str:
    """``int | tuple[int, int]`` -> "an integer or a pair [a, b] of integers"."""
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        parts: list[str] = []
        seen_sequence: set[Any] = set()
        for arg in typing.get_args(ann):
            if arg is _NONE:
                continue
            if typing.get_origin(arg) in (tuple, list, Sequence):
                item = (typing.get_args(arg) or (Any,))[0]
                if item in seen_sequence:  # int | tuple[int, int] | list[int]: say it once
                    continue
                seen_sequence.add(item)
            parts.append(describe_annotation(arg))
        text = " or ".join(parts)
        return text + " (or null)" if _NONE in typing.get_args(ann) else text
    if ann is bool:
        return "true or false"
    if ann is int:
        return "an integer"
    if ann is float:
        return "a number"
    if ann is str:
        return "a string"
    if origin is typing.Literal:
        return "one of " + ", ".join(show(a) for a in typing.get_args(ann))
    if origin in (tuple, list, Sequence):
        args = typing.get_args(ann)
        if origin is tuple and args and args[-1] is not Ellipsis:
            names = "[a, b]" if len(args) == 2 else f"of {len(args)}"
            what = "pair" if len(args) == 2 else "list"
            return f"a {what} {names} of {_plural(args[0])}"
        return f"a list of {_plural(args[0]) if args else 'values'}"
    return f"a {getattr(ann, '__name__', str(ann))}"


def _plural(ann: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans", Any: "values"}.get(
        ann, describe_annotation(ann)
    )


def coerce(value: Any, ann: Any) -> Any:
    """``value`` converted to fit ``ann`` (lists to tuples, ``"1e-3"`` to 0.001).

    Raises BadValue; unknown annotations accept anything.
    """
    if ann is inspect.Parameter.empty or ann is Any:
        return value
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(ann)
        if value is None and _NONE in args:
            return None
        for arg in args:
            if arg is _NONE:
                continue
            try:
                return coerce(value, arg)
            except BadValue:
                continue
        raise BadValue(f"must be {describe_annotation(ann)}, got {show(value)}")
    if ann is bool:
        if isinstance(value, bool):
            return value
        raise BadValue(f"must be true or false, got {show(value)}")
    if ann is int:
        number = as_int(value)
        if number is None:
            raise BadValue(f"must be an integer, got {show(value)}")
        return number
    if ann is float:
        number = as_number(value)
        if number is None:
            raise BadValue(f"must be a number, got {show(value)}")
        if not math.isfinite(number):
            raise BadValue(f"must be a finite number, got {show(value)}")
        return number
    if ann is str:
        if isinstance(value, str):
            return value
        raise BadValue(f"must be a string, got {show(value)}")
    if origin is typing.Literal:
        if value in typing.get_args(ann) and not isinstance(value, bool):
            return value
        raise BadValue(f"must be {describe_annotation(ann)}, got {show(value)}")
    if origin in (tuple, list, Sequence):
        return _coerce_sequence(value, ann, origin)
    return value


def _coerce_sequence(value: Any, ann: Any, origin: Any) -> Any:
    args = typing.get_args(ann)
    fixed = origin is tuple and args and args[-1] is not Ellipsis
    if not isinstance(value, (list, tuple)) or (fixed and len(value) != len(args)):
        raise BadValue(f"must be {describe_annotation(ann)}, got {show(value)}")
    item_anns = args if fixed else [args[0] if args else Any] * len(value)
    try:
        items = [coerce(v, a) for v, a in zip(value, item_anns, strict=True)]
    except BadValue:
        raise BadValue(f"must be {describe_annotation(ann)}, got {show(value)}") from None
    return tuple(items)  # YAML lists become tuples: hashable, like PyTorch's sizes
