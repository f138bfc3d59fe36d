"""Report formats are data: each format module declares itself, ``render.Format`` lists
them, and the command line is generated from that list.

The last test proves what a new format costs: a copy of the package gains a throwaway
Markdown format from one new module and one enum line, and ``gradcheck run`` offers,
checks and writes it with nothing else changed.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from _report_factory import failing_report, passing_report
from click.testing import CliRunner

import gradcheck_cli
from gradcheck_cli.cli import cli
from gradcheck_cli.cli.formats import ReportCommand, check_report_paths, report_options
from gradcheck_cli.errors import UsageError
from gradcheck_cli.render import Format, FormatSpec

# The package under test may be installed (CI installs a wheel), so it is found through
# its import; the configs come from this checkout.
PACKAGE = Path(gradcheck_cli.__file__).resolve().parent
REPO = Path(__file__).resolve().parent.parent


def words(text: str) -> str:
    return " ".join(text.split())


# --- the formats declare themselves -----------------------------------------------------


@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.name)
def test_every_format_module_declares_its_spec_and_renders_a_document(fmt):
    spec = fmt.spec
    assert isinstance(spec, FormatSpec)
    assert spec.option == f"--{fmt.value}" and spec.metavar and spec.help
    for report in (passing_report(), failing_report()):
        text = fmt.render(report)
        assert text == spec.render(report) and text.endswith("\n")


def test_json_format_and_report_methods_are_one_document():
    report = failing_report()
    assert Format.JSON.render(report) == report.to_json() + "\n"
    assert json.loads(report.to_json(indent=None)) == report.to_dict()
    assert report.to_dict()["schema"] == "gradcheck-report/1"


def test_html_is_the_format_offered_again_from_a_saved_json_report():
    # `gradcheck report REPORT.json` offers the formats with from_saved_report: JSON is
    # its input, and JUnit carries per-tensor timings and Taylor steps the JSON does not
    assert [f for f in Format if f.spec.from_saved_report] == [Format.HTML]
    report = cli.commands["report"]
    options = [p.opts[0] for p in report.get_params(click.Context(report))]
    assert "--html" in options and "--json" not in options and "--junit" not in options


# --- the command line is generated from Format ------------------------------------------


def test_every_format_is_a_run_option_with_its_own_help():
    run = cli.commands["run"]
    options = [p for p in run.get_params(click.Context(run)) if isinstance(p, click.Option)]
    names = [p.opts[0] for p in options]
    report_names = [fmt.spec.option for fmt in Format]
    at = names.index(report_names[0])
    assert names[at : at + len(report_names)] == report_names  # together, in Format order
    assert names.index("-q") > at
    help_text = words(CliRunner().invoke(cli, ["run", "--help"]).output)
    for fmt in Format:
        (option,) = [p for p in options if p.opts[0] == fmt.spec.option]
        assert option.metavar == fmt.spec.metavar and option.help == fmt.spec.help
        assert f"{fmt.spec.option} {fmt.spec.metavar} {words(fmt.spec.help)}" in help_text


@click.command("demo", cls=ReportCommand)
@click.option("--before")
@report_options
@click.option("--after")
def demo(reports, before, after):
    """A command that writes reports."""
    click.echo(json.dumps({fmt.name: path for fmt, path in reports.items()}))


def test_report_options_go_where_the_mark_is_and_arrive_in_format_order():
    help_text = CliRunner().invoke(demo, ["--help"]).output
    expected = ["--before", *(fmt.spec.option for fmt in Format), "--after", "--help"]
    assert re.findall(r"^  (--[a-z]+)", help_text, flags=re.M) == expected
    given = [arg for fmt in reversed(Format) for arg in (fmt.spec.option, f"{fmt.value}.out")]
    result = CliRunner().invoke(demo, given)
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.output).items()) == [
        (fmt.name, f"{fmt.value}.out") for fmt in Format
    ]
    assert json.loads(CliRunner().invoke(demo, ["--after", "x"]).output) == {}


def test_a_report_command_may_offer_only_some_formats():
    @click.command("again", cls=ReportCommand, offers=lambda spec: spec.option == "--junit")
    @report_options
    def again(reports):
        click.echo(" ".join(fmt.name for fmt in reports))

    assert again.formats() == [Format.JUNIT]
    assert "--json" not in CliRunner().invoke(again, ["--help"]).output
    assert CliRunner().invoke(again, ["--junit", "r.xml"]).output == "JUNIT\n"
    assert CliRunner().invoke(again, ["--json", "r.json"]).exit_code == 2


def test_a_report_command_without_the_mark_is_a_programming_error():
    with pytest.raises(TypeError, match="@report_options"):
        click.command("unmarked", cls=ReportCommand)(lambda reports: None)


# --- N report paths are checked pairwise ------------------------------------------------


@dataclass(frozen=True)
class FakeFormat:
    """Stands in for a Format member: what check_report_paths reads."""

    spec: FormatSpec


def fake_format(option: str, stdout: bool = True) -> FakeFormat:
    return FakeFormat(FormatSpec(option, "PATH", "help", str, stdout=stdout))


A, B, C = fake_format("--aa"), fake_format("--bb"), fake_format("--cc")


def test_distinct_report_paths_pass(tmp_path):
    check_report_paths({A: str(tmp_path / "a"), B: "-", C: str(tmp_path / "c")}, protect=())


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (("-", "b.out", "-"), "--aa and --cc need different paths."),
        (("a.out", "c.out", "c.out"), "--bb and --cc need different paths."),
        (("a.out", "b.out", "./a.out"), "--aa and --cc need different paths."),
    ],
)
def test_any_two_of_n_report_paths_that_clash_are_named(tmp_path, monkeypatch, paths, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(click.UsageError, match=re.escape(message)):
        check_report_paths(dict(zip((A, B, C), paths, strict=True)), protect=())


def test_every_report_path_is_checked_under_its_own_option(tmp_path):
    with pytest.raises(UsageError, match="^--cc .*does not exist"):
        check_report_paths({A: "-", B: str(tmp_path / "b"), C: str(tmp_path / "no/c")}, protect=())
    config = tmp_path / "net.yaml"
    with pytest.raises(UsageError, match="^--bb .*refusing to overwrite an input"):
        check_report_paths({A: "-", B: str(config)}, protect=(str(config),))


def test_a_format_that_cannot_go_to_stdout_refuses_dash():
    with pytest.raises(click.UsageError, match="--bin cannot write to stdout"):
        check_report_paths({fake_format("--bin", stdout=False): "-"}, protect=())


# --- the JSON report reaches render/ without an import cycle ----------------------------


def _import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports, including imports inside functions and
    excluding ``if TYPE_CHECKING:`` blocks. Importing ``a.b.c`` also runs package
    ``a.b``'s ``__init__``, unless the importer lives in ``a.b`` (it already ran)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)

    def imported(name: str, path: Path, is_package: bool) -> set[str]:
        here = (name if is_package else name.rpartition(".")[0]).split(".")
        found: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                subs = {f"{module}.{a.name}" for a in node.names} & set(modules)
                found |= subs | ({module} if len(subs) < len(node.names) else set())
        deps = set()
        for dep in found:
            parts = dep.split(".")
            for i in range(2, len(parts) + 1):  # the root package's __init__ is lazy
                m = ".".join(parts[:i])
                if m in modules and m != name and (m == dep or not name.startswith(m + ".")):
                    deps.add(m)
        return deps

    return {name: imported(name, *where) for name, where in modules.items()}


def _runtime_nodes(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(test):
            for child in node.orelse:
                yield child
                yield from _runtime_nodes(child)
            continue
        yield node
        yield from _runtime_nodes(node)


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_no_import_cycle_through_the_report_model_the_renderers_or_their_options():
    graph = _import_graph()
    assert "gradcheck_cli.render.json" in graph["gradcheck_cli.report"]  # Report.to_json
    ours = [m for m in graph if m == "gradcheck_cli.report" or m.startswith("gradcheck_cli.render")]
    ours.append("gradcheck_cli.cli.formats")
    assert [m for m in ours if m in _reaches(graph, m)] == []


def test_the_model_loads_the_renderers_only_to_serialise_a_report():
    code = (
        "import sys; from gradcheck_cli.report import Report; "
        "before = 'gradcheck_cli.render' in sys.modules; "
        "Report(config='x.yaml', loss=0.0, settings={}).to_json(); "
        "print(before, 'gradcheck_cli.render.json' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["False", "True"], out.stderr


# --- a new format is one module plus one enum member ------------------------------------

MARKDOWN = '''\
"""Markdown: a throwaway format that tests/test_formats.py adds to a copy of the package."""

from __future__ import annotations

from .format import FormatSpec


def render_markdown(report) -> str:
    rows = [f"| {c.name} | {'PASS' if c.passed else 'FAIL'} |" for c in report.checks]
    return "\\n".join([f"# {report.config}", "", "| tensor | status |", "|---|---|", *rows, ""])


FORMAT = FormatSpec(
    option="--markdown",
    metavar="FILE",
    help="Write a Markdown summary to FILE.",
    render=render_markdown,
)
'''


def test_a_new_format_is_one_module_and_one_enum_member(tmp_path):
    copy = tmp_path / "gradcheck_cli"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "render" / "markdown.py").write_text(MARKDOWN)
    init = copy / "render" / "__init__.py"
    source = init.read_text()
    last = list(re.finditer(r'^    [A-Z]+ = "[a-z]+"\n', source, flags=re.M))[-1]
    init.write_text(source[: last.end()] + '    MARKDOWN = "markdown"\n' + source[last.end() :])
    shutil.copy(REPO / "configs" / "example_a.yaml", tmp_path / "a.yaml")

    def gradcheck(*args):
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        return subprocess.run(
            [sys.executable, "-m", "gradcheck_cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    usage = gradcheck("run", "--help")
    assert "--markdown FILE Write a Markdown summary to FILE." in words(usage.stdout)
    ran = gradcheck("run", "a.yaml", "--markdown", "-", "--json", "r.json", "-q")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[:4] == ["# a.yaml", "", "| tensor | status |", "|---|---|"]
    assert "| conv1.weight | PASS |" in ran.stdout and "PASS:" in ran.stderr
    assert json.loads((tmp_path / "r.json").read_text())["passed"] is True
    clash = gradcheck("run", "a.yaml", "--junit", "r.out", "--markdown", "r.out")
    assert clash.returncode == 2
    assert "--junit and --markdown need different paths." in clash.stderr
