"""Arrays in JSON text at the cost of their size: the JSON report's per-element fields.

The JSON report holds every element of every checked tensor three times (``analytic``,
``numeric``, ``error_bound``), so a network of 267k parameters makes a 17 MB report.
``json.dumps(..., indent=2)`` writes it with the pure-Python encoder (the C one takes no
indent), one Python call per number, which cost more than a ``--fast`` check itself.
Here an array becomes text with numpy's and str's loops instead:

- each finite number is ``repr(float)``, as ``json`` writes it (the shortest text that
  reads back as the same float), made by ``map`` over ``tolist()``; NaN and infinity,
  which JSON cannot hold, are ``null``;
- the text between two numbers depends only on how many axes end there, so it is
  picked from a table of ``ndim`` separators by a vectorised count, and everything is
  joined once.

The layout is exactly ``json.dumps(nested_list, indent=indent)``'s: one number to a
line, each axis one level deeper (``tests/test_json_report.py`` compares the two on
every shape, dtype and special value).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


class JSONArray(list):
    """A nested list of floats (None for NaN and infinity), as the JSON report holds an
    array, which also keeps the float64 ``array`` it was made from so that
    ``array_text`` can write it without visiting the list."""

    __slots__ = ("array",)

    def __init__(self, nested: list, array: np.ndarray):
        super().__init__(nested)
        self.array = array


def jsonable(a: Any) -> Any:
    """``a`` as plain JSON data: nested lists of floats (a ``JSONArray``), a float for a
    0-d array; NaN and infinity become None.

    >>> jsonable(np.array([[1, 2.5], [np.nan, -np.inf]]))
    [[1.0, 2.5], [None, None]]
    >>> jsonable(np.float32(0.5)), jsonable(np.nan)
    (0.5, None)
    """
    arr = np.asarray(a, dtype=np.float64)
    values = arr.astype(object)  # Python floats, made in C
    values[~np.isfinite(arr)] = None
    nested = values.tolist()
    return nested if arr.ndim == 0 else JSONArray(nested, arr)


def array_text(arr: np.ndarray, indent: int, depth: int = 0) -> str:
    """``arr`` as ``json.dumps(jsonable(arr), indent=indent)`` writes it, with every line
    after the first indented ``depth`` more spaces (the depth of the line the array's
    key is on, when it is a value inside a document).

    arr: any shape; read as float64.

    >>> print(array_text(np.array([[1.0, np.nan]]), 2))
    [
      [
        1.0,
        null
      ]
    ]
    """
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 0 or arr.size == 0:  # no number to write, or one: json's own way
        return json.dumps(jsonable(arr), indent=indent).replace("\n", "\n" + " " * depth)
    layout = _Layout(arr.ndim, indent, depth)
    flat = arr.reshape(-1)
    if flat.size == 1:
        return layout.opening + _tokens(flat)[0] + layout.closing
    pieces = np.empty(2 * flat.size - 1, dtype=object)
    pieces[0::2] = _tokens(flat)
    pieces[1::2] = np.array(layout.separators, dtype=object)[_ends(arr.shape)]
    return layout.opening + "".join(pieces.tolist()) + layout.closing


def _tokens(flat: np.ndarray) -> list[str] | np.ndarray:
    """Each number of ``flat`` as json writes it: ``repr(float)``, or ``null`` where it is
    NaN or infinite. A list, or an object array of str."""
    finite = np.isfinite(flat)
    if finite.all():
        return list(map(repr, flat.tolist()))
    tokens = np.full(flat.size, "null", dtype=object)
    if finite.any():
        tokens[finite] = list(map(repr, flat[finite].tolist()))
    return tokens


class _Layout:
    """The text around the numbers of an array of ``ndim`` axes written with ``indent``,
    ``depth`` spaces in: every bracket on its own line, each axis one level deeper."""

    def __init__(self, ndim: int, indent: int, depth: int):
        def pad(level: int) -> str:
            return "\n" + " " * (depth + level * indent)

        #: up to the first number: ``ndim`` brackets
        self.opening = "[" + "".join(pad(level) + "[" for level in range(1, ndim)) + pad(ndim)
        #: after the last number: ``ndim`` brackets, each one level shallower
        self.closing = "".join(pad(level) + "]" for level in range(ndim - 1, -1, -1))
        #: between two numbers where ``r`` axes end (item r, 0 <= r < ndim): r brackets
        #: closed, a comma, r brackets opened again
        self.separators = [
            "".join(pad(ndim - j) + "]" for j in range(1, r + 1))
            + ","
            + "".join(pad(ndim - j) + "[" for j in range(r, 0, -1))
            + pad(ndim)
            for r in range(ndim)
        ]


def _ends(shape: tuple[int, ...]) -> np.ndarray:
    """For each position between two consecutive elements (flat index p = 1 .. size-1,
    C order): how many of the trailing axes end there, 0 .. ndim-1."""
    size = int(np.prod(shape))
    p = np.arange(1, size, dtype=np.int64)
    ends = np.zeros(size - 1, dtype=np.intp)
    block = 1
    for length in shape[:0:-1]:  # every axis but the first, innermost first
        block *= length
        ends += p % block == 0
    return ends
