"""Validation of layer hyper-parameters: FieldErrors that say what would be right.

(Not ``config.context.as_int``, which only parses a YAML value and never raises.)
"""

from __future__ import annotations

from numbers import Integral

from ..protocol import FieldError

#: A YAML size: one int for both axes, or [height, width].
IntPair = int | tuple[int, int] | list[int]


def _is_int(value: object, minimum: int) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= minimum


def checked_int(value: object, field: str, minimum: int = 1) -> int:
    """value as an int >= minimum, or FieldError."""
    if not _is_int(value, minimum):
        raise FieldError(field, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def checked_pair(value: object, field: str, minimum: int) -> tuple[int, int]:
    """An int or an [h, w] pair of ints, each >= minimum, as (h, w); or FieldError."""
    items = list(value) if isinstance(value, (tuple, list)) else [value, value]
    if len(items) != 2 or not all(_is_int(v, minimum) for v in items):
        raise FieldError(
            field, f"must be an integer >= {minimum} or a pair [h, w] of them, got {value!r}"
        )
    return int(items[0]), int(items[1])


def same_shapes(in_shapes: tuple[tuple[int, ...], ...], layer: str) -> tuple[int, ...]:
    """The one shape every input of an element-wise multi-input layer has, or FieldError
    naming the shapes (the config loader adds which values they belong to)."""
    first = tuple(in_shapes[0])
    if any(tuple(s) != first for s in in_shapes[1:]):
        shapes = ", ".join(str(list(s)) for s in in_shapes)
        raise FieldError(
            "inputs",
            f"{layer} works element by element, so its inputs must have one shape, got {shapes}",
        )
    return first
