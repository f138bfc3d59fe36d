"""``layers:``: build each layer, then infer shapes through the whole stack.

Building never runs a forward pass. Shape inference walks the stack from the input's
per-example shape and stops at the first layer whose output shape is unknown; every
parameter gets its given value (checked against the shape ``init_params`` defines) or
its seeded default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import protocol
from ..problem import LayerSpec
from ..protocol import FieldError, Layer
from .arrays import MAX_ARRAY_ELEMENTS, MAX_RANDOM_SIZE, ArrayValue, read_array
from .context import Context, join
from .fields import BadValue, Signature, signature_of
from .suggest import did_you_mean, show
from .yamlload import line_of

#: Layers whose 2-D input is read as one channel: (H, W) -> (1, H, W).
IMAGE_LAYERS = frozenset({"conv2d", "maxpool2d", "avgpool2d"})
RESERVED_NAMES = frozenset({"input", "loss"})
#: Sizes a given ``weight`` already says, so the user may leave them out.
INFERABLE = {"conv2d": ("out_channels", "kernel_size"), "dense": ("out_features",)}

#: How the built-in parameters' axes are called, for shape messages. A layer class may
#: add its own with a ``param_axes = {"weight": "(out, in)"}`` attribute.
PARAM_AXES = {
    ("conv2d", "weight"): "(out_channels, in_channels, kh, kw)",
    ("conv2d", "bias"): "(out_channels,)",
    ("dense", "weight"): "(out_features, in_features)",
    ("dense", "bias"): "(out_features,)",
}


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


def first_layer_type(doc: Any) -> str | None:
    """The ``type`` of the first layer, if it reads as one (for the 2-D input rule)."""
    layers = doc.get("layers")
    if isinstance(layers, (list, tuple)) and layers and isinstance(layers[0], dict):
        kind = layers[0].get("type")
        return kind if isinstance(kind, str) else None
    return None


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
            _construct(draft, draft.cls, ctx, batch_size)
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


def _construct(draft: Draft, cls: type[Layer], ctx: Context, batch_size: int) -> None:
    item = draft.item
    sig = signature_of(cls)
    param_names = tuple(getattr(cls, "param_names", ()) or ())
    wants_batch = bool(getattr(cls, "wants_batch_size", False))
    kwargs: dict[str, Any] = {}
    ok = True
    # required names not to call missing: the hint of a misspelt key already says them
    misspelt: set[str] = set()
    for key, value in item.items():
        if key in ("type", "name"):
            continue
        where, line = join(draft.path, key), line_of(item, key)
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
                choices = set(sig.accepted) | set(param_names) | {"type", "name"}
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
    kwargs.update(_inferred(draft, sig, kwargs))
    if wants_batch:
        kwargs["batch_size"] = batch_size
    inferable = INFERABLE.get(draft.type or "", ())
    missing = [n for n in sig.required if n not in kwargs and n not in item]
    if missing:
        ok = False
    if "weight" in draft.given and any(n in inferable for n in missing):
        shape = list(draft.given["weight"].array.shape)
        ctx.add(
            join(draft.path, "weight"),
            line_of(item, "weight"),
            f"a {draft.type} weight has the axes {PARAM_AXES.get((draft.type, 'weight'), '')}"
            + (" (or (kh, kw) for one channel)" if draft.type == "conv2d" else "")
            + f", got shape {shape}; fix it or give {' and '.join(missing)}",
        )
    for name in missing:
        if name in misspelt or ("weight" in item and name in inferable):
            continue  # the issue of the misspelt key or of the weight says it
        ctx.add(join(draft.path, name), draft.line, sig.missing(draft.type, name))
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


def _inferred(draft: Draft, sig: Signature, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Sizes a student can leave out because the given weight already says them."""
    given = draft.given.get("weight")
    if given is None:
        return {}
    shape = given.array.shape
    found: dict[str, Any] = {}
    if draft.type == "conv2d" and len(shape) in (2, 4):
        kh, kw = shape[-2:]
        found["out_channels"] = shape[0] if len(shape) == 4 else 1
        found["kernel_size"] = kh if kh == kw else (kh, kw)
    elif draft.type == "dense" and len(shape) == 2:
        found["out_features"] = shape[0]
    return {
        k: v
        for k, v in found.items()
        if k not in kwargs and k not in draft.item and k in sig.accepted
    }


def infer_shapes(
    drafts: list[Draft], in_shape: tuple[int, ...] | None, seed: int, ctx: Context
) -> tuple[list[LayerSpec], tuple[int, ...] | None]:
    """LayerSpecs for the layers whose shapes are known; the final shape if all are."""
    specs: list[LayerSpec] = []
    for draft in drafts:
        if in_shape is None or draft.layer is None or draft.name is None:
            return specs, None
        out_shape = _output_shape(draft, in_shape, ctx)
        if out_shape is None or not _sizes_fit(draft, in_shape, out_shape, ctx):
            return specs, None
        params, user_shapes = _params(draft, in_shape, seed, ctx)
        if params is not None:
            specs.append(
                LayerSpec(
                    name=draft.name,
                    type=draft.type or "",
                    layer=draft.layer,
                    params=params,
                    in_shape=in_shape,
                    out_shape=out_shape,
                    user_shapes=user_shapes,
                    line=draft.line,
                )
            )
        in_shape = out_shape
    return specs, in_shape


def _output_shape(draft: Draft, in_shape: tuple[int, ...], ctx: Context) -> tuple[int, ...] | None:
    layer = draft.layer
    if getattr(layer, "needs_flat_input", False) and len(in_shape) != 1:
        ctx.add(
            draft.path,
            draft.line,
            f"{draft.type} needs a flat vector but gets shape {list(in_shape)}; "
            "add `- {type: flatten}` before it",
        )
        return None
    try:
        out = layer.output_shape(in_shape)  # type: ignore[union-attr]
    except FieldError as err:
        ctx.add(
            join(draft.path, err.field),
            line_of(draft.item, err.field) or draft.line,
            err.message,
        )
        return None
    except (Exception, SystemExit) as err:
        ctx.add(
            draft.path,
            draft.line,
            f"layer {draft.name!r} ({draft.type}) cannot take input shape {list(in_shape)}: "
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
            f"layer {draft.name!r} ({draft.type}) gives output shape {show(out)} for input "
            f"shape {list(in_shape)}; its settings do not fit that input (a shape needs "
            "positive integers)",
        )
        return None
    return shape


def _sizes_fit(
    draft: Draft, in_shape: tuple[int, ...], out_shape: tuple[int, ...], ctx: Context
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
    field_name, size = "", 0
    if draft.type == "dense" and out_shape:
        field_name, size = "out_features", out_shape[0] * math.prod(in_shape)
    elif draft.type == "conv2d" and out_shape and in_shape:
        g = getattr(draft.layer, "geometry", None)  # a plugin may replace conv2d
        kernel = g.kh * g.kw if g is not None else 1
        field_name, size = "out_channels", out_shape[0] * in_shape[0] * kernel
    if size > MAX_ARRAY_ELEMENTS:  # a parameter is allocated as it is built
        ctx.add(
            join(draft.path, field_name),
            line_of(draft.item, field_name) or draft.line,
            f"{where} would have a weight of {size:,} elements; keep parameters under "
            f"{MAX_ARRAY_ELEMENTS:,} (each element is checked by its own forward passes)",
        )
        return False
    return True


def _params(
    draft: Draft, in_shape: tuple[int, ...], seed: int, ctx: Context
) -> tuple[dict[str, np.ndarray] | None, dict[str, tuple[int, ...]]]:
    layer = draft.layer
    names = tuple(layer.param_names)  # type: ignore[union-attr]
    who = f"layer {draft.name!r} ({draft.type})"
    try:
        defaults = layer.init_params(in_shape, np.random.default_rng([seed, draft.index]))  # type: ignore[union-attr]
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
        value = _fit(draft, name, given.array, default.shape, in_shape, ctx)
        if value is None:
            ok = False
            continue
        params[name], user_shapes[name] = value, given.array.shape
    return (params if ok else None), user_shapes


def _fit(
    draft: Draft,
    name: str,
    value: np.ndarray,
    needed: tuple[int, ...],
    in_shape: tuple[int, ...],
    ctx: Context,
) -> np.ndarray | None:
    """The given array in the layer's shape, allowing the written conveniences."""
    if value.shape == needed:
        return value
    # a 2-D kernel is a 1-in 1-out conv2d kernel; one number fills a size-1 parameter
    kernel_2d = draft.type == "conv2d" and name == "weight" and needed == (1, 1, *value.shape)
    if kernel_2d or (value.ndim == 0 and int(np.prod(needed)) == 1):
        return value.reshape(needed)
    cls = type(draft.layer)
    axes = getattr(cls, "param_axes", {}).get(name) or PARAM_AXES.get((draft.type, name), "")
    ctx.add(
        join(draft.path, name),
        line_of(draft.item, name),
        f"{name} has shape {list(value.shape)} but this layer needs {list(needed)}"
        + (f" {axes}" if axes else "")
        + f" for its input of shape {list(in_shape)}",
    )
    return None
