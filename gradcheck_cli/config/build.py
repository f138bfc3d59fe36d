"""A parsed config mapping -> a validated :class:`~gradcheck_cli.problem.Problem`.

The order matters: plugins first (they register types), then the inputs (their batch
size is a constructor argument of some layers), the layers, what each reads and their
shapes, the loss (its target is checked against the final shape), then ``check:`` and
``expect:``. Every step records issues on the context and carries on where that is safe;
at the end any issue raises one ConfigError listing them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import protocol
from ..errors import ConfigError, ConfigIssue
from ..network import INPUT
from ..problem import LossSpec, NamedInput, Problem
from ..protocol import FieldError, Loss
from .arrays import ArrayValue, read_array
from .context import Context, as_int, join, key_text
from .fields import BadValue, signature_of
from .functions import resolve_function
from .graph import image_inputs, unread_warnings, wire
from .inputs import input_entries, read_inputs
from .plugins import load_plugins
from .semantics import unread_window_warnings
from .settings import check_only_matches, check_settings, expectations, input_grad_shapes
from .stack import build_layers, infer_shapes, layer_items, reserved_key_text
from .suggest import closest, did_you_mean, show
from .yamlload import line_of

TOP_KEYS = (
    "name",
    "seed",
    "dtype",
    "plugins",
    "input",
    "inputs",
    "layers",
    "loss",
    "check",
    "expect",
)
DTYPES = ("float64", "float32")
FLOAT32_WARNING = (
    "float32 is too coarse for finite differences; the numeric reference is computed in "
    "float64 and the analytic side is allowed its float32 rounding"
)


def build_problem(doc: dict, ctx: Context, default_name: str) -> Problem:
    """Validate ``doc``; raise ConfigError with every issue found."""
    for key in doc:
        if key not in TOP_KEYS:
            ctx.suggested.add(closest(key, TOP_KEYS) or "")
            ctx.add(
                key_text(key),
                line_of(doc, key),
                f"unknown key {show(key)}" + did_you_mean(key, TOP_KEYS, listing="valid keys"),
            )
    name = _name(doc, ctx, default_name)
    seed = _seed(doc, ctx)
    dtype = _dtype(doc, ctx)
    warnings = [FLOAT32_WARNING] if dtype == "float32" else []
    ctx.dtype = np.dtype(dtype)

    plugins_ok = load_plugins(doc.get("plugins"), doc, ctx)
    entries = input_entries(doc, ctx)
    value_names = [entry[0] for entry in entries]
    inputs = read_inputs(entries, ctx, seed, image_inputs(doc, value_names))
    batched = bool(inputs) and inputs[0].batched  # type: ignore[index]
    batch_size = inputs[0].array.shape[0] if inputs else 1

    drafts = build_layers(layer_items(doc, ctx), ctx, batch_size, plugins_ok)
    wire(drafts, value_names, ctx)
    in_shapes = {i.name: tuple(i.array.shape[1:]) for i in inputs} if inputs else None
    specs, out_shape = infer_shapes(drafts, in_shapes, seed, ctx)
    loss = _loss(doc, ctx, out_shape, batch_size if batched else None, plugins_ok)

    settings = check_settings(doc, seed, ctx)
    grad_shapes = (
        {f"{i.name}.grad": input_grad_shapes(i.user_shape, i.array, i.batched) for i in inputs}
        if inputs
        else None
    )
    expects = expectations(doc, drafts, specs, grad_shapes, batch_size if batched else None, ctx)
    if ctx.issues:
        raise ConfigError(ctx.issues)
    if not inputs or loss is None or out_shape is None or len(specs) != len(drafts):
        # every step that gives up records why; reaching here is a bug (exit 4)
        raise RuntimeError("the config loader stopped without reporting an issue")
    first = inputs[0]
    problem = Problem(
        path=ctx.file,
        name=name,
        seed=seed,
        dtype=dtype,
        x=first.array,
        batched=batched,
        input_user_shape=first.user_shape,
        layers=specs,
        loss=loss,  # type: ignore[arg-type]
        settings=settings,
        expectations=expects.found,
        expect_atol=expects.atol,
        expect_rtol=expects.rtol,
        expect_tolerance_given=expects.given,
        warnings=[*warnings, *ctx.warnings],
        sources=tuple(str(p) for p in ctx.sources),
        named_inputs={
            i.name: NamedInput(i.array, i.user_shape, i.line) for i in inputs if i.name != INPUT
        },
    )
    where = {i.name: i.path for i in inputs} | {d.name: d.path for d in drafts if d.name}
    problem.warnings.extend(unread_warnings(problem.network, where))
    problem.warnings.extend(unread_window_warnings(specs, ctx.file))
    check_only_matches(doc, settings, problem.tensor_names(), ctx)
    if ctx.issues:
        raise ConfigError(ctx.issues)
    return problem


def _name(doc: dict, ctx: Context, default: str) -> str:
    name = doc.get("name", default)
    if isinstance(name, (int, float)) and not isinstance(name, bool):
        return str(name)
    if not isinstance(name, str):
        ctx.add("name", line_of(doc, "name"), f"must be a title string, got {show(name)}")
        return default
    return name


def _seed(doc: dict, ctx: Context) -> int:
    if ctx.seed is not None and ctx.seed >= 0:
        return ctx.seed
    if ctx.seed is not None:  # from the command line or the Python API
        ctx.add("seed", None, f"--seed must be a non-negative integer, got {ctx.seed}")
        return 0
    value = doc.get("seed", 0)
    seed = as_int(value) if not isinstance(value, bool) else None
    if seed is None or seed < 0:
        ctx.add("seed", line_of(doc, "seed"), f"must be a non-negative integer, got {show(value)}")
        return 0
    return seed


def _dtype(doc: dict, ctx: Context) -> str:
    value = doc.get("dtype", "float64")
    if value in DTYPES:
        return value
    hint = did_you_mean(value, DTYPES) if isinstance(value, str) else ""
    ctx.add("dtype", line_of(doc, "dtype"), f"must be float64 or float32, got {show(value)}{hint}")
    return "float64"


def _loss(
    doc: dict, ctx: Context, out_shape: tuple[int, ...] | None, batch: int | None, plugins_ok: bool
) -> LossSpec | None:
    block = doc.get("loss")
    if block is None:
        ctx.missing(
            "loss",
            line_of(doc, "loss") or line_of(doc),
            "loss is required, e.g. {type: mse, target: [...]} or {type: upstream, grad: [...]}",
        )
        return None
    line = line_of(doc, "loss")
    if not isinstance(block, dict):
        hint = f" like {{type: {block}, ...}}" if isinstance(block, str) else ""
        ctx.add("loss", line, f"must be a mapping{hint}, got {show(block)}")
        return None
    line = line_of(block) or line
    cls = _loss_type(block, line, ctx, plugins_ok)
    if cls is None:
        return None
    kind = block["type"]
    reduction = block.get("reduction", "sum")
    if reduction not in ("sum", "mean"):
        ctx.add(
            "loss.reduction",
            line_of(block, "reduction"),
            f"must be sum or mean, got {show(reduction)}",
        )
    target_name = cls.target_name
    target = None
    if target_name is not None and any(closest(k, [target_name]) for k in block if k != "type"):
        ctx.suggested.add(join("loss", target_name))  # the unknown-key issue says it
    if target_name is not None:
        if target_name not in block:
            ctx.missing(
                join("loss", target_name), line, f"missing: {kind} needs {target_name} (an array)"
            )
        else:
            target = _target(block, target_name, ctx, batch)
    kwargs = _loss_kwargs(block, cls, ctx, plugins_ok)
    if kwargs is None or not _loss_reserved(cls, line, ctx):
        return None
    if "reduction" in signature_of(cls).accepted and reduction in ("sum", "mean"):
        kwargs["reduction"] = reduction  # a loss that reduces over the batch itself
    try:
        loss = cls(**kwargs)
    except FieldError as err:
        ctx.add(join("loss", err.field), line_of(block, err.field) or line, err.message)
        return None
    except (Exception, SystemExit) as err:  # a plugin's sys.exit() is its mistake too
        ctx.add("loss", line, f"could not build loss {kind}: {type(err).__name__}: {err}")
        return None
    if target is not None and out_shape is not None:
        target = _prepare(loss, kind, target, out_shape, block, line, ctx)
    return LossSpec(
        type=kind,
        loss=loss,
        target=target,
        reduction=str(reduction),
        line=line,
        batch_size=batch or 1,
    )


def _loss_suggestion(kind: str) -> str:
    """The did-you-mean of a loss type, saying what the proposed loss reads, and what
    the losses of a different kind with a related name read (``cross_entropy`` on
    probabilities, ``softmax_cross_entropy`` on logits): a near name is never proposed
    without saying how it differs."""
    close = closest(kind, protocol.LOSSES)
    if close is None:
        return f"; known losses: {_losses_told()}"
    reads = protocol.LOSSES[close].reads
    related = [
        name
        for name, cls in sorted(protocol.LOSSES.items())
        if name != close and (name in close or close in name) and cls.reads != reads
    ]
    reads = reads or (protocol.describe(protocol.LOSSES[close]) if related else "")
    hint = f"; did you mean {close!r}" + (f" ({reads})" if reads else "") + "?"
    for name in related:
        other = protocol.LOSSES[name].reads
        hint += f" {name!r} differs: {other or protocol.describe(protocol.LOSSES[name])}."
    return hint


def _losses_told() -> str:
    """Every loss type, each with what it reads when it says."""
    return ", ".join(
        name + (f" ({cls.reads})" if cls.reads else "")
        for name, cls in sorted(protocol.LOSSES.items())
    )


def _loss_reserved(cls: type[Loss], line: int | None, ctx: Context) -> bool:
    """A loss whose ``__init__`` takes ``type`` or its array key (``target``) never
    receives it: an issue when required, a warning when optional (as for layers)."""
    sig = signature_of(cls)
    ok = True
    for key in ("type", cls.target_name):
        if key is None or key not in sig.accepted:
            continue
        text = reserved_key_text(cls, key, "loss")
        if key in sig.required:
            ctx.add("loss", line, f"{text}; rename that argument")
            ok = False
        else:
            ctx.warnings.append(
                str(ConfigIssue(ctx.file, line, "loss", f"{text}, so it always gets its default"))
            )
    return ok


def _loss_type(block: dict, line: int | None, ctx: Context, plugins_ok: bool) -> type[Loss] | None:
    kind = block.get("type")
    if "type" not in block:
        ctx.add(
            "loss.type",
            line,
            "missing type" + did_you_mean(None, protocol.LOSSES, listing="one of"),
        )
        return None
    type_line = line_of(block, "type")
    if isinstance(kind, str) and kind in protocol.LOSSES:
        return protocol.LOSSES[kind]
    if isinstance(kind, str) and kind in protocol.LAYERS:
        message = (
            f"{kind!r} is a layer, not a loss; list it under layers: and pick a loss; "
            f"losses: {_losses_told()}"
        )
    elif isinstance(kind, str):
        message = f"unknown loss type {kind!r}" + _loss_suggestion(kind)
        if not plugins_ok:
            message += " (a plugin failed to load, see above)"
    else:
        message = f"must be a loss type name, got {show(kind)}"
    ctx.add("loss.type", type_line, message)
    return None


def _target(block: dict, key: str, ctx: Context, batch: int | None) -> np.ndarray | None:
    where, line = join("loss", key), line_of(block, key)
    parsed: ArrayValue | None = read_array(block[key], where, line, ctx)
    if parsed is None:
        return None
    array = parsed.array
    if batch is None:
        return array[np.newaxis]
    if array.ndim < 1 or array.shape[0] != batch:
        ctx.add(
            where,
            line,
            f"the input is batched (N={batch}), so {key} needs the batch axis first; "
            f"got shape {list(array.shape)}",
        )
        return None
    return array


def _loss_kwargs(
    block: dict, cls: type[Loss], ctx: Context, plugins_ok: bool = True
) -> dict[str, Any] | None:
    sig = signature_of(cls)
    reserved = {"type", "reduction", cls.target_name}
    functions = tuple(getattr(cls, "function_fields", ()) or ())
    kwargs: dict[str, Any] = {}
    ok = True
    for key, value in block.items():
        if key in reserved:
            continue
        where, line = join("loss", key), line_of(block, key)
        if key in functions:  # a name to look up in the plugins (config/functions.py)
            kwargs[key] = resolve_function(value, where, line, ctx, plugins_ok)
            ok = ok and kwargs[key] is not None
            continue
        if key not in sig.accepted and not sig.any_keyword:
            choices = (set(sig.accepted) | reserved) - {None}
            ctx.add(
                where,
                line,
                f"unknown key {show(key)} for {block['type']}"
                + did_you_mean(key, choices, listing="it takes"),
            )  # type: ignore[arg-type]
            ok = False
            continue
        try:
            kwargs[key] = sig.coerce(key, value)
        except BadValue as err:
            ctx.add(where, line, str(err))
            ok = False
    for name in sig.required:
        if name not in kwargs and name not in block:
            message = sig.missing(block["type"], name)
            if name in functions:
                message = f"missing: {block['type']} needs {name} (a function in a plugin)"
            ctx.add(join("loss", name), line_of(block), message)
            ok = False
    return kwargs if ok else None


def _prepare(
    loss: Loss,
    kind: str,
    target: np.ndarray,
    out_shape: tuple[int, ...],
    block: dict,
    line: int | None,
    ctx: Context,
) -> np.ndarray | None:
    name = loss.target_name or "target"
    try:
        prepared = loss.prepare_target(target, out_shape)
    except FieldError as err:
        ctx.add(join("loss", err.field), line_of(block, err.field) or line, err.message)
        return None
    except (Exception, SystemExit) as err:
        ctx.add(
            join("loss", name),
            line_of(block, name) or line,
            f"{kind} could not use this {name}: {type(err).__name__}: {err}",
        )
        return None
    try:
        prepared = np.asarray(prepared)
        if prepared.dtype.kind not in "iu":  # integer labels stay integers
            prepared = prepared.astype(ctx.dtype)
    except (TypeError, ValueError) as err:
        ctx.add("loss", line, f"{kind}.prepare_target returned a non-numeric array: {err}")
        return None
    return prepared


def default_name(source: str) -> str:
    return Path(source).stem if source and not source.startswith("<") else "config"
