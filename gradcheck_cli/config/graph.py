"""``inputs:`` and ``share:`` on layers: what each layer reads and whose parameters it uses.

A layer reads the previous layer's output unless it lists what it reads under
``inputs:``: earlier layer names, ``input`` (the network's one input) or
``input.<name>`` (one of several, given under the top-level ``inputs:``), in the order
its forward takes them. Only layers listed earlier may be read, so the list is a
topological order and a cycle cannot be built; when a layer names a later one, the
message says so, and names the cycle that reading it would close. ``share: <layer>``
makes a layer use an earlier layer's parameters (tied weights, an unrolled recurrent
cell): it gives no arrays of its own, and the parameters stay that layer's.

Nothing here knows a layer type: how many values a layer reads is its class's
``n_inputs`` (``gradcheck_cli.protocol``).
"""

from __future__ import annotations

from typing import Any

from .. import protocol
from ..network import INPUT, Network
from ..protocol import InputKind, inputs_wanted, takes_several
from .context import Context, join
from .stack import Draft
from .suggest import did_you_mean, show
from .yamlload import line_of


def _written(item: Any, k: int, previous: str | None, value_names: list[str]) -> list[str]:
    """The values layer k reads as written (``input`` resolved when there is one input),
    unchecked: what the raw config says, for the cycle search and the 2-D image rule.
    previous: the name of layer k - 1."""
    if not isinstance(item, dict):
        return []
    refs = item.get("inputs")
    if refs is None:
        if k == 0:
            return list(value_names[:1]) if len(value_names) == 1 else []
        return [previous] if previous is not None else []
    refs = [refs] if isinstance(refs, str) else refs
    if not isinstance(refs, (list, tuple)):
        return []
    one = value_names[0] if len(value_names) == 1 else INPUT
    return [one if r == INPUT else r for r in refs if isinstance(r, str)]


def image_inputs(doc: Any, value_names: list[str]) -> set[str]:
    """The network inputs that an image layer (``InputKind.IMAGE``) reads directly: a
    2-D example of such an input is one channel. Called after the plugins loaded."""
    items = doc.get("layers")
    if not isinstance(items, (list, tuple)):
        return set()
    found: set[str] = set()
    for k, item in enumerate(items):
        kind = item.get("type") if isinstance(item, dict) else None
        cls = protocol.LAYERS.get(kind) if isinstance(kind, str) else None
        if cls is not None and cls.input_kind is InputKind.IMAGE:
            found.update(v for v in _written(item, k, None, value_names) if v in value_names)
    return found


def wire(drafts: list[Draft], value_names: list[str], ctx: Context) -> None:
    """Set each draft's ``reads`` (value names, in order) and ``share`` (the owner of
    the parameters it uses); record an issue for each mistake. value_names: the
    network's inputs (empty when the input itself has an issue)."""
    position = {d.name: k for k, d in enumerate(drafts) if d.name is not None}
    written = {
        d.name: _written(d.item, k, drafts[k - 1].name if k else None, value_names)
        for k, d in enumerate(drafts)
        if d.name is not None
    }
    for k, draft in enumerate(drafts):
        if draft.cls is None or draft.name is None:
            continue
        draft.reads = _reads(draft, k, drafts, value_names, position, written, ctx)
        draft.share = _share(draft, k, drafts, position, ctx)


def _reads(
    draft: Draft,
    k: int,
    drafts: list[Draft],
    value_names: list[str],
    position: dict[str, int],
    written: dict[str, list[str]],
    ctx: Context,
) -> tuple[str, ...] | None:
    item, cls = draft.item, draft.cls
    if cls is None:  # an unknown type: its own issue says so
        return None
    if "inputs" not in item:
        if takes_several(cls):
            ctx.add(
                draft.path,
                draft.line,
                f"{draft.type} reads {inputs_wanted(cls)} values: list them in order, "
                "e.g. inputs: [conv1, input]",
            )
            return None
        if k > 0:
            previous = drafts[k - 1].name
            return (previous,) if previous is not None else None  # its own issue says why
        if len(value_names) == 1:
            return (value_names[0],)
        if value_names:
            ctx.add(
                draft.path,
                draft.line,
                f"the network has several inputs ({', '.join(value_names)}): say which "
                f"this layer reads, e.g. inputs: [{value_names[0]}]",
            )
        return None
    where, line = join(draft.path, "inputs"), line_of(item, "inputs") or draft.line
    refs = item["inputs"]
    refs = [refs] if isinstance(refs, str) else refs
    if (
        not isinstance(refs, (list, tuple))
        or not refs
        or not all(isinstance(r, str) and r for r in refs)
    ):
        ctx.add(
            where,
            line,
            "must be a list of earlier layer names or input, like [conv1, input], "
            f"got {show(item['inputs'])}",
        )
        return None
    reads = []
    for j, ref in enumerate(refs):
        ref_line = line_of(item["inputs"], j) or line
        value = _resolve(ref, k, draft, drafts, value_names, position, written, ctx, ref_line)
        if value is None:
            return None
        reads.append(value)
    n, got = cls.n_inputs, len(reads)
    if (n == 1 and got != 1) or (n is None and got < 2) or (n not in (1, None) and got != n):
        wanted = inputs_wanted(cls)
        hint = (
            "; combine values first with add, multiply or concat"
            if n == 1
            else f"; list them all, in the order {draft.type} takes them"
        )
        ctx.add(where, line, f"{draft.type} reads {wanted} value{'s' * (n != 1)}, got {got}{hint}")
        return None
    return tuple(reads)


def _resolve(
    ref: str,
    k: int,
    draft: Draft,
    drafts: list[Draft],
    value_names: list[str],
    position: dict[str, int],
    written: dict[str, list[str]],
    ctx: Context,
    line: int | None,
) -> str | None:
    """The value ``ref`` names (a layer's output or a network input), or None after an
    issue."""
    where = join(draft.path, "inputs")
    if ref == INPUT or ref.startswith(INPUT + "."):
        return _network_input(ref, value_names, where, line, ctx)
    if ref == draft.name:
        ctx.add(where, line, f"{ref!r} cannot read its own output: that is a cycle")
        return None
    j = position.get(ref)
    if j is None:
        readable = [d.name for d in drafts[:k] if d.name is not None] + _readable(value_names)
        ctx.add(
            where,
            line,
            f"unknown input {ref!r}" + did_you_mean(ref, readable, listing="it can read"),
        )
        return None
    if j > k:
        cycle = _cycle(ref, draft.name or "", written)
        if cycle:
            why = f", and reading it closes a cycle: {' -> '.join(cycle)}"
        else:
            why = f"; move {ref!r} above this layer"
        ctx.add(
            where,
            line,
            f"{ref!r} comes later (layers[{j}]); a layer reads only layers listed above it{why}",
        )
        return None
    return ref


def _readable(value_names: list[str]) -> list[str]:
    """How the network inputs are written in ``inputs:``."""
    return [INPUT] if value_names == [INPUT] else list(value_names)


def _network_input(
    ref: str, value_names: list[str], where: str, line: int | None, ctx: Context
) -> str | None:
    if not value_names:
        return None  # the input has an issue of its own
    if ref in value_names:
        return ref
    if ref == INPUT:
        if len(value_names) == 1:
            return value_names[0]
        ctx.add(
            where,
            line,
            f"the network has several inputs ({', '.join(value_names)}): name one, "
            f"e.g. {value_names[0]}",
        )
        return None
    if value_names == [INPUT]:
        ctx.add(
            where,
            line,
            f"unknown input {ref!r}: the network has one input, `input` (input.<name> "
            "names one of several, given as inputs: {x: ..., h0: ...})",
        )
        return None
    ctx.add(
        where,
        line,
        f"unknown input {ref!r}"
        + did_you_mean(ref, value_names, listing="the network's inputs are"),
    )
    return None


def _cycle(start: str, target: str, written: dict[str, list[str]]) -> list[str]:
    """The cycle that ``target`` reading ``start`` would close, in the direction values
    flow (``[target, ..., start, target]``), or [] when ``start`` does not depend on
    ``target`` through what the layers say they read."""
    trail: dict[str, str | None] = {start: None}
    stack = [start]
    while stack:
        value = stack.pop()
        for read in written.get(value, []):
            if read == target:
                path = [value]
                while trail[path[-1]] is not None:
                    path.append(trail[path[-1]])  # type: ignore[arg-type]
                return [target, *path, target]
            if read not in trail and read in written:
                trail[read] = value
                stack.append(read)
    return []


def _share(
    draft: Draft, k: int, drafts: list[Draft], position: dict[str, int], ctx: Context
) -> str | None:
    """The owner of the parameters ``draft`` uses (``share:``), or None."""
    item = draft.item
    if "share" not in item:
        return None
    ref = item["share"]
    where, line = join(draft.path, "share"), line_of(item, "share") or draft.line
    earlier = [d.name for d in drafts[:k] if d.name is not None]
    if not isinstance(ref, str) or not ref:
        ctx.add(
            where, line, f"must name an earlier layer whose parameters it uses, got {show(ref)}"
        )
        return None
    if ref == draft.name:
        ctx.add(where, line, "a layer cannot share with itself; name the layer that owns them")
        return None
    j = position.get(ref)
    if j is None:
        ctx.add(
            where,
            line,
            f"unknown layer {ref!r}" + did_you_mean(ref, earlier, listing="earlier layers"),
        )
        return None
    if j > k:
        ctx.add(
            where,
            line,
            f"{ref!r} comes later (layers[{j}]); share: names an earlier layer, the one "
            "that owns the parameters (give them there)",
        )
        return None
    if draft.type == "functions":  # its parameters are the params: it is written with
        ctx.add(
            where,
            line,
            "a function pair cannot share another layer's parameters (its parameters are "
            "the params written on it); give it params of its own, or write the tied layer "
            "as a plugin class",
        )
        return None
    if not tuple(getattr(draft.cls, "param_names", ()) or ()):
        ctx.add(where, line, f"{draft.type} has no parameters to share")
        return None
    owner = drafts[j].share or ref  # sharing with a sharer shares with its owner
    for param in draft.given:
        ctx.add(
            join(draft.path, param),
            line_of(item, param),
            f"{draft.name} uses {owner}'s parameters (share: {ref}), so it gives no "
            f"arrays of its own; write {param} on {owner}",
        )
    return owner


def unread_warnings(network: Network, where: dict[str, str]) -> list[str]:
    """A warning for every layer output that nothing reads and that is not the
    network's output, and for every network input nothing reads: neither can change
    the loss. where: the key path of each value (``layers[2]``, ``inputs.h0``)."""
    warnings = []
    for value in network.input_names:
        if not network.readers(value):
            warnings.append(
                f"{where.get(value, value)}: no layer reads this input, so it cannot change "
                "the loss and its gradient is 0"
            )
    for node in network.nodes[:-1]:
        if not network.readers(node.name):
            warnings.append(
                f"{where.get(node.name, node.name)} ({node.name}): nothing reads its output and "
                "it is not the network's output (the last layer), so it cannot change the "
                "loss and every gradient through it is 0; read it with inputs: or remove it"
            )
    return warnings
