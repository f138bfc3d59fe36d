"""``layers:``: build each layer, then infer shapes through the whole network.

Building never runs a forward pass. Shape inference walks the layers in order (each
reads values listed above it, config/graph.py) from the inputs' per-example shapes, and
skips a layer that reads a value whose shape is unknown (an earlier layer's issue says
why); every parameter gets its given value (checked against the shape ``init_params``
defines) or its seeded default, or, with ``share:``, the owner's arrays.

Nothing here knows a layer type by name: what a layer takes (its input kind, the sizes a
given weight says, its shorthands, its parameter axes and sizes) is declared on its class
(``gradcheck_cli.protocol.Layer``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import protocol
from ..errors import ConfigIssue
from ..problem import LayerSpec
from ..protocol import FieldError, InputKind, Layer, Shape, image_shape, takes_several
from .arrays import MAX_ARRAY_ELEMENTS, MAX_RANDOM_SIZE, ArrayValue, read_array
from .context import Context, join
from .fields import BadValue, Signature, signature_of
from .functions import named_params, resolve_function
from .suggest import did_you_mean, show
from .yamlload import line_of

RESERVED_NAMES = frozenset({"input", "loss"})
#: Keys of a layer item that are the network's, not the layer type's: handled here and
#: in config/graph.py, never passed to the layer.
NETWORK_KEYS = ("type", "name", "inputs", "share")


@dataclass
class Draft:
    """One ``layers:`` item after building, before shape inference."""

    index: int
    item: dict
    path: str
    line: int | None
    type: str | None = None
    cls: type[Layer] | None = None
    name: str | None = None
    layer: Layer | None = None
    given: dict[str, ArrayValue] = field(default_factory=dict)
    #: the values it reads, in order (config/graph.py); None when unknown
    reads: tuple[str, ...] | None = None
    #: the layer whose parameters it uses (``share:``, resolved to their owner)
    share: str | None = None


def layer_items(doc: Any, ctx: Context) -> list:
    layers = doc.get("layers")
    if layers is None:
        ctx.missing(
            "layers",
            line_of(doc, "layers") or line_of(doc),
            "layers is required: a list like [{type: dense, out_features: 2}, {type: relu}]",
        )
        return []
    if not isinstance(layers, (list, tuple)) or not layers:
        ctx.add(
            "layers",
            line_of(doc, "layers"),
            f"must be a non-empty list of layers like - {{type: relu}}, got {show(layers)}",
        )
        return []
    return layers


def build_layers(items: list, ctx: Context, batch_size: int, plugins_ok: bool) -> list[Draft]:
    """Validate and construct every layer item; record issues, keep going."""
    drafts: list[Draft] = []
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    for i, item in enumerate(items):
        path = join("layers", i)
        draft = Draft(i, item if isinstance(item, dict) else {}, path, line_of(items, i))
        drafts.append(draft)
        if not isinstance(item, dict):
            hint = f" - {{type: {item}}}" if isinstance(item, str) else " - {type: relu}"
            ctx.add(path, draft.line, f"each layer must be a mapping like{hint}, got {show(item)}")
            continue
        draft.line = line_of(item) or draft.line
        kind = _layer_type(draft, ctx, plugins_ok)
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
        _layer_name(draft, kind, counts, names, ctx)
        if draft.cls is not None:
            _construct(draft, draft.cls, ctx, batch_size, plugins_ok)
    return drafts


def _layer_type(draft: Draft, ctx: Context, plugins_ok: bool) -> str | None:
    item = draft.item
    kind = item.get("type")
    if "type" not in item:
        ctx.add(
            join(draft.path, "type"),
            draft.line,
            "missing type; each layer needs `type:`"
            + did_you_mean(None, protocol.LAYERS, listing="one of"),
        )
        return None
    line = line_of(item, "type")
    if not isinstance(kind, str):
        ctx.add(join(draft.path, "type"), line, f"must be a layer type name, got {show(kind)}")
        return None
    draft.type = kind
    if kind in protocol.LAYERS:
        draft.cls = protocol.LAYERS[kind]
        return kind
    if kind in protocol.LOSSES:
        message = f"{kind!r} is a loss, not a layer; move it to `loss: {{type: {kind}, ...}}`"
    else:
        message = f"unknown layer type {kind!r}" + did_you_mean(
            kind, protocol.LAYERS, listing="known layer types"
        )
        if not plugins_ok:
            message += " (a plugin failed to load, see above)"
    ctx.add(join(draft.path, "type"), line, message)
    return kind


def _layer_name(
    draft: Draft, kind: str | None, counts: dict[str, int], names: dict[str, str], ctx: Context
) -> None:
    item = draft.item
    if "name" in item:
        name = item["name"]
        line = line_of(item, "name")
        where = join(draft.path, "name")
        if not isinstance(name, str) or not name.strip():
            ctx.add(where, line, f"must be a non-empty string like conv1, got {show(name)}")
            return
        if "." in name:
            suggestion = name.replace(".", "_")
            ctx.add(where, line, f"must not contain '.', got {name!r}; try {suggestion!r}")
            return
        if name in RESERVED_NAMES:
            ctx.add(where, line, f"{name!r} is reserved (input.grad, loss); pick another name")
            return
    elif kind is not None:
        name, line, where = f"{kind}_{counts[kind]}", draft.line, draft.path
    else:
        return
    if name in names:
        ctx.add(
            where,
            line,
            f"layer name {name!r} is already used by {names[name]}; names must be unique"
            + ("" if "name" in item else " (give this layer a `name:`)"),
        )
        return
    names[name] = draft.path
    draft.name = name


def _construct(
    draft: Draft, cls: type[Layer], ctx: Context, batch_size: int, plugins_ok: bool = True
) -> None:
    item = draft.item
    sig = signature_of(cls)
    param_names = tuple(getattr(cls, "param_names", ()) or ())
    wants_batch = bool(getattr(cls, "wants_batch_size", False))
    functions = tuple(getattr(cls, "function_fields", ()) or ())
    mapping = getattr(cls, "param_mapping", None)
    kwargs: dict[str, Any] = {}
    ok = True
    # required names not to call missing: the hint of a misspelt key already says them
    misspelt: set[str] = set()
    for key, value in item.items():
        if key in NETWORK_KEYS:
            continue
        where, line = join(draft.path, key), line_of(item, key)
        if key in functions:  # a name to look up in the plugins (config/functions.py)
            found = resolve_function(value, where, line, ctx, plugins_ok)
            ok = ok and found is not None
            kwargs[key] = found
            continue
        if mapping is not None and key == mapping:  # parameters the config names itself
            named = named_params(value, where, line, ctx)
            if named is None:
                ok = False
            else:
                kwargs[key], given = named
                draft.given.update(given)
            continue
        if key in param_names and not isinstance(value, bool):
            parsed = read_array(value, where, line, ctx)
            if parsed is not None:
                draft.given[key] = parsed
            continue
        if key == "batch_size" and wants_batch:
            ctx.add(where, line, "is set from the input's batch size; remove it")
            ok = False
            continue
        if key not in sig.accepted and not sig.any_keyword:
            if key in param_names:  # a bool for an array parameter
                message = f"must be an array; {draft.type} has no `{key}: {show(value)}` switch"
            else:
                choices = set(sig.accepted) | set(param_names) | set(NETWORK_KEYS)
                if wants_batch:
                    choices.discard("batch_size")
                hint = did_you_mean(key, choices, listing="it takes")
                misspelt.update(c for c in choices if f"{c!r}?" in hint)
                message = f"unknown key {show(key)} for {draft.type}{hint}"
            ctx.add(where, line, message)
            ok = False
            continue
        try:
            kwargs[key] = sig.coerce(key, value)
        except BadValue as err:
            ctx.add(where, line, str(err))
            ok = False
    ok = _reserved_keys(draft, cls, sig, ctx) and ok
    kwargs.update(_inferred(draft, cls, sig, kwargs))
    if wants_batch:
        kwargs["batch_size"] = batch_size
    missing = [
        n for n in sig.required if n not in kwargs and n not in item and n not in NETWORK_KEYS
    ]
    if missing:
        ok = False
    said_by = {f: p for p, fields in cls.inferred_from.items() for f in fields}
    for param, fields in cls.inferred_from.items():
        if param in draft.given and any(n in fields for n in missing):
            shorthand = cls.param_shorthands.get(param)
            ctx.add(
                join(draft.path, param),
                line_of(item, param),
                f"a {draft.type} {param} has the axes {cls.param_axes.get(param, '')}"
                + (f" (or {shorthand})" if shorthand else "")
                + f", got shape {list(draft.given[param].array.shape)}; "
                f"fix it or give {' and '.join(missing)}",
            )
    for name in missing:
        if name in misspelt or (name in said_by and said_by[name] in item):
            continue  # the issue of the misspelt key or of the array says it
        message = sig.missing(draft.type, name)
        if name in functions:
            message = f"missing: {draft.type} needs {name} (a function in a plugin)"
        ctx.add(join(draft.path, name), draft.line, message)
    if not ok:
        return
    try:
        draft.layer = cls(**kwargs)
    except FieldError as err:
        ctx.add(join(draft.path, err.field), line_of(item, err.field) or draft.line, err.message)
    except (Exception, SystemExit) as err:  # a plugin's sys.exit() is its mistake too
        ctx.add(
            draft.path,
            draft.line,
            f"could not build layer {draft.name or draft.type!r} ({draft.type}): "
            f"{type(err).__name__}: {err}",
        )


def _reserved_keys(draft: Draft, cls: type, sig: Signature, ctx: Context) -> bool:
    """A layer class whose ``__init__`` takes one of the network's keys (``name``,
    ``type``, ``inputs``, ``share``) never receives it: the network keeps those. A
    required one is an issue (the layer could not be built), an optional one a
    warning; both say which key and where ``__init__`` is written. False when the layer
    cannot be built."""
    taken = [key for key in NETWORK_KEYS if key in sig.accepted]
    ok = True
    for key in taken:
        where = reserved_key_text(cls, key, "layer")
        if key in sig.required:
            ctx.add(draft.path, draft.line, f"{where}; rename that argument")
            ok = False
        else:
            issue = ConfigIssue(
                ctx.file,
                draft.line,
                draft.path,
                f"{where}, so it always gets its default; rename that argument",
            )
            ctx.warnings.append(str(issue))
    return ok


def reserved_key_text(cls: type, key: str, kind: str) -> str:
    """``swish.__init__ (my_layers.py:12) takes `name`, which is the layer's reserved
    key: ...``."""
    init = getattr(cls, "__init__", None)
    place = ""
    try:
        code = init.__code__  # type: ignore[union-attr]
        place = f" ({Path(code.co_filename).name}:{code.co_firstlineno})"
    except AttributeError:
        pass
    owner = "the network" if kind == "layer" else "the loss block"
    return (
        f"{cls.__name__}.__init__{place} takes `{key}`, which is the {kind}'s reserved key: "
        f"{owner} reads it and never passes it to the {kind}"
    )


def _inferred(
    draft: Draft, cls: type[Layer], sig: Signature, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """Sizes a student can leave out because a given array (the weight) already says them."""
    found: dict[str, Any] = {}
    for param, fields in cls.inferred_from.items():
        if param in draft.given:
            said = cls.sizes_from(param, draft.given[param].array.shape)
            found.update((k, v) for k, v in said.items() if k in fields)
    return {
        k: v
        for k, v in found.items()
        if k not in kwargs and k not in draft.item and k in sig.accepted
    }


def infer_shapes(
    drafts: list[Draft], input_shapes: dict[str, Shape] | None, seed: int, ctx: Context
) -> tuple[list[LayerSpec], Shape | None]:
    """LayerSpecs for the layers whose shapes and parameters are known, in order; the
    network output's shape (the last layer's) when it is known.

    input_shapes: per-example shape of each network input by value name (None: unknown).
    """
    if input_shapes is None:
        return [], None
    shapes: dict[str, Shape] = dict(input_shapes)
    specs: list[LayerSpec] = []
    by_name: dict[str, LayerSpec] = {}
    for draft in drafts:
        if draft.layer is None or draft.name is None or draft.reads is None:
            continue
        if any(v not in shapes for v in draft.reads):
            continue  # it reads a value an earlier issue left unknown
        in_shapes = tuple(shapes[v] for v in draft.reads)
        out_shape = _output_shape(draft, in_shapes, ctx)
        if out_shape is None or not _sizes_fit(draft, in_shapes, out_shape, ctx):
            continue
        shapes[draft.name] = out_shape  # known, even when a parameter has an issue
        owner = by_name.get(draft.share) if draft.share is not None else None
        if draft.share is not None and owner is None:
            continue  # the owner has an issue of its own
        params, user_shapes = _params(draft, in_shapes, seed, ctx, owner)
        if params is None:
            continue
        spec = LayerSpec(
            name=draft.name,
            type=draft.type or "",
            layer=draft.layer,
            params=params,
            in_shape=in_shapes[0],
            out_shape=out_shape,
            user_shapes=user_shapes,
            line=draft.line,
            inputs=draft.reads,
            share=draft.share,
            in_shapes=in_shapes,
        )
        specs.append(spec)
        by_name[draft.name] = spec
    last = drafts[-1].name if drafts else None
    return specs, shapes.get(last) if last is not None else None


def _shape_arg(draft: Draft, in_shapes: tuple[Shape, ...]) -> Any:
    """What the layer's shape methods take: the one in_shape, or the tuple of them."""
    return in_shapes if takes_several(draft.layer) else in_shapes[0]  # type: ignore[arg-type]


def _shapes_text(draft: Draft, in_shapes: tuple[Shape, ...]) -> str:
    """``input shape [1, 5, 5]``, or ``input shapes r1 [4, 5, 5], c2 [2, 5, 5]``."""
    if len(in_shapes) == 1:
        return f"input shape {list(in_shapes[0])}"
    reads = draft.reads or ()
    return "input shapes " + ", ".join(
        f"{v} {list(s)}" for v, s in zip(reads, in_shapes, strict=True)
    )


def _output_shape(
    draft: Draft, in_shapes: tuple[Shape, ...], ctx: Context
) -> tuple[int, ...] | None:
    layer = draft.layer
    kind = type(layer).input_kind
    several = len(in_shapes) > 1
    for value, in_shape in zip(draft.reads or (), in_shapes, strict=True):
        if kind is InputKind.FLAT and len(in_shape) != 1:
            what = f"its input {value} has" if several else "gets"
            ctx.add(
                draft.path,
                draft.line,
                f"{draft.type} needs a flat vector but {what} shape {list(in_shape)}; "
                "add `- {type: flatten}` before it",
            )
            return None
    try:
        if kind is InputKind.IMAGE:
            for in_shape in in_shapes:
                image_shape(in_shape, draft.type or "")
        out = layer.output_shape(_shape_arg(draft, in_shapes))  # type: ignore[union-attr]
    except FieldError as err:
        message = err.message
        if several and err.field == "inputs":  # say which values those are
            message += f" (from {', '.join(draft.reads or ())})"
        ctx.add(
            join(draft.path, err.field),
            line_of(draft.item, err.field) or draft.line,
            message,
        )
        return None
    except (Exception, SystemExit) as err:
        ctx.add(
            draft.path,
            draft.line,
            f"layer {draft.name!r} ({draft.type}) cannot take {_shapes_text(draft, in_shapes)}: "
            f"{type(err).__name__}: {err}",
        )
        return None
    try:
        shape = tuple(int(d) for d in out)
        valid = all(d >= 1 for d in shape) and all(int(d) == d for d in out)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        ctx.add(
            draft.path,
            draft.line,
            f"layer {draft.name!r} ({draft.type}) gives output shape {show(out)} for "
            f"{_shapes_text(draft, in_shapes)}; its settings do not fit that input (a shape "
            "needs positive integers)",
        )
        return None
    return shape


def _sizes_fit(
    draft: Draft, in_shapes: tuple[Shape, ...], out_shape: tuple[int, ...], ctx: Context
) -> bool:
    """Refuse, before anything is allocated, an output or a built-in parameter so large
    that it is surely a typo (and could never be checked element by element)."""
    where = f"layer {draft.name!r} ({draft.type})"
    out = math.prod(out_shape)
    if out > MAX_RANDOM_SIZE:
        ctx.add(
            draft.path,
            draft.line,
            f"{where} would output {out:,} values per example (shape {list(out_shape)}); "
            f"keep every activation under {MAX_RANDOM_SIZE:,} (a gradient check needs a "
            "copy of the network per perturbed element)",
        )
        return False
    try:
        sizes = draft.layer.param_sizes(_shape_arg(draft, in_shapes), out_shape)  # type: ignore[union-attr]
    except Exception as err:
        ctx.add(
            draft.path,
            draft.line,
            f"{where}: param_sizes failed for {_shapes_text(draft, in_shapes)}: "
            f"{type(err).__name__}: {err}",
        )
        return False
    for param, (field_name, size) in sizes.items():
        if size > MAX_ARRAY_ELEMENTS:  # a parameter is allocated as it is built
            ctx.add(
                join(draft.path, field_name),
                line_of(draft.item, field_name) or draft.line,
                f"{where} would have a {param} of {size:,} elements; keep parameters under "
                f"{MAX_ARRAY_ELEMENTS:,} (each element is checked by its own forward passes)",
            )
            return False
    return True


def _params(
    draft: Draft,
    in_shapes: tuple[Shape, ...],
    seed: int,
    ctx: Context,
    owner: LayerSpec | None = None,
) -> tuple[dict[str, np.ndarray] | None, dict[str, tuple[int, ...]]]:
    """The layer's parameters and the shapes they were written in; with ``owner``
    (``share:``), the owner's very arrays, once their shapes are the ones this layer
    needs."""
    layer = draft.layer
    names = tuple(layer.param_names)  # type: ignore[union-attr]
    who = f"layer {draft.name!r} ({draft.type})"
    try:
        rng = np.random.default_rng([seed, draft.index])
        defaults = layer.init_params(_shape_arg(draft, in_shapes), rng)  # type: ignore[union-attr]
    except FieldError as err:
        ctx.add(
            join(draft.path, err.field), line_of(draft.item, err.field) or draft.line, err.message
        )
        return None, {}
    except (Exception, SystemExit) as err:
        ctx.add(draft.path, draft.line, f"{who}: init_params failed: {type(err).__name__}: {err}")
        return None, {}
    if not isinstance(defaults, dict) or set(defaults) != set(names):
        got = sorted(defaults) if isinstance(defaults, dict) else type(defaults).__name__
        ctx.add(
            draft.path,
            draft.line,
            f"{who} breaks the layer protocol: init_params returned {got} but param_names "
            f"is {list(names)}; they must name the same parameters",
        )
        return None, {}
    if owner is not None:
        return _shared(draft, defaults, owner, in_shapes, ctx)
    params: dict[str, np.ndarray] = {}
    user_shapes: dict[str, tuple[int, ...]] = {}
    ok = True
    for key in draft.given:
        if key not in names:
            ctx.add(
                join(draft.path, key),
                line_of(draft.item, key),
                f"{draft.type} has no parameter {key!r} with these settings "
                f"(its parameters: {', '.join(names) or 'none'})",
            )
            ok = False
    for name in names:
        try:
            default = np.asarray(defaults[name], dtype=ctx.dtype)
        except (TypeError, ValueError) as err:
            ctx.add(draft.path, draft.line, f"{who}: init_params gave a non-numeric {name}: {err}")
            ok = False
            continue
        given = draft.given.get(name)
        if given is None:
            if not np.all(np.isfinite(default)):
                ctx.add(draft.path, draft.line, f"{who}: init_params gave a non-finite {name}")
                ok = False
            params[name], user_shapes[name] = default, default.shape
            continue
        value = _fit(draft, name, given.array, default.shape, in_shapes, ctx)
        if value is None:
            ok = False
            continue
        params[name], user_shapes[name] = value, given.array.shape
    return (params if ok else None), user_shapes


def _shared(
    draft: Draft,
    defaults: dict[str, Any],
    owner: LayerSpec,
    in_shapes: tuple[Shape, ...],
    ctx: Context,
) -> tuple[dict[str, np.ndarray] | None, dict[str, tuple[int, ...]]]:
    """A sharing layer's parameters: the owner's arrays, when this layer, fed its own
    inputs, needs parameters of the same names and shapes (``defaults``, its
    ``init_params``)."""
    where, line = join(draft.path, "share"), line_of(draft.item, "share") or draft.line
    who = f"{draft.name} cannot share {owner.name}'s parameters"
    if set(defaults) != set(owner.params):
        mine = ", ".join(defaults) or "none"
        ctx.add(
            where,
            line,
            f"{who}: it has {mine} and {owner.name} has {', '.join(owner.params) or 'none'}",
        )
        return None, {}
    for name, array in owner.params.items():
        needed = np.shape(defaults[name])
        if tuple(needed) != array.shape:
            axes = type(draft.layer).param_axes.get(name, "")
            ctx.add(
                where,
                line,
                f"{who}: with its {_shapes_text(draft, in_shapes)} it needs a {name} of shape "
                f"{list(needed)}{' ' + axes if axes else ''}, and {owner.name}'s is "
                f"{list(array.shape)}; layers that share parameters need them in one shape",
            )
            return None, {}
    return owner.params, dict(owner.user_shapes)


def _fit(
    draft: Draft,
    name: str,
    value: np.ndarray,
    needed: tuple[int, ...],
    in_shapes: tuple[Shape, ...],
    ctx: Context,
) -> np.ndarray | None:
    """The given array in the layer's shape, allowing the written conveniences."""
    if value.shape == needed:
        return value
    if value.ndim == 0 and int(np.prod(needed)) == 1:  # one number fills a size-1 parameter
        return value.reshape(needed)
    try:
        written = draft.layer.from_written(name, value, needed)  # type: ignore[union-attr]
    except Exception:
        written = None  # a plugin's broken shorthand: the shape message below says enough
    if isinstance(written, np.ndarray) and written.shape == needed:
        return written
    axes = type(draft.layer).param_axes.get(name, "")
    ctx.add(
        join(draft.path, name),
        line_of(draft.item, name),
        f"{name} has shape {list(value.shape)} but this layer needs {list(needed)}"
        + (f" {axes}" if axes else "")
        + (
            f" for its input of shape {list(in_shapes[0])}"
            if len(in_shapes) == 1
            else f" for its {_shapes_text(draft, in_shapes)}"
        ),
    )
    return None
