"""``gradcheck schema``: the JSON Schema (draft 2020-12) of the config format."""

from __future__ import annotations

import os

import click

from .options import debug_option, plugin_option


@click.command("schema")
@click.option(
    "--output",
    "-o",
    "output",
    metavar="PATH",
    default="-",
    help="Write the schema to PATH (atomically) instead of stdout.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite PATH even if it looks like a config, plugin or array (.yaml, .py, ...).",
)
@plugin_option
@debug_option
def command(output: str, force: bool, plugins: tuple[str, ...]) -> None:
    """Print the JSON Schema (draft 2020-12) of the config format.

    Built from the layer and loss registry: every type with its fields, their types and
    defaults. Types from --plugin files are included; other types a config's plugins:
    register are accepted with a generic layer schema. Editors that use the YAML language
    server validate and autocomplete a config whose first line is

    \b
      # yaml-language-server: $schema=./gradcheck.schema.json

    \b
    Examples:
      gradcheck schema --output gradcheck.schema.json
      gradcheck schema --plugin my_layers.py -o gradcheck.schema.json
      gradcheck schema | jq '.properties | keys'
    """
    import json

    from ..schema import config_schema
    from .io import check_writable, write_output
    from .layers import load_plugins

    if output != "-":
        check_writable(
            output,
            option="--output",
            protect=[p for p in plugins if p.endswith(".py") or "/" in p],
            inputs="a --plugin file, which this command reads",
            inputs_suffixes=not force,
            hint="use --force to overwrite it",
        )
        output = os.path.abspath(output)  # a plugin that changes folder cannot move it
    if plugins:
        load_plugins(plugins)
    write_output(output, json.dumps(config_schema(), indent=2) + "\n", option="--output")
    if output != "-":
        click.echo(f"wrote {output}", err=True)
