"""The pytest plugin, run through pytester: opt-in collection, items, failures, selection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# pytester runs pytest in this process and afterwards forgets the modules the run
# imported; numpy cannot be imported twice in one process, so load everything a check
# needs up front.
import gradcheck_cli.api
import gradcheck_cli.config
import gradcheck_cli.engine
import gradcheck_cli.render.table  # noqa: F401

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
PASSING = (REPO / "configs" / "example_a.yaml").read_text()
#: Example A with one published kernel value changed: the expectation must fail.
FAILING = PASSING.replace("0.044606", "0.050000")
INVALID = "input: [1.0, 2.0]\nlayers:\n  - {type: dense, out_feature: 2}\nloss: {type: mse}\n"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with configs outside its tests folder, and one ordinary test."""
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    (pytester.path / "configs").mkdir()
    (pytester.path / "configs" / "good_net.yaml").write_text(PASSING)
    (pytester.path / "configs" / "bad_net.yaml").write_text(FAILING)
    return pytester


def ini(pytester: pytest.Pytester, **options: str) -> None:
    lines = "\n".join(f"{k} = {v}" for k, v in options.items())
    pytester.makeini(f"[pytest]\n{lines}\n")


def test_nothing_is_collected_unless_asked(project):
    result = project.runpytest("-q", "--collect-only")
    result.stdout.fnmatch_lines(["*test_plain*"])
    result.stdout.no_fnmatch_line("*good_net*")
    result.stdout.no_fnmatch_line("*bad_net*")
    # not even when pytest walks the folder holding the configs
    result = project.runpytest("-q", "--collect-only", "configs")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_paths_option_collects_and_runs_configs(project):
    ini(project, gradcheck_paths="configs/*.yaml")
    result = project.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*configs/bad_net.yaml::bad_net FAILED*",
            "*configs/good_net.yaml::good_net PASSED*",
            "*test_plain.py::test_plain PASSED*",
        ]
    )


def test_a_failure_shows_the_plain_table_without_a_traceback(project):
    ini(project, gradcheck_paths="configs/*.yaml")
    result = project.runpytest("-k", "bad_net")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "conv1.weight.grad" in out and "FAIL: 1 of 2 expectations disagree" in out
    assert "configs/bad_net.yaml (worked-example-A-conv-5x5)" in out
    assert "\x1b[" not in out  # plain text
    assert "Traceback" not in out and "runtest" not in out


def test_the_short_summary_shows_the_verdict_not_the_title(project):
    ini(project, gradcheck_paths="configs/*.yaml")
    for flag in ("-ra", "-rA"):
        result = project.runpytest(flag, "-k", "bad_net")
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            ["FAILED configs/bad_net.yaml::bad_net - FAIL: 1 of 2 expectations disagree*"]
        )
    out = result.stdout.str()
    failure = out.split("_ gradcheck bad_net.yaml _")[1].split("\n", 1)[1]
    first = failure.splitlines()[0]
    assert first.startswith("FAIL: 1 of 2 expectations disagree") and first.endswith("(exit 1)")
    assert "expectation conv1.weight.grad: off by up to" in failure


def test_an_invalid_config_fails_with_its_message(project):
    (project.path / "configs" / "typo.yaml").write_text(INVALID)
    ini(project, gradcheck_paths="configs/typo.yaml")
    result = project.runpytest("-k", "typo")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ERROR (exit 2): ConfigError*layers[[]0[]].out_feature*"])
    assert "Traceback" not in result.stdout.str()


def test_keyword_selection(project):
    ini(project, gradcheck_paths="configs/*.yaml")
    result = project.runpytest("-v", "-k", "good")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines(["*good_net.yaml::good_net PASSED*"])


def test_marker_selection(project):
    ini(project, gradcheck_paths="configs/*.yaml")
    result = project.runpytest("-m", "gradcheck", "--strict-markers")
    result.assert_outcomes(passed=1, failed=1, deselected=1)
    result = project.runpytest("-m", "not gradcheck", "--strict-markers")
    result.assert_outcomes(passed=1, deselected=2)


def test_pattern_option_picks_files_pytest_walks(project):
    sub = project.path / "nets"
    sub.mkdir()
    (sub / "gradcheck_tiny.yaml").write_text(PASSING)
    (sub / "other.yaml").write_text(FAILING)
    ini(project, gradcheck_pattern="gradcheck_*.yaml")
    result = project.runpytest("-v", "nets")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*nets/gradcheck_tiny.yaml::gradcheck_tiny PASSED*"])


def test_explicit_paths_restrict_collection(project):
    """`pytest test_plain.py` runs that file only, even with gradcheck_paths set."""
    ini(project, gradcheck_paths="configs/*.yaml")
    result = project.runpytest("test_plain.py")
    result.assert_outcomes(passed=1)
    result = project.runpytest("configs/good_net.yaml")
    result.assert_outcomes(passed=1)


def test_the_plugin_is_registered_through_its_entry_point():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="pytest11") if e.name == "gradcheck"]
    assert ep.value == "gradcheck_cli.pytest_plugin"


def test_importing_the_plugin_does_not_import_numpy():
    code = (
        "import sys, gradcheck_cli.pytest_plugin\n"
        "heavy = [m for m in ('numpy', 'rich', 'gradcheck_cli.engine') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
