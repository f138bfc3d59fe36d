"""``gradcheck init``: write a commented starter config."""

from __future__ import annotations

import os
from importlib.resources import files

import click

from ..errors import UsageError
from ..text import printable
from .io import check_writable, write_output
from .options import debug_option


def starter_config() -> str:
    """The text of ``templates/starter.yaml``: worked example A's whole network."""
    return files("gradcheck_cli").joinpath("templates/starter.yaml").read_text(encoding="utf-8")


@click.command("init")
@click.argument("path", default="gradcheck.yaml", metavar="[PATH]")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@debug_option
def command(path: str, force: bool) -> None:
    """Write a commented starter config to PATH (default gradcheck.yaml; '-' = stdout).

    The starter is a small conv -> max pool -> sigmoid -> dense network with
    hand-derived expectations; edit it into your own network.

    \b
    Examples:
      gradcheck init
      gradcheck init nets/mine.yaml && gradcheck run nets/mine.yaml
      gradcheck init - | less
    """
    if path != "-":
        check_writable(path, option="init", inputs_suffixes=False)
        if os.path.lexists(path) and not force:
            raise UsageError(f"{printable(path)} already exists; use --force to overwrite it")
    write_output(path, starter_config(), option="init")
    if path != "-":
        click.echo(f"wrote {path}; check it with: gradcheck run {path}", err=True)
