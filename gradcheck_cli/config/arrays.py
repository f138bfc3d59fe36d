"""Array values in a config: numbers, nested lists, ``.npy``/``.npz`` files, and for the
input also ``{shape: [...]}`` (seeded random) and ``{value: ..., batched: true}``.

Every array comes back finite and cast to the problem's dtype, or as None after an issue
has been recorded on the context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..text import listing
from .context import Context, as_int, as_number, join, resolve
from .files import (
    MAX_ARRAY_ELEMENTS,
    MAX_MEMBER_BYTES,
    MAX_RANK,
    NotRegular,
    nul_in,
    open_regular,
)
from .suggest import did_you_mean, show
from .yamlload import line_of

FORMS = "a number, a nested list, {file: x.npy} or {file: w.npz, key: name}"
INPUT_FORMS = "a nested list, {file: ...} or {shape: [...]}"
#: A layer's output larger than this is surely a typo (config/stack.py); parameters and
#: arrays given in a config (a file, ``{shape: [...]}``) are held to MAX_ARRAY_ELEMENTS.
MAX_RANDOM_SIZE = 10**8
#: The keys of an ``.npz`` listed in a message before "and N more".
LISTED_KEYS = 10
#: More numbers than this written in the YAML itself (or made by nested aliases) are
#: refused: such arrays belong in .npy files.
MAX_LITERAL_SIZE = 10**6


@dataclass
class ArrayValue:
    """A parsed array and whether the user marked it ``batched: true`` (input only)."""

    array: np.ndarray
    batched: bool = False


class _Bad(Exception):
    """One issue; ``path`` (when given) is more precise than the array's own path."""

    def __init__(self, line: int | None, message: str, path: str | None = None):
        super().__init__(message)
        self.line = line
        self.message = message
        self.path = path


def read_array(
    value: Any,
    path: str,
    line: int | None,
    ctx: Context,
    *,
    rng: np.random.Generator | None = None,
) -> ArrayValue | None:
    """Parse one array value at ``path``; ``rng`` given = the input (allows shape/batched)."""
    try:
        if isinstance(value, dict):
            return _from_mapping(value, path, line, ctx, rng)
        return ArrayValue(_finish(_literal(value, path, line), path, line, ctx))
    except _Bad as bad:
        ctx.add(bad.path or path, bad.line, bad.message)
        return None
    except RecursionError:
        ctx.add(path, line, "is nested too deeply to be an array")
        return None


def _from_mapping(
    spec: dict, path: str, line: int | None, ctx: Context, rng: np.random.Generator | None
) -> ArrayValue | None:
    is_input = rng is not None
    allowed = ["file", "key", "value"] + (["shape", "batched"] if is_input else [])
    for key in spec:
        if key not in allowed:
            if key == "batched":
                hint = (
                    "; only the input says `batched: true`, this array then carries the batch axis"
                )
            elif key == "shape":
                hint = "; only the input may be given as {shape: [...]} (seeded random)"
            else:
                hint = did_you_mean(key, allowed, listing="an array mapping takes")
            raise _Bad(line_of(spec, key), f"unknown key {show(key)} in an array{hint}")
    sources = [k for k in ("value", "file", "shape") if k in spec]
    if len(sources) != 1:
        forms = INPUT_FORMS if is_input else FORMS
        what = "none of" if not sources else "more than one of"
        raise _Bad(
            line_of(spec),
            f"an array mapping needs exactly one of value/file{'/shape' if is_input else ''}, "
            f"got {what} them; write {forms}",
        )
    batched = False
    if "batched" in spec:
        batched = spec["batched"]
        if not isinstance(batched, bool):
            raise _Bad(
                line_of(spec, "batched"), f"batched must be true or false, got {show(batched)}"
            )
    if "key" in spec and "file" not in spec:
        raise _Bad(line_of(spec, "key"), "key only goes with file: {file: w.npz, key: name}")
    source = sources[0]
    sub = join(path, source)
    sub_line = line_of(spec, source)
    try:
        if source == "value":
            if isinstance(spec["value"], dict):
                raise _Bad(sub_line, "value must be a number or a nested list, not a mapping")
            array = _literal(spec["value"], sub, sub_line)
        elif source == "file":
            array = _load_file(spec, sub, sub_line, ctx)
        else:
            array = _random(spec["shape"], sub_line, rng)
    except _Bad as bad:
        bad.path = bad.path or sub  # e.g. input.shape, layers[0].weight.file
        raise
    return ArrayValue(_finish(array, path, line, ctx), batched)


def _random(shape: Any, line: int | None, rng: np.random.Generator | None) -> np.ndarray:
    dims = [as_int(d) for d in shape] if isinstance(shape, (list, tuple)) else [None]
    if not dims or any(d is None or d < 1 for d in dims) or rng is None:
        raise _Bad(
            line, f"shape must be a list of positive integers like [1, 28, 28], got {show(shape)}"
        )
    if len(dims) > MAX_RANK:
        raise _Bad(line, f"shape has {len(dims)} axes; arrays are limited to {MAX_RANK} axes")
    if float(np.prod(dims, dtype=np.float64)) > MAX_ARRAY_ELEMENTS:
        raise _Bad(
            line,
            f"shape {dims} has more than {MAX_ARRAY_ELEMENTS:,} elements; use a smaller one",
        )
    return rng.standard_normal(tuple(dims))  # type: ignore[arg-type]


def _load_file(spec: dict, path: str, line: int | None, ctx: Context) -> np.ndarray:
    import zipfile  # only configs that read .npy/.npz files need it

    name = spec["file"]
    if not isinstance(name, str) or not name:
        raise _Bad(line, f"file must be a path like weights.npy, got {show(name)}")
    if nul_in(name):
        raise _Bad(line, f"file {show(name)} holds a NUL character, which no file name can")
    key = spec.get("key")
    key_line = line_of(spec, "key")
    key_path = join(path.rpartition(".")[0], "key")  # path is <array>.file
    if key is not None and not isinstance(key, str):
        raise _Bad(
            key_line, f"key must be the name of an array in the .npz, got {show(key)}", key_path
        )
    resolved = resolve(ctx.base_dir / name)
    ctx.sources.append(resolved)
    try:
        handle, size = open_regular(resolved)
        with handle:
            magic = handle.read(6)
            handle.seek(0)
            if magic.startswith(b"PK"):
                return _from_npz(handle, name, key, line, key_line, key_path)
            if key is not None:
                raise _Bad(
                    key_line,
                    f"key {key!r} only applies to .npz files; {name} is a .npy file",
                    key_path,
                )
            if not magic.startswith(b"\x93NUMPY"):
                raise _Bad(line, _not_numpy(name, magic))
            loaded = _read_npy(handle, size, name, line)
    except _Bad:
        raise
    except FileNotFoundError:
        raise _Bad(
            line, f"file not found: {resolved} (paths are relative to the config's folder)"
        ) from None
    except NotRegular as err:
        if err.kind == "a folder":
            raise _Bad(line, f"{resolved} is a folder; name a .npy or .npz file") from None
        raise _Bad(
            line,
            f"{resolved} is {err.kind}, not a regular file; arrays are read from .npy or "
            ".npz files",
        ) from None
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise _Bad(
                line,
                f"{name} is not a numeric .npy/.npz file (it holds pickled Python objects, "
                "which are never loaded); save it with np.save(path, array.astype(float))",
            ) from None
        raise _Bad(line, f"could not read {name}: ValueError: {err}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise _Bad(line, f"could not read {name}: {type(err).__name__}: {err}") from None
    return _numeric(loaded, name, line)


def _read_npy(handle: Any, size: int | None, name: str, line: int | None) -> np.ndarray:
    """An array from an open ``.npy`` stream, its header checked first (files.py):
    at most MAX_RANK axes and MAX_ARRAY_ELEMENTS numbers, no Python objects, and, when
    ``size`` (the bytes the file or zip member holds) is known, exactly the data its
    header declares. Nothing is allocated before the header passes."""
    fmt = np.lib.format
    version = fmt.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(handle)
    else:
        shape, fortran, dtype = fmt.read_array_header_2_0(handle)
    header_end = handle.tell()
    if dtype.hasobject:
        raise ValueError("holds Python objects that would need pickle to load")
    _check_shape(shape, name, line)
    count = math.prod(shape)
    data = count * dtype.itemsize
    if size is not None and size - header_end != data:
        raise _Bad(
            line,
            f"could not read {name}: its header declares shape {list(shape)} of {dtype} "
            f"({data:,} bytes of data) but the file holds {max(size - header_end, 0):,}; "
            "it is truncated or not what its header says",
        )
    handle.seek(0)
    return fmt.read_array(handle, allow_pickle=False)


def _check_shape(shape: tuple[int, ...], name: str, line: int | None) -> None:
    """Refuse an array file's declared shape over the limits, before reading its data."""
    if len(shape) > MAX_RANK:
        raise _Bad(
            line,
            f"{name} holds an array of {len(shape)} axes; arrays are limited to {MAX_RANK} axes",
        )
    count = math.prod(shape)
    if count > MAX_ARRAY_ELEMENTS:
        raise _Bad(
            line,
            f"{name} holds {count:,} numbers (shape {list(shape)}); arrays are limited to "
            f"{MAX_ARRAY_ELEMENTS:,} numbers, and a numeric check of that many elements "
            "could not finish",
        )


def _not_numpy(name: str, magic: bytes) -> str:
    """Why a file that is neither .npy nor .npz cannot be read (without reading it)."""
    if not magic:
        return f"{name} is empty; save an array with np.save(path, array)"
    what = "a pickle" if magic.startswith(b"\x80") else "not a .npy or .npz file"
    return (
        f"{name} is {what} (it does not start with NumPy's file header); save arrays with "
        "np.save(path, array) or np.savez(path, name=array), or write them in the YAML"
    )


def _from_npz(
    handle: Any,
    name: str,
    key: str | None,
    line: int | None,
    key_line: int | None,
    key_path: str,
):
    """One array of an ``.npz``, chosen by ``key`` (or its only one). The zip directory
    is read first: the member may not inflate to more than MAX_MEMBER_BYTES, and its own
    header is checked like a ``.npy``'s before any data is inflated."""
    import zipfile  # only configs that read .npy/.npz files need it

    try:
        with zipfile.ZipFile(handle) as archive:
            members = {
                info.filename[:-4]: info
                for info in archive.infolist()
                if info.filename.endswith(".npy")
            }
            keys = list(members)
            if key is None:
                if not keys:
                    raise _Bad(line, f"{name} holds no arrays")
                if len(keys) != 1:
                    raise _Bad(
                        line,
                        f"{name} holds {len(keys):,} arrays; pick one with key: "
                        f"(one of {listing(keys, LISTED_KEYS)})",
                    )
                key = keys[0]
            elif key not in members:
                raise _Bad(
                    key_line,
                    f"{name} has no array {key!r}"
                    + did_you_mean(key, keys, listing="its arrays are"),
                    key_path,
                )
            info = members[key]
            if info.file_size > MAX_MEMBER_BYTES:
                raise _Bad(
                    line,
                    f"{name}[{key}] inflates to {info.file_size:,} bytes (from "
                    f"{info.compress_size:,}); arrays are limited to {MAX_ARRAY_ELEMENTS:,} "
                    "numbers",
                )
            with archive.open(info) as member:
                return _numeric(
                    _read_npy(member, info.file_size, f"{name}[{key}]", line),
                    f"{name}[{key}]",
                    line,
                )
    except _Bad:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower() or "python objects" in str(err).lower():
            raise _Bad(
                line,
                f"{name} holds pickled Python objects, which are never loaded; save numeric "
                "arrays with np.savez(path, name=array.astype(float))",
            ) from None
        raise _Bad(line, f"could not read {name}: ValueError: {err}") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError) as err:
        raise _Bad(line, f"could not read {name}: {type(err).__name__}: {err}") from None


def _numeric(array: Any, name: str, line: int | None) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        raise _Bad(
            line, f"{name} has dtype {array.dtype}; it must hold real numbers (int or float)"
        )
    if array.size == 0:
        raise _Bad(line, f"{name} is empty (shape {list(array.shape)}); it must hold numbers")
    return array


def _literal(value: Any, path: str, line: int | None) -> np.ndarray:
    """A number or a rectangular nested list -> float64 array."""
    if isinstance(value, np.ndarray):  # the Python API
        _check_shape(value.shape, "the array", line)
        return _numeric(value, path, line).astype(np.float64)
    if _leaves(value, {}, 0) > MAX_LITERAL_SIZE:  # before walking: aliases multiply
        raise _Bad(
            line,
            f"holds more than {MAX_LITERAL_SIZE:,} numbers; save large arrays with "
            "np.save and write {file: array.npy}",
        )
    flat: list[float] = []
    shape = _walk(value, path, "", line, flat)
    return np.array(flat, dtype=np.float64).reshape(shape)


def _leaves(value: Any, seen: dict[int, int], depth: int) -> int:
    """How many numbers a nested list holds, each shared list (a YAML alias) counted
    once per use but visited once: a "billion laughs" document of nested aliases is
    sized in time linear in its text. Nesting deeper than MAX_RANK stops the count
    (``_walk`` refuses it)."""
    if not isinstance(value, (list, tuple)):
        return 1
    key = id(value)
    if key not in seen:
        if depth > MAX_RANK:
            return 0
        seen[key] = sum(_leaves(item, seen, depth + 1) for item in value)
    return seen[key]


def _describe(shape: tuple[int, ...]) -> str:
    if not shape:
        return "a single number"
    if len(shape) == 1:
        return f"{shape[0]} {'entry' if shape[0] == 1 else 'entries'}"
    return f"shape {list(shape)}"


def _walk(
    value: Any, root: str, where: str, line: int | None, flat: list[float]
) -> tuple[int, ...]:
    """Shape of a nested list at ``root + where`` (``where`` like ``[1][0]``); fills flat."""
    subject = f"element {root}{where} " if where else ""
    if isinstance(value, (list, tuple)):
        if where.count("[") >= MAX_RANK:
            raise _Bad(
                line,
                f"is nested more than {MAX_RANK} lists deep; arrays are limited to {MAX_RANK} axes",
            )
        if not value:
            raise _Bad(line, f"{subject}is an empty list; write at least one number")
        first: tuple[int, ...] | None = None
        for k, item in enumerate(value):
            item_line = line_of(value, k) if line_of(value, k) is not None else line
            shape = _walk(item, root, f"{where}[{k}]", item_line, flat)
            if first is None:
                first = shape
            elif shape != first:
                raise _Bad(
                    item_line,
                    f"ragged nested list: row {root}{where}[{k}] has {_describe(shape)} but "
                    f"{root}{where}[0] has {_describe(first)}; every row must have the same "
                    "length",
                )
        return (len(value), *first)  # type: ignore[misc]
    number = as_number(value)
    if number is None:
        raise _Bad(line, f"{subject}must be a number, got {show(value)}; arrays are {FORMS}")
    if not math.isfinite(number):
        raise _Bad(line, f"{subject}is {show(value)}; only finite numbers can be checked")
    if len(flat) >= MAX_LITERAL_SIZE:
        raise _Bad(
            line,
            f"holds more than {MAX_LITERAL_SIZE:,} numbers; save large arrays with "
            "np.save and write {file: array.npy}",
        )
    flat.append(number)
    return ()


def _finish(array: np.ndarray, path: str, line: int | None, ctx: Context) -> np.ndarray:
    """Cast to the problem dtype; NaN/Inf (from a file, or overflow) is an issue."""
    with np.errstate(over="ignore", invalid="ignore"):
        cast = array.astype(ctx.dtype)
    bad = ~np.isfinite(cast)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _Bad(
            line,
            f"contains NaN or Inf (first at index {list(where)}); only finite values can be "
            f"checked" + (f" in {ctx.dtype}" if np.isfinite(array).all() else ""),
        )
    return cast
