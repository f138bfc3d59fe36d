"""How precisely a hand-derived number was written: the unit in its last written place.

A person who writes ``0.3116`` has rounded to 4 decimals and means "within half of
0.0001"; ``3.116e-1`` has 3 decimals in its mantissa and the exponent -1, so its last
place is also 1e-4; ``2`` is rounded to units. ``expect:`` compares such a value to half
a unit in its last written place unless the config gives a tolerance
(engine/expectations.py). The text is read from the YAML node (config/yamlload.py keeps
it), so ``0.30`` and ``0.3`` differ as written; a value with no written text (from a
file, or a Python number through the API) has no last place.

>>> last_place("0.3116"), last_place("3.116e-1"), last_place("2"), last_place("-1.5E+2")
(0.0001, 0.0001, 1.0, 10.0)
>>> last_place("0x1F") is None, last_place("1:20") is None
(True, True)
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .context import as_number
from .yamlload import written_text

_DECIMAL = re.compile(r"[+-]?(?P<whole>\d*)(?:\.(?P<frac>\d*))?(?:[eE](?P<exp>[+-]?\d+))?")


def last_place(text: str) -> float | None:
    """The unit in the last written place of a decimal number's text, or None when the
    text is not a plain decimal (hex, octal, sexagesimal, ``.inf``) or its place is
    beyond the floats (``1e400``)."""
    clean = text.strip().replace("_", "")  # YAML 1.1 allows 1_000.5
    match = _DECIMAL.fullmatch(clean)
    if match is None or not (match["whole"] or match["frac"]):
        return None
    places = int(match["exp"] or 0) - len(match["frac"] or "")
    if places > 308:  # beyond every float: no place a float could be rounded to
        return None
    if places >= 0:
        return float(10.0**places)
    if places >= -308:
        return 1 / 10.0**-places
    return 10.0 ** max(places, -400)  # a subnormal place (5.0e-324), or 0


def _place_of(text: str | None, value: Any) -> float:
    """The last place of one scalar as written; NaN when it has no written text, or
    when the text does not read as the value that was loaded (YAML 1.1 reads ``017``
    as octal 15)."""
    if text is None and isinstance(value, str):
        text = value  # a number YAML kept as a string (1e-6), or one the API gave as text
    if text is None:
        return float("nan")
    place = last_place(text)
    number = as_number(value)
    try:
        read = float(text.strip().replace("_", ""))
    except ValueError:
        return float("nan")
    if place is None or number is None or read != number:
        return float("nan")
    return place


def written_places(container: Any, key: Any) -> np.ndarray | None:
    """The last written place of every number of the array ``container[key]`` (a scalar
    or a nested list, or ``{value: ...}``), shaped like the array; NaN where a number
    has no written text. None for an array from a file."""
    value = container[key]
    if isinstance(value, dict):
        if "value" not in value:
            return None
        return written_places(value, "value")
    return np.asarray(_walk(value, written_text(container, key)), dtype=np.float64)


def _walk(value: Any, text: str | None) -> Any:
    if isinstance(value, (list, tuple)):
        return [_walk(item, written_text(value, k)) for k, item in enumerate(value)]
    return _place_of(text, value)
