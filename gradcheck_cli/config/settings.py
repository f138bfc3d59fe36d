"""``check:`` (-> CheckSettings) and ``expect:`` (-> Expectations and their tolerance)."""

from __future__ import annotations

import fnmatch
import math
import re
from typing import Any

import numpy as np

from ..problem import CHECK_OPTIONS, CheckSettings, Expectation, LayerSpec, Method, Mode
from ..protocol import squeezed
from .arrays import read_array
from .context import Context, as_int, as_number, join
from .stack import Draft
from .suggest import did_you_mean, show
from .yamlload import line_of

CHECK_KEYS = CHECK_OPTIONS
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def _number(
    value: Any, where: str, line: int | None, ctx: Context, *, positive: bool
) -> float | None:
    number = as_number(value)
    low = "a positive number" if positive else "a number >= 0"
    if number is None or not math.isfinite(number):
        ctx.add(where, line, f"must be {low} like 1e-6, got {show(value)}")
        return None
    if number < 0 or (positive and number == 0):
        ctx.add(where, line, f"must be {low}, got {show(value)}")
        return None
    return number


def _bool(value: Any, where: str, line: int | None, ctx: Context) -> bool | None:
    if isinstance(value, bool):
        return value
    ctx.add(where, line, f"must be true or false, got {show(value)}")
    return None


def memory_size(value: Any) -> int | None:
    """``1073741824``, ``"512MiB"``, ``"1 GiB"``, ``"2GB"`` -> bytes (None if unreadable)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", value, re.IGNORECASE)
        if not match:
            return None
        size = float(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
        return int(size) if size >= 1 else None
    number = as_int(value)
    return number if number is not None and number >= 1 else None


def check_settings(doc: Any, seed: int, ctx: Context) -> CheckSettings:
    """The ``check:`` block; fields it leaves out keep CheckSettings' defaults."""
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
    modes: list[str] = []
    for key, value in block.items():
        where, line = join("check", key), line_of(block, key)
        if key not in CHECK_KEYS:
            ctx.add(
                where,
                line,
                f"unknown key {key!r}" + did_you_mean(key, CHECK_KEYS, listing="check takes"),
            )
        elif key in ("eps", "atol", "rtol", "time_budget"):
            number = _number(value, where, line, ctx, positive=key in ("eps", "time_budget"))
            if number is not None:
                setattr(settings, key, number)
                if key == "time_budget":
                    settings.mode = Mode.BUDGET
                    modes.append(key)
        elif key == "method":
            if value in ("central", "taylor"):
                settings.method = Method(value)
            else:
                ctx.add(where, line, f"must be central or taylor, got {show(value)}")
        elif key == "only":
            patterns = [value] if isinstance(value, str) else value
            if (
                isinstance(patterns, (list, tuple))
                and patterns
                and all(isinstance(p, str) and p for p in patterns)
            ):
                settings.only = tuple(patterns)
            else:
                ctx.add(
                    where,
                    line,
                    "must be a tensor name or glob, or a list of them like "
                    f'["conv1.*", input], got {show(value)}',
                )
        elif key in ("sample", "seed", "max_memory"):
            _integer_setting(settings, key, value, where, line, ctx, modes)
        else:  # fast, strict_kinks
            flag = _bool(value, where, line, ctx)
            if flag is not None:
                setattr(settings, key, flag)
                if key == "fast" and flag:
                    settings.mode = Mode.FAST
                    modes.append(key)
    if len(modes) > 1:
        ctx.add(
            "check",
            line_of(block, modes[1]),
            f"{' and '.join(modes)} choose different check modes; keep one of them",
        )
    return settings


def _integer_setting(
    settings: CheckSettings,
    key: str,
    value: Any,
    where: str,
    line: int | None,
    ctx: Context,
    modes: list[str],
) -> None:
    if key == "max_memory":
        size = memory_size(value)
        if size is None:
            ctx.add(
                where,
                line,
                "must be a positive number of bytes or a size like 512MiB or 1GiB, "
                f"got {show(value)}",
            )
        else:
            settings.max_memory = size
        return
    number = as_int(value) if not isinstance(value, bool) else None
    if key == "sample":
        if number is None or number < 1:
            ctx.add(
                where, line, f"must be a positive integer (elements per tensor), got {show(value)}"
            )
            return
        settings.sample = number
        settings.mode = Mode.SAMPLE
        modes.append(key)
    else:
        if number is None or number < 0:
            ctx.add(where, line, f"must be a non-negative integer, got {show(value)}")
            return
        settings.seed = number


def check_only_matches(doc: Any, settings: CheckSettings, names: list[str], ctx: Context) -> None:
    """A ``check.only`` glob that matches no tensor would check nothing and pass: an issue,
    as it is for ``--only`` and the Python API's ``only``."""
    block = doc.get("check")
    line = line_of(block, "only") if isinstance(block, dict) else line_of(doc, "check")
    for pattern in settings.only:
        if any(fnmatch.fnmatchcase(n, pattern) for n in names):
            continue
        wider = pattern + ".*"
        hint = (
            f"; did you mean {wider!r}?"
            if any(fnmatch.fnmatchcase(n, wider) for n in names)
            else ""
        )
        ctx.add(
            "check.only",
            line,
            f"{pattern!r} matches no tensor{hint} (the tensors are: {', '.join(names)})",
        )


def expectations(
    doc: Any,
    drafts: list[Draft],
    specs: list[LayerSpec],
    input_shapes: list[tuple[int, ...]] | None,
    batch: int | None,
    ctx: Context,
) -> tuple[list[Expectation], float, float]:
    """The ``expect:`` block: (expectations, atol, rtol).

    input_shapes: accepted shapes of ``input.grad`` (None when the input is unknown);
    batch: N when the config is batched, else None.
    """
    atol, rtol = 1e-6, 0.0
    block = doc.get("expect")
    if block is None:
        return [], atol, rtol
    if not isinstance(block, dict):
        ctx.add(
            "expect",
            line_of(doc, "expect"),
            f"must be a mapping like {{conv1.weight.grad: [...]}}, got {show(block)}",
        )
        return [], atol, rtol
    valid, shapes, unknown_layers = _expect_targets(drafts, specs, input_shapes, batch)
    found: list[Expectation] = []
    for key, value in block.items():
        where, line = join("expect", key), line_of(block, key)
        if key == "tolerance":
            atol, rtol = _tolerance(value, where, line, ctx, atol, rtol)
            continue
        if not isinstance(key, str) or key not in valid:
            head = key.split(".", 1)[0] if isinstance(key, str) else None
            if head in unknown_layers:
                continue  # that layer has its own issue already
            ctx.add(
                where,
                line,
                f"unknown expectation key {show(key)}"
                + did_you_mean(key, valid, listing="valid keys"),
            )
            read_array(value, where, line, ctx)
            continue
        parsed = read_array(value, where, line, ctx)
        if parsed is None:
            continue
        given = parsed.array.shape
        accepted = shapes.get(key)
        if accepted is not None and given not in accepted:
            also = [list(s) for s in accepted[1:] if s != accepted[0]]
            ctx.add(
                where,
                line,
                f"has shape {list(given)} but {_what(key)} has shape {list(accepted[0])}"
                + (f" (also accepted: {', '.join(map(str, also))})" if also else ""),
            )
            continue
        found.append(Expectation(key, parsed.array, line))
    return found, atol, rtol


def _what(key: str) -> str:
    if key == "loss":
        return "the loss"
    if key == "input.grad":
        return "the input"
    if key.endswith(".grad"):
        return key[: -len(".grad")]
    layer, suffix = key.rsplit(".", 1)
    return f"{layer}'s {'output' if suffix == 'output' else 'output delta'}"


def _expect_targets(
    drafts: list[Draft],
    specs: list[LayerSpec],
    input_shapes: list[tuple[int, ...]] | None,
    batch: int | None,
) -> tuple[list[str], dict[str, list[tuple[int, ...]]], set[str]]:
    valid = ["loss", "input.grad"]
    shapes: dict[str, list[tuple[int, ...]]] = {"loss": [(), (1,)]}
    if input_shapes:
        shapes["input.grad"] = input_shapes
    unknown: set[str] = set()
    by_name = {s.name: s for s in specs}
    lead = (batch,) if batch is not None else ()
    for draft in drafts:
        if draft.layer is None or draft.name is None:
            name = draft.item.get("name") if isinstance(draft.item, dict) else None
            unknown.update(n for n in (name, draft.name) if isinstance(n, str))
            continue
        valid += [f"{draft.name}.output", f"{draft.name}.delta"]
        valid += [f"{draft.name}.{p}.grad" for p in draft.layer.param_names]
        spec = by_name.get(draft.name)
        if spec is None:
            continue
        out = spec.out_shape
        for suffix in ("output", "delta"):
            shapes[f"{spec.name}.{suffix}"] = [(*lead, *out), (*lead, *squeezed(out))]
        for p, array in spec.params.items():
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
                f"unknown key {key!r}" + did_you_mean(key, found, listing="tolerance takes"),
            )
            continue
        number = _number(item, sub, sub_line, ctx, positive=False)
        if number is not None:
            found[key] = number
    return found["atol"], found["rtol"]


def input_grad_shapes(
    user_shape: tuple[int, ...], x: np.ndarray, batched: bool
) -> list[tuple[int, ...]]:
    """Shapes ``input.grad`` may be written in: as the input was written, or internal."""
    shapes = [user_shape, tuple(x.shape)]
    if not batched:
        shapes.append(tuple(x.shape[1:]))
    return shapes
