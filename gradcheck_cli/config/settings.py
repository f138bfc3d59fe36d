"""``check:`` (-> CheckSettings) and ``expect:`` (-> Expectations and their tolerance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..indexing import BadIndex, parse_index, select, split_key
from ..options import (
    OPTIONS,
    CheckSettings,
    ModeConflict,
    OptionError,
    Real,
    match_globs,
    merge,
)
from ..problem import Expectation, LayerSpec
from ..protocol import squeezed
from .arrays import read_array
from .context import Context, join
from .stack import Draft
from .suggest import did_you_mean, show
from .written import written_places
from .yamlload import line_of

CHECK_KEYS = tuple(OPTIONS)


def check_settings(doc: Any, seed: int, ctx: Context) -> CheckSettings:
    """The ``check:`` block; fields it leaves out keep CheckSettings' defaults.

    Each key is read by its option's parser (``gradcheck_cli.options``), the one the
    command line and the Python API use."""
    settings = CheckSettings(seed=seed)
    block = doc.get("check")
    if block is None:
        return settings
    if not isinstance(block, dict):
        ctx.add(
            "check",
            line_of(doc, "check"),
            f"must be a mapping like {{eps: 1e-6}}, got {show(block)}",
        )
        return settings
    values: dict[str, Any] = {}
    for key, value in block.items():
        where, line = join("check", key), line_of(block, key)
        if key not in OPTIONS:
            ctx.add(
                where,
                line,
                f"unknown key {show(key)}" + did_you_mean(key, CHECK_KEYS, listing="check takes"),
            )
            continue
        try:
            values[key] = OPTIONS[key].parse(value)
        except OptionError as e:
            ctx.add(where, line, e.message)
    try:
        return merge(settings, values)
    except ModeConflict as e:
        ctx.add("check", line_of(block, e.names[1]), e.text())
        return settings


def check_only_matches(doc: Any, settings: CheckSettings, names: list[str], ctx: Context) -> None:
    """A ``check.only`` glob that matches no tensor would check nothing and pass: an issue
    for each, as ``--only`` and the Python API's ``only`` refuse them too."""
    block = doc.get("check")
    line = line_of(block, "only") if isinstance(block, dict) else line_of(doc, "check")
    for pattern in settings.only:
        try:
            match_globs((pattern,), names)
        except OptionError as e:
            ctx.add("check.only", line, e.message)


#: The ``expect:`` tolerance of a number with no written text (from a file): the default
#: when the config gives no ``tolerance:``.
DEFAULT_EXPECT_ATOL = 1e-6
DEFAULT_EXPECT_RTOL = 0.0


@dataclass
class ExpectBlock:
    """The ``expect:`` block: its expectations and the tolerance it gives (``given``
    False: each written number is compared to half a unit in its last written place)."""

    found: list[Expectation]
    atol: float = DEFAULT_EXPECT_ATOL
    rtol: float = DEFAULT_EXPECT_RTOL
    given: bool = False


def expectations(
    doc: Any,
    drafts: list[Draft],
    specs: list[LayerSpec],
    input_shapes: dict[str, list[tuple[int, ...]]] | None,
    batch: int | None,
    ctx: Context,
) -> ExpectBlock:
    """The ``expect:`` block.

    input_shapes: the accepted shapes of each network input's gradient by key
    (``input.grad``, or ``input.x.grad`` for several inputs; None when the inputs are
    unknown); batch: N when the config is batched, else None. A key may end in an index
    (``conv1.weight.grad[0, 0, 1, 1]``, gradcheck_cli/indexing.py).
    """
    result = ExpectBlock([])
    block = doc.get("expect")
    if block is None:
        return result
    if not isinstance(block, dict):
        ctx.add(
            "expect",
            line_of(doc, "expect"),
            f"must be a mapping like {{conv1.weight.grad: [...]}}, got {show(block)}",
        )
        return result
    valid, shapes, unknown_layers = _expect_targets(drafts, specs, input_shapes, batch)
    for key, value in block.items():
        where, line = join("expect", key), line_of(block, key)
        if key == "tolerance":
            result.atol, result.rtol = _tolerance(value, where, line, ctx, result.atol, result.rtol)
            result.given = True
            continue
        base, index_text = split_key(key) if isinstance(key, str) else (key, None)
        if not isinstance(base, str) or base not in valid:
            head = base.split(".", 1)[0] if isinstance(base, str) else None
            if head in unknown_layers:
                continue  # that layer has its own issue already
            ctx.add(where, line, _unknown_key(base, valid, drafts))
            read_array(value, where, line, ctx)
            continue
        parsed = read_array(value, where, line, ctx)
        if parsed is None:
            continue
        places = written_places(block, key)
        if places is not None and np.all(np.isnan(places)):
            places = None
        accepted = shapes.get(base)
        if index_text is not None:
            found = _indexed(key, base, index_text, parsed.array, accepted, where, line, ctx)
            if found is not None:
                found.places = places
                result.found.append(found)
            continue
        given = parsed.array.shape
        if accepted is not None and given not in accepted:
            also = [list(s) for s in accepted[1:] if s != accepted[0]]
            ctx.add(
                where,
                line,
                f"has shape {list(given)} but {_what(key)} has shape {list(accepted[0])}"
                + (f" (also accepted: {', '.join(map(str, also))})" if also else ""),
            )
            continue
        result.found.append(Expectation(key, parsed.array, line, places=places))
    return result


def _indexed(
    key: str,
    base: str,
    index_text: str,
    value: np.ndarray,
    accepted: list[tuple[int, ...]] | None,
    where: str,
    line: int | None,
    ctx: Context,
) -> Expectation | None:
    """An expectation of one element or a slice: the index read in one of the tensor's
    shapes, the value shaped like what it selects (size-1 axes aside)."""
    what = _what(base)
    if base == "loss":
        ctx.add(where, line, "the loss is one number and takes no index; write `loss: 0.25`")
        return None
    if not accepted:
        return None  # the tensor's shape is unknown: an earlier issue says why
    shapes_text = f"{what} has shape {list(accepted[0])}" + "".join(
        f" (also read as {list(s)})" for s in dict.fromkeys(accepted[1:]) if s != accepted[0]
    )
    try:
        selection = select(parse_index(index_text), accepted)
    except BadIndex as err:
        ctx.add(where, line, f"[{index_text}]: {err}; {shapes_text}")
        return None
    if squeezed(value.shape) != squeezed(selection.selected):
        fits = "one number" if not selection.selected else f"shape {list(selection.selected)}"
        ctx.add(
            where,
            line,
            f"has shape {list(value.shape)} but [{index_text}] selects {fits} of {what} "
            f"(shape {list(selection.shape)}); write {fits} there",
        )
        return None
    return Expectation(
        key,
        value,
        line,
        base=base,
        shape=selection.shape,
        positions=selection.positions.reshape(value.shape),
    )


def _unknown_key(key: Any, valid: list[str], drafts: list[Draft]) -> str:
    """Why an expectation key is unknown; a sharing layer's parameter gradient is
    pointed at its owner's."""
    if isinstance(key, str) and key.endswith(".grad"):
        layer, _, param = key[: -len(".grad")].rpartition(".")
        for draft in drafts:
            if draft.name == layer and draft.share is not None:
                return (
                    f"unknown expectation key {show(key)}: {layer} uses {draft.share}'s "
                    f"parameters (share:), whose gradient sums every use; expect "
                    f"{draft.share}.{param}.grad"
                )
    return f"unknown expectation key {show(key)}" + did_you_mean(key, valid, listing="valid keys")


def _what(key: str) -> str:
    if key == "loss":
        return "the loss"
    if key == "input.grad":
        return "the input"
    if key.startswith("input.") and key.count(".") == 2:
        return f"the input {key[len('input.') : -len('.grad')]}"
    if key.endswith(".grad"):
        return key[: -len(".grad")]
    layer, suffix = key.rsplit(".", 1)
    return f"{layer}'s {'output' if suffix == 'output' else 'output delta'}"


def _expect_targets(
    drafts: list[Draft],
    specs: list[LayerSpec],
    input_shapes: dict[str, list[tuple[int, ...]]] | None,
    batch: int | None,
) -> tuple[list[str], dict[str, list[tuple[int, ...]]], set[str]]:
    valid = ["loss", *(input_shapes or ["input.grad"])]
    shapes: dict[str, list[tuple[int, ...]]] = {"loss": [(), (1,)]}
    shapes.update(input_shapes or {})
    unknown: set[str] = set()
    by_name = {s.name: s for s in specs}
    lead = (batch,) if batch is not None else ()
    for draft in drafts:
        if draft.layer is None or draft.name is None:
            name = draft.item.get("name") if isinstance(draft.item, dict) else None
            unknown.update(n for n in (name, draft.name) if isinstance(n, str))
            continue
        valid += [f"{draft.name}.output", f"{draft.name}.delta"]
        if draft.share is None:  # a shared parameter's gradient is its owner's
            valid += [f"{draft.name}.{p}.grad" for p in draft.layer.param_names]
        spec = by_name.get(draft.name)
        if spec is None:
            continue
        out = spec.out_shape
        for suffix in ("output", "delta"):
            shapes[f"{spec.name}.{suffix}"] = [(*lead, *out), (*lead, *squeezed(out))]
        for p, array in spec.params.items() if spec.share is None else ():
            user = spec.user_shapes.get(p, array.shape)
            shapes[f"{spec.name}.{p}.grad"] = [user, array.shape, squeezed(user)]
    return valid, shapes, unknown


def _tolerance(
    value: Any, where: str, line: int | None, ctx: Context, atol: float, rtol: float
) -> tuple[float, float]:
    if not isinstance(value, dict):
        ctx.add(where, line, f"must be a mapping like {{atol: 1e-4, rtol: 0}}, got {show(value)}")
        return atol, rtol
    found = {"atol": atol, "rtol": rtol}
    for key, item in value.items():
        sub, sub_line = join(where, key), line_of(value, key)
        if key not in found:
            ctx.add(
                sub,
                sub_line,
                f"unknown key {show(key)}" + did_you_mean(key, found, listing="tolerance takes"),
            )
            continue
        try:  # read as the check block's atol and rtol are
            found[key] = Real().parse(item)
        except OptionError as e:
            ctx.add(sub, sub_line, e.message)
    return found["atol"], found["rtol"]


def input_grad_shapes(
    user_shape: tuple[int, ...], x: np.ndarray, batched: bool
) -> list[tuple[int, ...]]:
    """Shapes ``input.grad`` may be written in: as the input was written, or internal."""
    shapes = [user_shape, tuple(x.shape)]
    if not batched:
        shapes.append(tuple(x.shape[1:]))
    return shapes
