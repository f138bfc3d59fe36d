"""Layers and losses made of the user's plain functions: what the loader does for them.

Two declarations on a layer or loss class ask for it (gradcheck_cli/protocol.py):

- ``function_fields``: ``__init__`` fields that name a function (``forward:
  affine_forward``). The name is looked up in the config's plugins, in the order
  ``plugins:`` lists them, and the function itself is passed; an unknown name is an
  issue with a did-you-mean over the functions the plugins define.
- ``param_mapping``: the key of a mapping in which the config names the parameters
  (``params: {w: {shape: [12, 5]}, b: [0, 0, 0, 0, 0]}``), in the order the functions
  take them. Each entry is an array as anywhere else, or ``{shape: [...], scale: s}``
  for a seeded random one (a RandomArray, drawn by the layer's ``init_params``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..protocol import RandomArray
from .arrays import MAX_RANDOM_SIZE, ArrayValue, read_array
from .context import Context, as_int, as_number, join
from .plugins import defined_functions
from .suggest import did_you_mean, show
from .yamlload import line_of

#: A parameter's name: a word, as it appears in the tensor name ``<layer>.<name>``.
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: The keys of a random parameter, ``{shape: [12, 5], scale: 0.01}``.
RANDOM_KEYS = ("shape", "scale")


def resolve_function(
    value: Any, where: str, line: int | None, ctx: Context, plugins_ok: bool = True
) -> Callable[..., Any] | None:
    """The function a config names at ``where`` (``layers[0].forward``), found in the
    plugins in order; None after an issue saying what would be right."""
    if not isinstance(value, str) or not value.strip():
        ctx.add(
            where,
            line,
            f"must be the name of a function defined in a plugin, like affine_forward, "
            f"got {show(value)}",
        )
        return None
    name = value.strip()
    for shown, module in ctx.plugin_modules:
        found = vars(module).get(name)
        if found is None:
            continue
        if callable(found) and not isinstance(found, type):
            return found
        what = "a class" if isinstance(found, type) else f"a {type(found).__name__}"
        ctx.add(where, line, f"{name!r} in {_short(shown)} is {what}, not a function")
        return None
    if not ctx.plugin_modules:
        message = (
            f"no plugins to look for function {name!r} in; list the file that defines it "
            "under plugins: (plugins: [layers.py], relative to this config)"
        )
        if not plugins_ok:
            message = f"function {name!r} not found (a plugin failed to load, see above)"
        ctx.add(where, line, message)
        return None
    defined = [f for _, module in ctx.plugin_modules for f in defined_functions(module)]
    files = ", ".join(_short(shown) for shown, _ in ctx.plugin_modules)
    ctx.add(
        where,
        line,
        f"no function {name!r} in the plugins ({files})"
        + did_you_mean(name, defined, listing="they define"),
    )
    return None


def _short(shown: str) -> str:
    """A plugin as messages name it: a file by its name, a module by its dotted name."""
    return Path(shown).name


def named_params(
    value: Any, where: str, line: int | None, ctx: Context
) -> tuple[dict[str, Any], dict[str, ArrayValue]] | None:
    """A ``param_mapping`` as written: (every parameter in order, given arrays as arrays
    and ``{shape: [...]}`` as RandomArrays; the given arrays as the loader keeps them).
    None after an issue."""
    if value is None:
        return {}, {}
    if not isinstance(value, dict):
        ctx.add(
            where,
            line,
            "must be a mapping of the parameters in the order the functions take them, "
            f"like {{w: {{shape: [12, 5]}}, b: [0, 0, 0, 0, 0]}}, got {show(value)}",
        )
        return None
    written: dict[str, Any] = {}
    given: dict[str, ArrayValue] = {}
    ok = True
    for name, spec in value.items():
        at, at_line = join(where, str(name)), line_of(value, name)
        if not isinstance(name, str) or not PARAM_NAME.match(name):
            ctx.add(
                at,
                at_line,
                f"a parameter name must be a word like w or gamma (it names the tensor "
                f"<layer>.<name>), got {show(name)}",
            )
            ok = False
            continue
        if isinstance(spec, dict) and "shape" in spec:
            random = _random(spec, at, at_line, ctx)
            if random is None:
                ok = False
            else:
                written[name] = random
            continue
        parsed = read_array(spec, at, at_line, ctx)
        if parsed is None:
            ok = False
            continue
        written[name] = given[name] = parsed
    if not ok:
        return None
    return {k: v.array if isinstance(v, ArrayValue) else v for k, v in written.items()}, given


def _random(spec: dict, where: str, line: int | None, ctx: Context) -> RandomArray | None:
    """``{shape: [12, 5], scale: 0.01}`` as a RandomArray, or None after an issue."""
    for key in spec:
        if key not in RANDOM_KEYS:
            ctx.add(
                join(where, str(key)),
                line_of(spec, key),
                f"unknown key {show(key)} in a random parameter"
                + did_you_mean(key, RANDOM_KEYS, listing="it takes")
                + " ({shape: [12, 5], scale: 0.01})",
            )
            return None
    shape = spec["shape"]
    dims = [as_int(d) for d in shape] if isinstance(shape, (list, tuple)) else [None]
    shape_line = line_of(spec, "shape") or line
    if not dims or any(d is None or d < 1 for d in dims):
        ctx.add(
            join(where, "shape"),
            shape_line,
            f"must be a list of positive integers like [12, 5], got {show(shape)}",
        )
        return None
    if math.prod(dims) > MAX_RANDOM_SIZE:  # type: ignore[arg-type]
        ctx.add(
            join(where, "shape"),
            shape_line,
            f"shape {dims} has more than {MAX_RANDOM_SIZE:,} elements; use a smaller one",
        )
        return None
    scale = as_number(spec.get("scale", 1.0))
    if scale is None or not math.isfinite(scale) or scale <= 0:
        ctx.add(
            join(where, "scale"),
            line_of(spec, "scale") or line,
            f"must be a number > 0 (the standard deviation of the random values), "
            f"got {show(spec.get('scale'))}",
        )
        return None
    return RandomArray(tuple(dims), scale)  # type: ignore[arg-type]
