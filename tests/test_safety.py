"""Nothing runs that the user did not list.

The YAML is read with a safe loader, so a ``!!python/...`` tag is refused (exit 2) and
the code it names never runs; and Python code is imported only from ``plugins:``, never
because a file lies beside the config. Each test proves it with a side effect that
would appear if the code ran: a marker file.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from installed import GRADCHECK

import gradcheck_cli.config  # noqa: F401 - registers the built-in types before any snapshot
from gradcheck_cli.cli import cli

pytestmark = pytest.mark.usefixtures("clean_registry")


def invoke(config: Path, *args: str):
    result = CliRunner().invoke(cli, ["run", str(config), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def marker_code(marker: Path) -> str:
    """Python that proves it ran by creating ``marker`` (no single quotes in it)."""
    return f'open("{marker}", "w").close()'


# --- YAML tags ---------------------------------------------------------------------------


def tagged_values(marker: Path) -> dict[str, str]:
    """Every way PyYAML's unsafe loaders run code, each aimed at creating ``marker``."""
    touch = f"touch {marker}"
    return {
        "object/apply": f'!!python/object/apply:os.system ["{touch}"]',
        "object/new": f'!!python/object/new:subprocess.Popen [["touch", "{marker}"]]',
        "object": "!!python/object:subprocess.Popen {args: [touch, x]}",
        "name": "!!python/name:os.system",
        "module": "!!python/module:antigravity",
        "exec via apply": f"!!python/object/apply:builtins.exec ['{marker_code(marker)}']",
    }


@pytest.mark.parametrize("tag", list(tagged_values(Path("m"))))
@pytest.mark.parametrize("where", ["loss.target", "input", "layers[0].negative_slope"])
def test_python_tags_are_refused_and_nothing_runs(tmp_path, tag, where):
    marker = tmp_path / "marker"
    value = tagged_values(marker)[tag]
    parts = {
        "input": "[1.0, -2.0]",
        "layers[0].negative_slope": "0.1",
        "loss.target": "[0.0, 0.0]",
    }
    parts[where] = value
    config = tmp_path / "net.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            input: {parts["input"]}
            layers:
              - type: leaky_relu
                negative_slope: {parts["layers[0].negative_slope"]}
            loss:
              type: mse
              target: {parts["loss.target"]}
            """
        )
    )
    result = invoke(config)
    assert result.exit_code == 2, result.output
    assert "is not allowed" in result.output and "safe loader" in result.output
    assert f"{config}:" in result.output  # the file and the line of the tag
    assert "Traceback" not in result.output
    assert not marker.exists()


def test_python_tag_through_a_real_process(tmp_path):
    marker = tmp_path / "marker"
    config = tmp_path / "net.yaml"
    config.write_text(
        "input: [1.0, 2.0]\nlayers: [{type: relu}]\n"
        f'loss: {{type: mse, target: !!python/object/apply:os.system ["touch {marker}"]}}\n'
    )
    proc = subprocess.run(
        [*GRADCHECK, "run", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{config}:3:" in proc.stderr and "!!python/object/apply:os.system" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not marker.exists()


def test_the_yaml_loader_is_a_safe_loader():
    import yaml

    from gradcheck_cli.config.yamlload import LineLoader

    assert issubclass(LineLoader, yaml.SafeLoader) or issubclass(LineLoader, yaml.CSafeLoader)
    assert not any("python" in tag for tag in LineLoader.yaml_constructors if tag)
    assert not any("python" in tag for tag in LineLoader.yaml_multi_constructors if tag)


# --- plugins: only what is listed --------------------------------------------------------

#: Names a careless loader might import: the example's plugin name, obvious guesses,
#: and the names Python itself imports on start-up when a folder is on sys.path.
BYSTANDERS = ("my_layers", "layers", "plugins", "swish", "gradcheck_plugins", "usercustomize")

PLUGIN = """\
import numpy as np
import gradcheck_cli as gc

open({marker!r}, "w").close()


@gc.register_layer("double")
class Double(gc.Layer):
    def forward(self, x, params):
        return 2 * x, None

    def backward(self, dy, cache, params):
        return 2 * dy, {{}}
"""


def plant(folder: Path) -> dict[str, Path]:
    """A bystander .py per name in ``folder``, each creating its marker when imported."""
    markers = {}
    for name in BYSTANDERS:
        markers[name] = folder / f"ran_{name}"
        (folder / f"{name}.py").write_text(PLUGIN.format(marker=str(markers[name])))
    return markers


def test_python_files_beside_the_config_are_never_imported(tmp_path):
    markers = plant(tmp_path)
    config = tmp_path / "net.yaml"
    config.write_text(
        "input: [1.0, -2.0]\nlayers: [{type: swish}]\nloss: {type: mse, target: [0, 0]}\n"
    )
    result = invoke(config)
    assert result.exit_code == 2
    assert "unknown layer type 'swish'" in result.output
    assert not [name for name, marker in markers.items() if marker.exists()]


def test_only_the_listed_plugin_is_imported(tmp_path):
    markers = plant(tmp_path)
    listed = tmp_path / "listed.py"
    listed_marker = tmp_path / "ran_listed"
    listed.write_text(PLUGIN.format(marker=str(listed_marker)))
    config = tmp_path / "net.yaml"
    config.write_text(
        "plugins: [listed.py]\ninput: [1.0, -2.0]\nlayers: [{type: double}]\n"
        "loss: {type: mse, target: [0, 0]}\n"
    )
    result = invoke(config)
    assert result.exit_code == 0, result.output
    assert listed_marker.exists()
    assert not [name for name, marker in markers.items() if marker.exists()]


def test_the_installed_command_run_in_the_config_folder_imports_nothing_beside_it(tmp_path):
    """`cd project && gradcheck run net.yaml`, the way users run it."""
    markers = plant(tmp_path)
    (tmp_path / "net.yaml").write_text(
        "input: [1.0, -2.0]\nlayers: [{type: my_layers}]\nloss: {type: mse, target: [0, 0]}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [*GRADCHECK, "run", "net.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "unknown layer type 'my_layers'" in proc.stderr
    assert not [name for name, marker in markers.items() if marker.exists()]


def test_a_module_name_is_not_looked_up_beside_the_config(tmp_path):
    """``plugins: [my_layers]`` names an installed module; the file beside the config is
    only suggested, never imported behind the user's back."""
    markers = plant(tmp_path)
    config = tmp_path / "net.yaml"
    config.write_text(
        "plugins: [my_layers]\ninput: [1.0, -2.0]\nlayers: [{type: double}]\n"
        "loss: {type: mse, target: [0, 0]}\n"
    )
    result = invoke(config)
    assert result.exit_code == 2
    assert "no module named 'my_layers'" in result.output
    assert "my_layers.py" in result.output  # the hint
    assert not markers["my_layers"].exists()
