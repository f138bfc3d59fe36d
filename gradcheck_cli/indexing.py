"""numpy's basic index syntax in keys: ``conv1.weight.grad[0, 0, 1, 1]``, ``fc.delta[0:2]``.

Pure functions shared by ``expect:`` keys (config/settings.py) and ``explain --entry``.
An index is integers (negative ones count from the end), slices ``start:stop:step`` and
at most one ``...``; fancy (list) and boolean indexing are refused, each with a message
that says what to write instead.

A tensor may be written in more than one shape (a 2-D conv kernel is (1, 1, kh, kw)
inside): an index is read in the first shape that has exactly as many axes as it names,
else in the first shape it fits. Every shape of a tensor holds the same elements in the
same (C) order, so the elements an index selects are its flat positions in that shape.

>>> split_key("conv1.weight.grad[0, 0, 1, 1]")
('conv1.weight.grad', '0, 0, 1, 1')
>>> parse_index("0, -1, 1:3, ...")
(0, -1, slice(1, 3, None), Ellipsis)
>>> select(parse_index("1, :"), [(2, 3)]).positions.tolist()
[3, 4, 5]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

Index = tuple[Any, ...]  # ints, slices and at most one Ellipsis

_INT = re.compile(r"[+-]?\d+")


class BadIndex(ValueError):
    """An index that cannot be read or does not fit: the message says what would."""


def split_key(key: str) -> tuple[str, str | None]:
    """``"fc.delta[0:2]"`` -> ``("fc.delta", "0:2")``; a key without ``[...]`` -> (key, None).

    A key with a ``[`` that is not closed at its end keeps the bracket in its base, so
    that the unknown-key message shows it as written.
    """
    key = key.strip()
    if key.endswith("]") and "[" in key:
        base, _, rest = key.partition("[")
        return base.strip(), rest[:-1]
    return key, None


def parse_index(text: str) -> Index:
    """The items of an index written between brackets; BadIndex says what is wrong."""
    if not text.strip():
        raise BadIndex("an empty index []; write one like [0, 1] or [0:2]")
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > 1 and parts[-1] == "":  # a trailing comma, as Python allows
        parts = parts[:-1]
    items: list[Any] = []
    for part in parts:
        items.append(_item(part))
    if sum(item is Ellipsis for item in items) > 1:
        raise BadIndex("an index may hold at most one '...'")
    return tuple(items)


def _item(part: str) -> Any:
    if part == "...":
        return Ellipsis
    if _INT.fullmatch(part):
        return int(part)
    if ":" in part:
        bounds = [b.strip() for b in part.split(":")]
        if len(bounds) <= 3 and all(b == "" or _INT.fullmatch(b) for b in bounds):
            start, stop, step = ([int(b) if b else None for b in bounds] + [None, None])[:3]
            if step == 0:
                raise BadIndex(f"slice {part}: the step must not be 0")
            return slice(start, stop, step)
    if part == "":
        raise BadIndex("an empty item between commas; write an integer or a slice like 0:2")
    if part.startswith("[") or part.startswith("("):
        raise BadIndex(
            f"{part} is a list of indices (fancy indexing), which keys do not take; "
            "write one integer or a slice start:stop:step per axis"
        )
    if part.lower() in ("true", "false"):
        raise BadIndex(
            f"{part} is a boolean index (a mask), which keys do not take; write integers "
            "or slices start:stop:step"
        )
    if part.lower() in ("none", "np.newaxis", "newaxis"):
        raise BadIndex(f"{part} adds an axis, which keys do not take; write integers or slices")
    return _not_an_index(part)


def _not_an_index(part: str) -> Any:
    try:
        float(part)
    except ValueError:
        raise BadIndex(
            f"{part!r} is not an index; write integers (negative ones count from the end), "
            "slices start:stop:step and at most one '...'"
        ) from None
    raise BadIndex(f"{part} is not an integer; indices count elements from 0")


def format_index(index: Index) -> str:
    """The index as numpy would print it between brackets: ``0, 1:3, ...``."""

    def one(item: Any) -> str:
        if item is Ellipsis:
            return "..."
        if isinstance(item, slice):
            text = f"{'' if item.start is None else item.start}:"
            text += "" if item.stop is None else str(item.stop)
            return text + ("" if item.step is None else f":{item.step}")
        return str(item)

    return ", ".join(one(i) for i in index)


@dataclass(frozen=True)
class Selection:
    """What an index selects in a tensor: ``shape`` is the tensor's shape it was read in
    (its coordinates are the ones reported), ``selected`` the shape of the result, and
    ``positions`` (shaped ``selected``) the flat position in ``shape`` of each element."""

    shape: tuple[int, ...]
    selected: tuple[int, ...]
    positions: np.ndarray

    def coordinates(self, flat: int) -> tuple[int, ...]:
        """The index in ``shape`` of the element at flat position ``flat``."""
        return tuple(int(i) for i in np.unravel_index(int(flat), self.shape))


def named_axes(index: Index) -> int:
    """How many axes an index names (``...`` names none)."""
    return sum(item is not Ellipsis for item in index)


def select(index: Index, shapes: list[tuple[int, ...]]) -> Selection:
    """The elements ``index`` selects in the first of ``shapes`` it is read in (module
    docstring). BadIndex names the shape and the axis that do not fit."""
    shapes = list(dict.fromkeys(tuple(s) for s in shapes))  # unique, in order
    n = named_axes(index)
    exact = [s for s in shapes if len(s) == n]
    wider = [s for s in shapes if len(s) > n or (len(s) == n and Ellipsis in index)]
    problems = []
    for shape in [*exact, *(s for s in wider if s not in exact)]:
        problem = _misfit(index, shape)
        if problem is None:
            grid = np.arange(math.prod(shape), dtype=np.int64).reshape(shape)
            picked = grid[index]
            if picked.size:
                return Selection(shape, tuple(picked.shape), np.asarray(picked))
            problem = f"selects no element of shape {list(shape)}"
        problems.append(problem)
    if not problems:
        most = max((len(s) for s in shapes), default=0)
        problems.append(f"names {n} axes but the tensor has {most}")
    raise BadIndex(problems[0])


def _misfit(index: Index, shape: tuple[int, ...]) -> str | None:
    """Why ``index`` does not fit ``shape`` (an integer out of range), else None."""
    n = named_axes(index)
    if n > len(shape):
        return f"names {n} axes but shape {list(shape)} has {len(shape)}"
    axes: list[int] = []
    k = 0
    for item in index:
        if item is Ellipsis:
            k += len(shape) - n
            continue
        axes.append(k)
        if isinstance(item, int) and not -shape[k] <= item < shape[k]:
            return (
                f"index {item} is out of range for axis {k} of size {shape[k]} "
                f"(shape {list(shape)}: from {-shape[k]} to {shape[k] - 1})"
            )
        k += 1
    return None
