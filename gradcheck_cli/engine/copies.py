"""gradcheck's own copies of what it hands to user code, and exact comparisons.

A layer is handed arrays (its inputs, its parameters, ``dy``, its cache) and may, by
mistake, write into them; it returns arrays that it may keep and overwrite later (a
gradient buffer). Every array gradcheck keeps for a report, an expectation or
``explain`` is therefore its own copy (engine/passes.py), and the purity probes
(engine/purity.py) compare copies taken before a call with the arrays after it.

A cache is any object; the arrays in it are found where a layer usually puts them:
tuples (NamedTuples included), lists, dicts and dataclass fields, ``MAX_DEPTH`` levels
deep. Other objects (the layer itself, a user class) are left alone: walking into them
would copy or report state that is not the cache's (a layer's own buffers).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: How deep into nested containers a cache is copied and compared.
MAX_DEPTH = 3
#: Two results of one computation count as equal when they differ by at most this many
#: units in the last place of their largest magnitude (9e-13 of it in float64, 5e-4 in
#: float32). A repeated call gives the same bits in practice; the allowance absorbs
#: only another summation order (a batch of another size may take another BLAS kernel,
#: a view another memory layout than a copy, a reduction's rounding may depend on
#: alignment), never a real change (a new random draw, a doubled buffer, a counter,
#: batch statistics), which is many orders of magnitude larger.
ROUNDING_ULPS = 4096


def copy_params(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A new dict of copies of every parameter array."""
    return {k: np.array(v, copy=True) for k, v in params.items()}


def copy_tree(obj: Any, depth: int = MAX_DEPTH, array: Callable | None = None) -> Any:
    """``obj`` with every array reachable through containers replaced by a copy (or by
    ``array(a)``, a new array made from it: a float64 copy of a float32 cache).

    Containers are rebuilt (a NamedTuple stays that NamedTuple, a dataclass is copied
    field by field); anything else is returned as it is. An object that cannot be
    rebuilt is returned as it is too: the copy is a defence, never a new failure.
    """
    if isinstance(obj, np.ndarray):
        return obj.copy() if array is None else array(obj)
    if depth <= 0:
        return obj
    try:
        if isinstance(obj, tuple):
            items = [copy_tree(o, depth - 1, array) for o in obj]
            if hasattr(obj, "_fields"):  # a NamedTuple
                return type(obj)(*items)
            return tuple(items) if type(obj) is tuple else type(obj)(items)
        if isinstance(obj, list):
            return [copy_tree(o, depth - 1, array) for o in obj]
        if isinstance(obj, dict):
            new = copy.copy(obj)
            for k, v in obj.items():
                new[k] = copy_tree(v, depth - 1, array)
            return new
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            new = copy.copy(obj)
            for f in dataclasses.fields(obj):
                if hasattr(obj, f.name):
                    value = copy_tree(getattr(obj, f.name), depth - 1, array)
                    object.__setattr__(new, f.name, value)
            return new
    except Exception:  # an exotic container: keep the original rather than fail
        return obj
    return obj


def arrays_in(obj: Any, depth: int = MAX_DEPTH, path: str = "") -> Iterator[tuple[str, np.ndarray]]:
    """(path, array) for every array reachable in ``obj`` the way ``copy_tree`` walks it;
    paths read like Python (``.x``, ``[0]``, ``['mask']``; ``""`` for obj itself)."""
    if isinstance(obj, np.ndarray):
        yield path, obj
        return
    if depth <= 0:
        return
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        for name, o in zip(obj._fields, obj, strict=False):
            yield from arrays_in(o, depth - 1, f"{path}.{name}")
    elif isinstance(obj, (tuple, list)):
        for k, o in enumerate(obj):
            yield from arrays_in(o, depth - 1, f"{path}[{k}]")
    elif isinstance(obj, dict):
        for k, o in obj.items():
            yield from arrays_in(o, depth - 1, f"{path}[{k!r}]")
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            if hasattr(obj, f.name):
                yield from arrays_in(getattr(obj, f.name), depth - 1, f"{path}.{f.name}")


def snapshot(obj: Any) -> dict[str, np.ndarray]:
    """Copies of every array in ``obj`` by path, to compare with ``changed`` later."""
    return {p: a.copy() for p, a in arrays_in(obj)}


def changed(before: dict[str, np.ndarray], obj: Any, name: str = "cache") -> list[str]:
    """Where an array in ``obj`` no longer equals its ``snapshot`` (exactly), as
    ``cache.x``, ``cache[0]`` or ``cache`` (``name`` then the path)."""
    now = dict(arrays_in(obj))
    return [name + p for p, a in before.items() if p in now and not same(a, now[p])]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Exactly equal: same shape and every element equal, NaN equal to NaN. Used to see
    whether an array was written into (a write leaves other bits, always)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype and a.dtype.kind != "O" and bool((a == b).all()):
        return True  # the common case, and the fastest test of it
    try:
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc" and b.dtype.kind in "fc"))
    except (TypeError, ValueError):  # object arrays that do not compare
        return a is b


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to rounding (``ROUNDING_ULPS`` of the coarser dtype, relative to the
    largest magnitude of either): used for two results of one computation (a repeated
    forward or backward, a real network against gradcheck's copies). NaN and infinities
    must sit at the same places."""
    a, b = np.asarray(a), np.asarray(b)
    if same(a, b):
        return True
    if a.shape != b.shape or a.dtype.kind != "f" or b.dtype.kind != "f":
        return False
    unit = max(float(np.finfo(a.dtype).eps), float(np.finfo(b.dtype).eps))
    a, b = a.astype(np.float64), b.astype(np.float64)
    finite = np.isfinite(a)
    if not np.array_equal(finite, np.isfinite(b)) or not same(a[~finite], b[~finite]):
        return False
    a, b = a[finite], b[finite]
    if not a.size:
        return True
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))))
    return bool(np.max(np.abs(a - b)) <= ROUNDING_ULPS * unit * scale)


def max_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest absolute difference of two same-shaped float arrays (NaN-safe)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not a.size:
        return float("nan")
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    return float(np.nanmax(d)) if not np.all(np.isnan(d)) else float("nan")
