"""``gradcheck layers``: the registered layer and loss types and their YAML fields."""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass

import click

from .io import make_console
from .options import output_options, plugin_option


@dataclass(frozen=True)
class TypeInfo:
    """One row of ``gradcheck layers``."""

    kind: str  # "layer" or "loss"
    name: str
    #: "stride=1", or "out_features" when required; "inputs" first for a layer that
    #: reads several values (the config must list them)
    fields: tuple[str, ...]
    arrays: tuple[str, ...]  # param_names of a layer, target_name of a loss
    description: str
    kinks: str
    origin: str


@click.command("layers")
@plugin_option
@output_options
def command(plugins: tuple[str, ...], no_color: bool) -> None:
    """List the built-in (and plugin) layer and loss types with their fields.

    Fields are the YAML keys a layer takes, with defaults; arrays are the keys that hold
    arrays (parameters, or a loss's target). Plugin paths are relative to the current
    folder.

    \b
    Examples:
      gradcheck layers
      gradcheck layers --plugin my_layers.py --plugin mypackage.layers
    """
    import gradcheck_cli.layers  # noqa: F401 - registers the built-ins
    import gradcheck_cli.losses  # noqa: F401

    if plugins:
        load_plugins(plugins)
    make_console(sys.stdout, no_color=no_color).print(types_table(registered_types()))


def load_plugins(plugins: tuple[str, ...]) -> None:
    """Import ``--plugin`` entries the way a config's ``plugins:`` are imported, relative
    to the current folder; raises ConfigError (exit 2) naming each one that failed."""
    import dataclasses
    from pathlib import Path

    from ..config.context import Context
    from ..config.plugins import load_plugins as load_config_plugins
    from ..errors import ConfigError

    ctx = Context(file="--plugin", base_dir=Path.cwd())
    if not load_config_plugins(list(plugins), None, ctx):
        raise ConfigError([dataclasses.replace(issue, path="") for issue in ctx.issues])


def registered_types() -> list[TypeInfo]:
    """Every registered layer, then every loss, each sorted by type name."""
    from ..protocol import LAYERS, LOSSES, ORIGINS, describe, takes_several

    rows = []
    for kind, registry in (("layer", LAYERS), ("loss", LOSSES)):
        for name in sorted(registry):
            cls = registry[name]
            target = getattr(cls, "target_name", None)
            arrays = tuple(cls.param_names) if kind == "layer" else ((target,) if target else ())
            rows.append(
                TypeInfo(
                    kind=kind,
                    name=name,
                    fields=(("inputs",) if takes_several(cls) else ()) + field_list(cls),
                    arrays=arrays,
                    description=describe(cls),
                    kinks=getattr(cls, "kinks", ""),
                    origin=_short_origin(ORIGINS.get((kind, name), "?")),
                )
            )
    return rows


def _short_origin(origin: str) -> str:
    """A plugin file's path relative to the current folder when it lies below it."""
    from pathlib import Path

    path = Path(origin)
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd().resolve()))
        except ValueError:
            pass
    return origin


def field_list(cls: type) -> tuple[str, ...]:
    """The YAML keys ``__init__`` takes: ``name=default``, or ``name`` when required.

    >>> class Pool:
    ...     def __init__(self, kernel_size, stride=None): ...
    >>> field_list(Pool)
    ('kernel_size', 'stride=None')
    """
    if cls.__init__ is object.__init__:
        return ()
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return ()
    # the loader sets batch_size for a layer that wants it: not a key a config may write
    skip = {"batch_size"} if getattr(cls, "wants_batch_size", False) else set()
    fields = []
    for p in list(signature.parameters.values())[1:]:  # skip self
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in skip:
            continue
        fields.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return tuple(fields)


def types_table(rows: list[TypeInfo]):
    """A rich Table of ``registered_types()`` rows."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Layer and loss types", title_justify="left", show_edge=False)
    for header in ("type", "kind", "fields", "arrays", "description", "origin"):
        table.add_column(header, no_wrap=header in ("type", "kind"))
    for r in rows:
        description = Text(r.description)
        if r.kinks:
            description.append(f"\nkinks: {r.kinks}", style="dim")
        table.add_row(
            Text(r.name, style="bold"),
            r.kind,
            ", ".join(r.fields) or "—",
            ", ".join(r.arrays) or "—",
            description,
            r.origin,
        )
    return table
