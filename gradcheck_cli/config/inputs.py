"""``input:`` or ``inputs:``: the network's inputs, one or several, of one batch size.

``input: <array>`` is the network's one input, the value ``input``. ``inputs: {x: <array>,
h0: <array>}`` gives several, each the value ``input.<name>``: layers read it as
``input.x`` and it is checked as ``input.x``. Each array is written as any input (a nested
list, ``{file: ...}``, ``{shape: [...]}``, ``{value: ..., batched: true}``); all of them
share one batch size, so either every input is batched, with the same N, or none is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..network import INPUT
from .arrays import INPUT_FORMS, read_array
from .context import Context, join
from .suggest import show
from .yamlload import line_of

#: A name under ``inputs:``: a word, as it appears in ``input.<name>``.
INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
#: Seeds the stream of the k-th ``inputs:`` entry given as ``{shape: [...]}``:
#: ``[seed, INPUTS_STREAM, k]``, apart from every layer's ``[seed, index]``.
INPUTS_STREAM = 0x1A9B7


#: (value name, key path, the value as written, line): one entry of input_entries.
Entry = tuple[str, str, Any, int | None]


@dataclass
class InputValue:
    """One network input, validated.

    array: (N, *shape), a 2-D example read by an image layer made one channel (1, H, W);
    user_shape: the shape as written (with the batch axis when batched).
    """

    name: str  # the value's name: "input", or "input.<key>" under inputs:
    path: str  # its key path in the config: "input" or "inputs.<key>"
    line: int | None
    array: np.ndarray
    batched: bool
    user_shape: tuple[int, ...]


def input_entries(doc: Any, ctx: Context) -> list[Entry]:
    """(value name, key path, written value, line) of every network input; issues for
    a missing, doubled or malformed ``input:``/``inputs:``."""
    has_one, has_many = "input" in doc, "inputs" in doc
    if has_one and has_many:
        ctx.add(
            "inputs",
            line_of(doc, "inputs"),
            "give either input: (the one network input) or inputs: (several, by name), not both",
        )
        return []
    if has_one:
        return [(INPUT, "input", doc["input"], line_of(doc, "input"))]
    if not has_many:
        ctx.missing(
            "input",
            line_of(doc),
            f"input is required ({INPUT_FORMS}); a network with several inputs names them "
            "under inputs: {x: ..., h0: ...}",
        )
        return []
    block = doc["inputs"]
    line = line_of(doc, "inputs")
    if not isinstance(block, dict) or not block:
        ctx.add(
            "inputs",
            line,
            "must be a mapping of input names to arrays, like {x: {shape: [3]}, h0: [0, 0]}, "
            f"got {show(block)}",
        )
        return []
    entries = []
    for key, value in block.items():
        where, key_line = join("inputs", key), line_of(block, key)
        if not isinstance(key, str) or not INPUT_NAME.match(key):
            ctx.add(
                where,
                key_line,
                "an input name is a word like x or h0 (letters, digits, _ and -, starting "
                f"with a letter or _), got {show(key)}",
            )
            continue
        entries.append((f"{INPUT}.{key}", where, value, key_line))
    return entries


def read_inputs(
    entries: list[Entry], ctx: Context, seed: int, one_channel: set[str]
) -> list[InputValue] | None:
    """Every network input of ``entries``, or None when one of them has an issue
    (recorded on ctx).

    one_channel: the value names read directly by an image layer, whose 2-D examples
    (H, W) become one channel (1, H, W).
    """
    if not entries:
        return None
    found: list[InputValue] = []
    ok = True
    for k, (name, path, value, line) in enumerate(entries):
        rng = np.random.default_rng(seed if name == INPUT else [seed, INPUTS_STREAM, k])
        made = _one_input(name, path, value, line, ctx, rng, name in one_channel)
        if made is None:
            ok = False
        else:
            found.append(made)
    if not ok:
        return None
    return found if _one_batch(found, ctx) else None


def _one_input(
    name: str,
    path: str,
    value: Any,
    line: int | None,
    ctx: Context,
    rng: np.random.Generator,
    one_channel: bool,
) -> InputValue | None:
    parsed = read_array(value, path, line, ctx, rng=rng)
    if parsed is None:
        return None
    array, batched = parsed.array, parsed.batched
    per_example = array.shape[1:] if batched else array.shape
    if batched and array.ndim < 2:
        ctx.add(
            path,
            line,
            f"a batched input needs the batch axis first and at least one more axis, "
            f"got shape {list(array.shape)}",
        )
        return None
    if len(per_example) == 2 and one_channel:
        per_example = (1, *per_example)  # a 2-D image is one channel
    n = array.shape[0] if batched else 1
    return InputValue(
        name, path, line, array.reshape((n, *per_example)), batched, tuple(array.shape)
    )


def _one_batch(inputs: list[InputValue], ctx: Context) -> bool:
    """All inputs batched with one N, or none: else an issue naming the odd one out."""
    batched = [i for i in inputs if i.batched]
    if not batched:
        return True
    first = batched[0]
    ok = True
    for other in inputs:
        if not other.batched:
            ctx.add(
                other.path,
                other.line,
                f"{first.path} is batched (N={first.array.shape[0]}) and all inputs share "
                "one batch: write this one with its batch axis first too, "
                "{value: [...], batched: true}",
            )
            ok = False
        elif other.array.shape[0] != first.array.shape[0]:
            ctx.add(
                other.path,
                other.line,
                f"holds a batch of {other.array.shape[0]} examples but {first.path} holds "
                f"{first.array.shape[0]}; all inputs share one batch size",
            )
            ok = False
    return ok
