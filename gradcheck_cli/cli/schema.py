"""``gradcheck schema``: the JSON Schema (draft 2020-12) of the config format."""

from __future__ import annotations

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
@plugin_option
@debug_option
def command(output: str, plugins: tuple[str, ...]) -> None:
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
    from .io import check_writable, write_atomic
    from .layers import load_plugins

    if output != "-":
        check_writable(output, option="--output")
    if plugins:
        load_plugins(plugins)
    write_atomic(output, json.dumps(config_schema(), indent=2) + "\n")
    if output != "-":
        click.echo(f"wrote {output}", err=True)
