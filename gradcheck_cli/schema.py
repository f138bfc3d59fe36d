"""The JSON Schema (draft 2020-12) of the config format, built from the registry.

The fixed structure (docs/config.md, "Top-level keys": name, seed, dtype, plugins,
input or inputs, layers, loss, check, expect) is written out here; every registered layer and loss
type adds a schema of its own, read from its class: ``__init__``'s parameters (types from
the annotations, defaults from the signature, bounds from ``field_bounds``),
``param_names`` (arrays) and ``inferred_from`` (sizes a given weight says).

Layers and losses are matched on ``type`` with ``if``/``then``, so an editor offers the
fields of the type being written, while a type nobody registered yet (a plugin's, which
registers when the config loads) is still accepted under a generic schema.

>>> schema = config_schema()
>>> schema["$schema"], sorted(schema["required"])
('https://json-schema.org/draft/2020-12/schema', ['layers', 'loss'])
>>> schema["oneOf"]  # the one input, or several by name
[{'required': ['input']}, {'required': ['inputs']}]

The schema is a guide for editors and a first line of defence; the config loader stays
the authority (it checks shapes, ranges and plugin types, which a schema cannot).
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Sequence
from typing import Any

from . import options, protocol
from .options import INTEGER_PATTERN, NUMBER_PATTERN  # numbers as strings, as the loader reads

DRAFT = "https://json-schema.org/draft/2020-12/schema"
#: Expectation keys (besides ``tolerance``): loss, input.grad, <layer>.output,
#: <layer>.delta, <layer>.<param>.grad.
#: (input.<name>.grad has the shape of <layer>.<param>.grad.)
EXPECT_KEY_PATTERN = (
    r"^(tolerance|loss|(input\.grad|[^.\s\[\]]+\.(output|delta)"
    r"|[^.\s\[\]]+\.[^.\s\[\]]+\.grad)(\[[^\[\]]+\])?)$"
)
#: A name under the top-level ``inputs:`` (config/inputs.py's INPUT_NAME).
INPUT_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"

REF = "#/$defs/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF + name.replace("~", "~0").replace("/", "~1")}


def _num(**bounds: float) -> dict[str, Any]:
    """A number (or numeric string), with JSON Schema bounds on the number."""
    pattern = _unsigned(NUMBER_PATTERN) if _non_negative(bounds) else NUMBER_PATTERN
    return {"anyOf": [{"type": "number", **bounds}, {"type": "string", "pattern": pattern}]}


def _int(**bounds: float) -> dict[str, Any]:
    """An integer (or integral string like ``"2e0"``), with bounds on the integer."""
    pattern = _unsigned(INTEGER_PATTERN) if _non_negative(bounds) else INTEGER_PATTERN
    return {"anyOf": [{"type": "integer", **bounds}, {"type": "string", "pattern": pattern}]}


def _non_negative(bounds: dict[str, float]) -> bool:
    return bounds.get("minimum", -1) >= 0 or bounds.get("exclusiveMinimum", -1) >= 0


def _unsigned(pattern: str) -> str:
    """A numeric-string pattern without the minus sign (for bounds >= 0)."""
    return pattern.replace("[-+]?", r"\+?", 1)  # the leading sign, not the exponent's


def _bounded(schema: dict[str, Any], bounds: dict[str, float]) -> dict[str, Any]:
    """``schema`` with ``bounds`` on every integer/number in it (pairs included)."""
    if schema.get("type") in ("integer", "number"):
        return {**schema, **bounds}
    if schema.get("type") == "string" and "pattern" in schema and _non_negative(bounds):
        return {**schema, "pattern": _unsigned(schema["pattern"])}
    out = dict(schema)
    for key in ("anyOf", "prefixItems"):
        if key in out:
            out[key] = [_bounded(x, bounds) for x in out[key]]
    if isinstance(out.get("items"), dict):
        out["items"] = _bounded(out["items"], bounds)
    return out


def config_schema() -> dict[str, Any]:
    """The schema of a whole config, with every type registered right now."""
    from . import layers as _layers  # noqa: F401 - registers the built-in types
    from . import losses as _losses  # noqa: F401

    defs: dict[str, Any] = {
        "number": {
            "description": "a number (a numeric string such as '1e-6' is read as one)",
            "anyOf": [{"type": "number"}, {"type": "string", "pattern": NUMBER_PATTERN}],
        },
        "nested_list": {
            "description": "a rectangular nested list of numbers",
            "type": "array",
            "minItems": 1,
            "items": {"anyOf": [_ref("number"), _ref("nested_list")]},
        },
        "array": _array_schema(),
        "input": _input_schema(),
        "layer": _generic("layer", protocol.LAYERS),
        "loss": _generic("loss", protocol.LOSSES),
    }
    for name, cls in sorted(protocol.LAYERS.items()):
        defs[f"layer.{name}"] = layer_schema(name, cls)
    for name, cls in sorted(protocol.LOSSES.items()):
        defs[f"loss.{name}"] = loss_schema(name, cls)
    return {
        "$schema": DRAFT,
        "title": "gradcheck config",
        "description": (
            "A network, its input and its loss, whose hand-written backprop gradcheck "
            "checks against central differences. See `gradcheck layers` and docs/config.md."
        ),
        "type": "object",
        "required": ["layers", "loss"],
        "oneOf": [{"required": ["input"]}, {"required": ["inputs"]}],
        "additionalProperties": False,
        "properties": {
            "name": {
                "description": "a title for reports; default: the file name",
                "type": ["string", "number"],
            },
            "seed": {
                **_int(minimum=0),
                "description": "seeds every value the config does not give",
                "default": 0,
            },
            "dtype": {
                "description": "float32 is warned about: too coarse for finite differences",
                "enum": ["float64", "float32"],
                "default": "float64",
            },
            "plugins": {
                "description": (
                    "files (relative to the config) or module names that register custom "
                    "layers and losses"
                ),
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "items": {"type": "string", "minLength": 1}},
                ],
            },
            "input": {**_ref("input"), "description": "the network's input (or inputs:)"},
            "inputs": {
                "description": (
                    "several network inputs by name, each written as input: is; layers read "
                    "them as input.<name> (inputs: [input.h0]) and they are checked as "
                    "input.<name>; all share one batch size"
                ),
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"pattern": INPUT_NAME_PATTERN},
                "additionalProperties": _ref("input"),
            },
            "layers": {
                "description": (
                    "the layers, first layer first; each reads the previous one's output "
                    "unless it says otherwise with inputs:"
                ),
                "type": "array",
                "minItems": 1,
                "items": _ref("layer"),
            },
            "loss": _ref("loss"),
            "check": _check_schema(),
            "expect": _expect_schema(),
        },
        "$defs": defs,
    }


def _array_schema() -> dict[str, Any]:
    return {
        "description": "a number, a nested list, {file: x.npy} or {file: w.npz, key: name}",
        "anyOf": [
            _ref("number"),
            _ref("nested_list"),
            _mapping(("file", "value"), {}),
        ],
    }


def _input_schema() -> dict[str, Any]:
    extra = {
        "shape": {
            "description": "a seeded random input of this shape",
            "type": "array",
            "minItems": 1,
            "items": _int(minimum=1),
        },
        "batched": {
            "description": "the first axis is the batch; targets then carry it too",
            "type": "boolean",
            "default": False,
        },
    }
    return {
        "description": (
            "one example, channels first: a nested list, {file: x.npy}, {shape: [1, 28, 28]} "
            "(seeded random) or {value: [...], batched: true}"
        ),
        "anyOf": [_ref("nested_list"), _mapping(("file", "value", "shape"), extra)],
    }


def _mapping(sources: tuple[str, ...], extra: dict[str, Any]) -> dict[str, Any]:
    """An array given as a mapping: exactly one of ``sources``, plus ``extra`` keys."""
    return {
        "type": "object",
        "properties": {
            "file": {
                "description": ".npy or .npz file, relative to the config's folder",
                "type": "string",
                "minLength": 1,
            },
            "key": {"description": "the array's name inside a .npz file", "type": "string"},
            "value": {"anyOf": [_ref("number"), _ref("nested_list")]},
            **extra,
        },
        "additionalProperties": False,
        "oneOf": [{"required": [s]} for s in sources],
        "dependentRequired": {"key": ["file"]},
    }


def _generic(kind: str, registry: dict[str, type]) -> dict[str, Any]:
    """Any layer (or loss): ``type`` required; a registered type's own schema applies."""
    known = sorted(registry)
    other = protocol.LOSSES if kind == "layer" else protocol.LAYERS
    misplaced = sorted(set(other) - set(registry))  # a loss type under layers:, ...
    properties: dict[str, Any] = {
        "type": {
            "description": f"a built-in {kind} type, or one a plugin registers",
            "anyOf": [{"enum": known}, {"type": "string", "minLength": 1}],
            **({"not": {"enum": misplaced}} if misplaced else {}),
        }
    }
    if kind == "layer":
        properties.update(name=_layer_name(), inputs=_layer_inputs(None), share=_layer_share())
    else:
        properties["reduction"] = _reduction()
    return {
        "type": "object",
        "required": ["type"],
        "properties": properties,
        "allOf": [
            {
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": _ref(f"{kind}.{name}"),
            }
            for name in known
        ],
    }


def _layer_name() -> dict[str, Any]:
    return {
        "description": "unique name used in tensor names (conv1.weight); default <type>_<k>",
        "type": "string",
        "pattern": r"^[^.]+$",
        "not": {"enum": ["input", "loss"]},
    }


def _layer_inputs(count: int | None) -> dict[str, Any]:
    """``inputs:`` of a layer: the values it reads. count: 1 for a one-input layer, k
    for exactly k, 0 for any number from 2 up, None for the generic layer."""
    item = {"type": "string", "minLength": 1}
    listed: dict[str, Any] = {"type": "array", "minItems": 1, "items": item}
    if count == 1:
        listed["maxItems"] = 1
    elif count == 0:
        listed["minItems"] = 2
    elif count is not None:
        listed["minItems"] = listed["maxItems"] = count
    schema: dict[str, Any] = {
        "description": (
            "the values it reads, in order: earlier layer names, input, or input.<name>; "
            "default: the previous layer's output"
        ),
        "anyOf": [item, listed] if count in (1, None) else [listed],
    }
    return schema


def _layer_share() -> dict[str, Any]:
    return {
        "description": (
            "an earlier layer whose parameters this one uses (tied weights, an unrolled "
            "recurrent cell); it then gives no arrays, and the gradient sums every use"
        ),
        "type": "string",
        "pattern": r"^[^.]+$",
    }


def _reduction() -> dict[str, Any]:
    return {
        "description": "how per-example losses combine over a batch",
        "enum": ["sum", "mean"],
        "default": "sum",
    }


def layer_schema(name: str, cls: type[protocol.Layer]) -> dict[str, Any]:
    """The schema of one layer type: its fields, its arrays, ``type`` and ``name``."""
    params = tuple(getattr(cls, "param_names", ()) or ())
    skip = {"batch_size"} if getattr(cls, "wants_batch_size", False) else set()
    fields, required, open_ended = field_schemas(cls, skip)
    for key, bounds in cls.field_bounds.items():
        if key in fields:
            fields[key] = _bounded(fields[key], dict(bounds))
    said_by = {f: p for p, said in cls.inferred_from.items() for f in said}
    n_inputs = getattr(cls, "n_inputs", 1)
    properties: dict[str, Any] = {
        "type": {"const": name},
        "name": _layer_name(),
        "inputs": _layer_inputs(0 if n_inputs is None else n_inputs),
    }
    if params:
        properties["share"] = _layer_share()
    for p in params:
        default = cls.param_defaults.get(p, "seeded random")
        array = {**_ref("array"), "description": f"parameter {p}; default: {default}"}
        if p in fields:  # bias: [0.1] or bias: false
            array = {
                "description": f"parameter {p}, or false for none",
                "anyOf": [array, fields[p]],
            }
        properties[p] = array
    properties.update({k: v for k, v in fields.items() if k not in params})
    properties.update(_function_fields(cls, fields))
    mapping = getattr(cls, "param_mapping", None)
    if mapping in fields:
        properties[mapping] = _param_mapping()
    schema: dict[str, Any] = {
        "description": protocol.describe(cls),
        "type": "object",
        "properties": properties,
        "required": [
            "type",
            *(["inputs"] if protocol.takes_several(cls) else []),
            *(r for r in required if r not in said_by),
        ],
        "additionalProperties": open_ended,
    }
    inferable: dict[str, list[str]] = {}  # sizes a given weight says: required without it
    for r in required:
        if r in said_by:
            inferable.setdefault(said_by[r], []).append(r)
    rules = [
        {"if": {"not": {"required": [p]}}, "then": {"required": names}}
        for p, names in inferable.items()
    ]
    if len(rules) == 1:
        schema.update(rules[0])
    elif rules:
        schema["allOf"] = rules
    return schema


def loss_schema(name: str, cls: type) -> dict[str, Any]:
    """The schema of one loss type: its target array, its fields, ``reduction``."""
    target = getattr(cls, "target_name", None)
    fields, required, open_ended = field_schemas(cls, set())
    properties: dict[str, Any] = {"type": {"const": name}, "reduction": _reduction()}
    if target:
        properties[target] = {
            **_ref("array"),
            "description": f"{target}: an array (with the batch axis first for a batched input)",
        }
    properties.update(fields)
    properties.update(_function_fields(cls, fields))
    return {
        "description": protocol.describe(cls),
        "type": "object",
        "properties": properties,
        "required": ["type", *([target] if target else []), *required],
        "additionalProperties": open_ended,
    }


def _function_fields(cls: type, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields that name a function in the plugins (``forward: affine_forward``)."""
    return {
        key: {
            "description": "the name of a function defined in a plugin (plugins:)",
            "type": "string",
            "minLength": 1,
        }
        for key in getattr(cls, "function_fields", ())
        if key in fields
    }


def _param_mapping() -> dict[str, Any]:
    """A mapping that names a layer's parameters (``params: {w: {shape: [12, 5]}}``)."""
    random = {
        "description": "seeded random values: standard normal times scale",
        "type": "object",
        "required": ["shape"],
        "additionalProperties": False,
        "properties": {
            "shape": {"type": "array", "minItems": 1, "items": _int(minimum=1)},
            "scale": {**_num(exclusiveMinimum=0), "default": 1.0},
        },
    }
    return {
        "description": (
            "the parameters in the order the functions take them, each an array or "
            "{shape: [...], scale: s} (seeded random); checked as <layer>.<name>"
        ),
        "type": "object",
        "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "additionalProperties": {"anyOf": [_ref("array"), random]},
    }


def field_schemas(cls: type, skip: set[str]) -> tuple[dict[str, Any], list[str], bool]:
    """(field schemas, required field names, whether **kwargs takes any other key)."""
    from .config.fields import describe_annotation, signature_of

    sig = signature_of(cls)
    fields: dict[str, Any] = {}
    required = []
    for key, param in sig.accepted.items():
        if key in skip:
            continue
        ann = sig.hints.get(key, param.annotation)
        schema = annotation_schema(ann)
        text = describe_annotation(ann) if ann is not inspect.Parameter.empty else "any value"
        if param.default is inspect.Parameter.empty:
            required.append(key)
        else:
            default = _jsonable(param.default)
            if default is not _UNSET:
                schema["default"] = default
                text += f"; default {json.dumps(default)}"
        schema["description"] = text
        fields[key] = schema
    return fields, required, sig.any_keyword


_UNSET = object()


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        items = [_jsonable(v) for v in value]
        return _UNSET if any(v is _UNSET for v in items) else items
    return _UNSET


def annotation_schema(ann: Any) -> dict[str, Any]:
    """A JSON Schema for a constructor annotation, as leniently as the loader reads it.

    >>> annotation_schema(bool | None)
    {'anyOf': [{'type': 'boolean'}, {'type': 'null'}]}
    """
    if ann is inspect.Parameter.empty or ann is Any:
        return {}
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(ann)
        fixed = {typing.get_args(a)[0] for a in args if _fixed_tuple(a)}
        members = []
        for arg in args:
            seq = typing.get_origin(arg) in (list, tuple, Sequence) and not _fixed_tuple(arg)
            if seq and (typing.get_args(arg) or (Any,))[0] in fixed:
                continue  # int | tuple[int, int] | list[int]: the pair says it
            member = {"type": "null"} if arg is type(None) else annotation_schema(arg)
            if member and member not in members:
                members.append(member)
        if any(not m for m in (annotation_schema(a) for a in args if a is not type(None))):
            return {}
        return members[0] if len(members) == 1 else {"anyOf": members}
    if ann is bool:
        return {"type": "boolean"}
    if ann is int:
        return _int()
    if ann is float:
        return _num()
    if ann is str:
        return {"type": "string"}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(ann))}
    if origin in (tuple, list, Sequence):
        args = typing.get_args(ann)
        if _fixed_tuple(ann):
            return {
                "type": "array",
                "prefixItems": [annotation_schema(a) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        item = annotation_schema(args[0]) if args else {}
        return {"type": "array", **({"items": item} if item else {})}
    return {}


def _fixed_tuple(ann: Any) -> bool:
    args = typing.get_args(ann)
    return typing.get_origin(ann) is tuple and bool(args) and args[-1] is not Ellipsis


def _check_schema() -> dict[str, Any]:
    """The ``check:`` block: one property per check option (``gradcheck_cli.options``)."""
    modes = options.MODE_OPTIONS
    return {
        "description": "check settings; the run command's options override them",
        "type": "object",
        "additionalProperties": False,
        "properties": {name: o.schema() for name, o in options.OPTIONS.items()},
        # one mode at most: no two mode options turned on together
        "allOf": [
            {"not": {"allOf": [a.kind.selects_schema(a.name), b.kind.selects_schema(b.name)]}}
            for k, a in enumerate(modes)
            for b in modes[k + 1 :]
        ],
    }


def _expect_schema() -> dict[str, Any]:
    return {
        "description": (
            "hand-derived values compared with the engine's: <layer>.<param>.grad, "
            "input.grad (input.<name>.grad), <layer>.output, <layer>.delta, loss, each "
            "optionally with a numpy index for one element or a slice "
            "(conv1.weight.grad[0, 0, 1, 1], fc.delta[0:2]); plus tolerance"
        ),
        "type": "object",
        "propertyNames": {"pattern": EXPECT_KEY_PATTERN},
        "properties": {
            "tolerance": {
                "description": (
                    "how close the engine's values must be; without it each written "
                    "number is compared to half a unit in its last written place, and "
                    "values from files to atol 1e-6"
                ),
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "atol": {**_num(minimum=0), "default": 1e-6},
                    "rtol": {**_num(minimum=0), "default": 0.0},
                },
            }
        },
        "additionalProperties": _ref("array"),
    }
