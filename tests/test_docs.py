"""The user guide (docs/) and README against the code: every command, type and field they
name exists, every recipe they give runs, every sample output is what the tool prints."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

import gradcheck_cli as gc
from gradcheck_cli import protocol
from gradcheck_cli.cli import cli, exit_codes
from gradcheck_cli.pytest_plugin import PATHS_INI, PATTERN_INI
from gradcheck_cli.schema import config_schema

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
BIN = str(Path(sys.executable).parent)


def blocks(path: Path, lang: str | None = None) -> list[str]:
    """The fenced code blocks of a Markdown file (of one language, if given)."""
    found = re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), flags=re.M | re.S)
    return [body for kind, body in found if lang is None or kind == lang]


def code_text(path: Path) -> str:
    """Everything a reader would type: code blocks and inline code spans."""
    text = path.read_text()
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
    return "\n".join(blocks(path) + inline)


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_config_reference", DOCS / "gen_config_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def env_with_gradcheck() -> dict[str, str]:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "NO_COLOR": "1"}


# --- the pages exist and link to each other -----------------------------------------


def test_the_guide_has_its_pages():
    names = {p.name for p in PAGES}
    for page in (
        "index.md",
        "config.md",
        "layers.md",
        "exit-codes.md",
        "ci.md",
        "shell-completion.md",
    ):
        assert page in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


# --- config reference -------------------------------------------------------------


def test_config_reference_is_generated_from_the_current_schema():
    """In a fresh process: other tests register layers of their own in this one."""
    done = subprocess.run(
        [sys.executable, str(DOCS / "gen_config_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_the_generator_writes_what_check_compares(tmp_path, monkeypatch):
    generator = load_generator()
    monkeypatch.setattr(generator, "OUT", tmp_path / "config.md")
    assert generator.main(["--check"]) == 1  # missing: stale
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0
    assert "### `conv2d`" in (tmp_path / "config.md").read_text()


def builtin(registry: dict[str, type]) -> dict[str, type]:
    """The built-in entries of a registry, registered here whatever ran before in this
    process (under pytest-xdist a worker may reach this file first)."""
    import gradcheck_cli.layers  # noqa: F401
    import gradcheck_cli.losses  # noqa: F401

    return {n: c for n, c in registry.items() if c.__module__.startswith("gradcheck_cli.")}


def test_every_type_and_field_is_in_the_config_reference():
    text = (DOCS / "config.md").read_text()
    sections = re.split(r"^### ", text, flags=re.M)
    by_type = {s.split("`")[1]: s for s in sections[1:]}
    for registry in (builtin(protocol.LAYERS), builtin(protocol.LOSSES)):
        assert registry
        for name, cls in registry.items():
            assert name in by_type, f"{name} missing from docs/config.md"
            section = by_type[name]
            params = list(inspect.signature(cls.__init__).parameters)[1:]
            fields = [p for p in params if p not in ("args", "kwargs", "batch_size")]
            arrays = getattr(cls, "param_names", ()) or ()
            target = getattr(cls, "target_name", None)
            for field in [*fields, *arrays, *([target] if target else [])]:
                assert f"`{field}`" in section, f"{name}.{field} missing from docs/config.md"


def test_config_reference_shows_the_editor_line():
    text = (DOCS / "config.md").read_text()
    assert "# yaml-language-server: $schema=./gradcheck.schema.json" in text
    assert "gradcheck schema --output gradcheck.schema.json" in text


# --- commands ---------------------------------------------------------------------

#: ``gradcheck run`` in code, not ``gradcheck.schema.json`` nor ``gradcheck ex<TAB>``.
MENTION = re.compile(r"(?<![\w./-])gradcheck ([a-z][a-z-]*)(?![\w<])")


def mentioned_commands() -> set[str]:
    found = set()
    for path in [*PAGES, REPO / "README.md"]:
        found.update(MENTION.findall(code_text(path)))
    return found


def test_every_command_the_docs_mention_exists():
    mentioned = mentioned_commands()
    assert {"run", "explain", "schema", "layers", "init"} <= mentioned
    for name in mentioned:
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0, f"`gradcheck {name}` is in the docs but not a command"


def test_every_command_is_documented():
    assert set(cli.commands) <= mentioned_commands()


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_help_has_an_example(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    examples = result.output.split("Examples:", 1)
    assert len(examples) == 2, f"`gradcheck {name} --help` has no Examples: section"
    assert f"gradcheck {name}" in examples[1]


def test_exit_code_page_lists_every_code():
    text = (DOCS / "exit-codes.md").read_text()
    for code in (
        exit_codes.OK,
        exit_codes.DISAGREE,
        exit_codes.INVALID,
        exit_codes.NOT_CARRIED_OUT,
        exit_codes.INTERNAL,
        exit_codes.INTERRUPTED,
    ):
        assert re.search(rf"^\| {code} \|", text, flags=re.M), f"exit code {code} missing"
        assert re.search(rf"^\s+{code}\s", exit_codes.EPILOG, flags=re.M)


# --- code that the pages tell readers to run ---------------------------------------


def test_layer_page_examples_run_and_check(clean_registry):
    for code in blocks(DOCS / "layers.md", "python"):
        exec(compile(code, "docs/layers.md", "exec"), {})
    swish_yaml = next(b for b in blocks(DOCS / "layers.md", "yaml") if "type: swish" in b)
    network = yaml.safe_load(swish_yaml)
    network.pop("plugins")  # registered above, in this process
    assert gc.check(network).passed
    assert gc.check(
        {
            "input": {"value": [[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]], "batched": True},
            "layers": [{"type": "scale", "name": "s", "gain_init": 0.5}, {"type": "scaled_tanh"}],
            "loss": {**yaml.safe_load("{type: huber, delta: 0.5}"), "target": [[0, 1, 0]] * 2},
        }
    ).passed
    gate_yaml = next(b for b in blocks(DOCS / "layers.md", "yaml") if "type: gate" in b)
    network = yaml.safe_load(gate_yaml)
    network.pop("plugins")
    assert gc.check(network).passed
    with pytest.raises(gc.ConfigError, match=r"layers\[0\]\.gain_init: must be > 0, got -1"):
        gc.check(
            {
                "input": [1.0],
                "layers": [{"type": "scale", "gain_init": -1.0}],
                "loss": {"type": "mse", "target": [0.0]},
            }
        )


def test_python_api_page_example_runs(clean_registry):
    (module,) = [b for b in blocks(DOCS / "python-api.md", "python") if "def test_" in b]
    namespace: dict = {}
    exec(compile(module, "docs/python-api.md", "exec"), namespace)
    namespace["test_scale_backward"]()


def test_yaml_configs_in_the_docs_validate():
    validator = jsonschema.Draft202012Validator(config_schema())
    found = 0
    for page in PAGES:
        for block in blocks(page, "yaml"):
            doc = yaml.safe_load(block)
            if isinstance(doc, dict) and {"input", "layers", "loss"} <= set(doc):
                found += 1
                assert validator.is_valid(doc), f"a config in {page.name} is invalid"
    assert found >= 1


EXPLAIN_EXCERPTS = [
    (0, "example_b_network", ()),
    (1, "fork_sum", ()),
    (2, "example_d_stack", ()),
    (3, "example_c_conv_sum", ()),
    (4, "example_a", ("--lr", "0.1")),
]


@pytest.mark.parametrize("k, config, args", EXPLAIN_EXCERPTS)
def test_explain_page_excerpt_is_what_explain_prints(k, config, args):
    excerpts = blocks(DOCS / "explain.md", "text")
    assert len(excerpts) == len(EXPLAIN_EXCERPTS)
    result = CliRunner().invoke(
        cli, ["explain", str(REPO / "configs" / f"{config}.yaml"), "--no-color", *args]
    )
    assert result.exit_code == 0
    printed = [line.rstrip() for line in result.output.splitlines()]
    lines = excerpts[k].rstrip().splitlines()
    start = printed.index(lines[0], printed.index("Backward pass"))
    assert printed[start : start + len(lines)] == lines


def test_pytest_options_in_the_ci_page_are_the_plugins():
    text = (DOCS / "ci.md").read_text()
    assert f"{PATHS_INI} = " in text and f"{PATTERN_INI} = " in text


@pytest.fixture
def project(tmp_path):
    """A project with one config that passes and one whose expectation is wrong."""
    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(REPO / "configs" / "example_a.yaml", configs / "good.yaml")
    bad = (REPO / "configs" / "example_a.yaml").read_text().replace("0.044606", "0.05")
    (configs / "bad.yaml").write_text(bad)
    return tmp_path


def test_github_actions_step_writes_reports_for_configs_in_every_folder(tmp_path):
    """The recipe's step, run by bash in a tree with subfolders: every config at any
    depth gets its JUnit, JSON and HTML reports, two configs of one name in different
    folders do not share them, and an invalid config leaves a JUnit ``<error>`` and a
    JSON report holding the error."""
    workflow = yaml.safe_load(blocks(DOCS / "ci.md", "yaml")[0])
    steps = workflow["jobs"]["gradcheck"]["steps"]
    script = next(s["run"] for s in steps if s.get("name") == "Check gradients")
    upload = next(s for s in steps if "upload-artifact" in s.get("uses", ""))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    install = next(s for s in steps if s.get("name") == "Install gradcheck")
    assert install["run"] == "pip install ."  # a clone; no package index name anywhere
    example = (REPO / "configs" / "example_a.yaml").read_text()
    configs = {  # the old recipe missed b/deep/, and named both reports net.xml
        "net.yaml": "input: [1.0, 2.0]\nlayers:\n  - {type: dense, out_feature: 2}\n",
        "b/deep/net.yaml": example.replace("0.044606", "0.05"),
    }
    for name, text in configs.items():
        (tmp_path / "configs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "configs" / name).write_text(text)
    done = subprocess.run(
        ["bash", "-e", "-c", script], cwd=tmp_path, env=env_with_gradcheck(), capture_output=True
    )
    assert done.returncode == 1, done.stderr  # a config fails, and the step says so
    reports = tmp_path / "reports"
    assert sorted(p.name for p in reports.iterdir()) == sorted(
        f"{stem}.{ext}" for stem in ("net", "b__deep__net") for ext in ("xml", "json", "html")
    )
    bad = ET.parse(reports / "b__deep__net.xml").getroot()
    assert bad.get("failures") == "1" and "conv1.weight.grad" in ET.tostring(bad, "unicode")
    invalid = ET.parse(reports / "net.xml").getroot()
    assert invalid.get("errors") == "1"
    (error,) = invalid.iter("error")
    assert error.get("type") == "config" and "layers[0].out_feature" in error.text
    report = json.loads((reports / "net.json").read_text())
    assert report["exit_code"] == 2 and report["passed"] is False
    assert report["error"]["kind"] == "config" and report["error"]["file"].endswith("net.yaml")
    assert report["error"]["line"] == 3 and report["error"]["key"] == "layers[0].out_feature"
    assert "layers[0].out_feature" in (reports / "net.html").read_text()


def test_no_page_names_a_package_that_cannot_be_installed():
    for path in [REPO / "README.md", *PAGES]:
        text = path.read_text()
        assert "install gradcheck-cli" not in text, path
        for line in re.findall(r"pip install [^\n`]*", text):
            assert "gradcheck-cli" not in line and "gradcheck_cli" not in line, (path, line)


def test_pre_commit_hook_checks_the_changed_configs(project):
    config = yaml.safe_load(next(b for b in blocks(DOCS / "ci.md", "yaml") if "repos:" in b))
    (hook,) = config["repos"][0]["hooks"]
    assert hook["language"] == "system"
    pattern = re.compile(hook["files"])
    assert pattern.search("configs/good.yaml") and not pattern.search("src/model.py")

    def commit(*files: str) -> int:
        argv = shlex.split(hook["entry"]) + list(files)  # what pre-commit runs
        return subprocess.run(
            argv, cwd=project, env=env_with_gradcheck(), capture_output=True
        ).returncode

    assert commit("configs/good.yaml") == 0
    assert commit("configs/good.yaml", "configs/bad.yaml") == 1


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_recipes_work(shell):
    text = (DOCS / "shell-completion.md").read_text()
    (command,) = re.findall(rf"_GRADCHECK_COMPLETE={shell}_source gradcheck", text)[:1]
    done = subprocess.run(
        shlex.split(f"env {command}"), env=env_with_gradcheck(), capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "_gradcheck_completion" in done.stdout or "gradcheck" in done.stdout
    assert "complete" in done.stdout


def test_readme_checks_a_user_layer_without_yaml(clean_registry):
    (module,) = [b for b in blocks(REPO / "README.md", "python") if "def test_" in b]
    namespace: dict = {}
    exec(compile(module, "README.md", "exec"), namespace)
    namespace["test_scale_backward"]()


def test_readme_shows_the_editor_line_and_links_the_guide():
    text = (REPO / "README.md").read_text()
    assert "# yaml-language-server: $schema=./gradcheck.schema.json" in text
    for target in re.findall(r"\]\((docs/[^)#]+)\)", text):
        assert (REPO / target).exists(), target
