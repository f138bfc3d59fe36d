"""The command line: exit codes, options, report files, output streams.

Most tests fake the config loader and the engine in ``gradcheck_cli.cli.run`` (the
functions ``_load_problem`` and ``_run_check``) so that each outcome can be forced; the
end-to-end tests at the bottom run the real ones on the shipped configs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from _report_factory import failing_report, passing_report, tiny_problem
from click.testing import CliRunner
from installed import GRADCHECK

import gradcheck_cli
import gradcheck_cli.cli.run as run_module
from gradcheck_cli.cli import cli, report_error
from gradcheck_cli.cli.init import starter_config
from gradcheck_cli.errors import ConfigError, ConfigIssue, NumericalError, PluginError
from gradcheck_cli.problem import Method, Mode

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
ESC = "\x1b"


class FakeEngine:
    """Stands in for the loader and the engine; records what the CLI passed on."""

    def __init__(self, report=None, load_error=None, check_error=None):
        self.report = report if report is not None else passing_report()
        self.load_error = load_error
        self.check_error = check_error
        self.loaded: list[str] = []
        self.problem = None

    def load(self, path, seed=None):
        self.loaded.append(path)
        if self.load_error is not None:
            raise self.load_error
        return tiny_problem(path)

    def check(self, problem, progress):
        self.problem = problem
        progress(1, 2)  # the callback must be harmless when the check is quick
        if self.check_error is not None:
            raise self.check_error
        return self.report


@pytest.fixture
def engine(monkeypatch):
    fake = FakeEngine()
    monkeypatch.setattr(run_module, "_load_problem", fake.load)
    monkeypatch.setattr(run_module, "_run_check", fake.check)
    return fake


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("name: net\n")
    return path


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


# --- run: exit codes --------------------------------------------------------------------


def test_passing_report_exits_0_with_summary_on_stdout(engine, config):
    result = invoke("run", config)
    assert result.exit_code == 0, result.output
    assert "PASS: 3 tensors, 30 elements checked" in result.stdout
    assert "conv1.weight" in result.stdout
    assert engine.loaded == [str(config)]


def test_failing_report_exits_1(engine, config):
    engine.report = failing_report()
    result = invoke("run", config)
    assert result.exit_code == 1
    assert "FAIL: 2 of 3 tensors disagree" in result.stdout
    assert "blamed layer: conv1" in result.stdout


def test_verdict_stays_on_one_line_in_a_narrow_terminal(engine, config):
    engine.report = failing_report()
    result = invoke("run", config, env={"COLUMNS": "50"})
    (verdict,) = [line for line in result.stdout.splitlines() if line.startswith("FAIL:")]
    assert verdict.endswith("blamed layer: conv1 in 0.50 s")


def test_progress_bar_only_on_a_terminal_and_only_after_the_delay():
    import io

    from rich.console import Console

    from gradcheck_cli.cli.progress import LazyProgress

    def progress(enabled, delay):
        stream = io.StringIO()
        console = Console(file=stream, force_terminal=True, width=80)
        with LazyProgress(console, enabled=enabled, delay=delay) as bar:
            for done in range(0, 101, 10):
                bar(done, 100)
        return stream.getvalue()

    assert progress(enabled=False, delay=0.0) == ""
    assert progress(enabled=True, delay=60.0) == ""
    assert "100/100" in progress(enabled=True, delay=0.0)


def test_config_error_exits_2_with_every_issue_on_its_own_line(engine, config):
    engine.load_error = ConfigError(
        [
            ConfigIssue("net.yaml", 7, "layers[2].kernel_size", "must be >= 1, got 0"),
            ConfigIssue("net.yaml", 12, "loss.grad", "shape [3] does not match [2]"),
        ]
    )
    result = invoke("run", config)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "net.yaml:7: layers[2].kernel_size: must be >= 1, got 0",
        "net.yaml:12: loss.grad: shape [3] does not match [2]",
    ]
    assert result.stdout == ""


def test_plugin_error_exits_2(engine, config):
    engine.check_error = PluginError("swish", "backward returned dx of shape (3,), want (4,)")
    result = invoke("run", config)
    assert result.exit_code == 2
    assert "layer 'swish': backward returned dx" in result.stderr
    assert "Traceback" not in result.output


def test_numerical_error_exits_3(engine, config):
    engine.check_error = NumericalError("the loss is NaN")
    result = invoke("run", config)
    assert result.exit_code == 3
    assert "could not be carried out: the loss is NaN" in result.stderr
    assert "Traceback" not in result.output


def test_internal_error_exits_4_with_one_line_and_no_traceback(engine, config):
    engine.check_error = ValueError("operands could not be\nbroadcast together")
    result = invoke("run", config)
    assert result.exit_code == 4
    assert "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "gradcheck: internal error (ValueError: operands could not be broadcast together). "
        "This is a bug in gradcheck"
    )
    assert line.endswith("Re-run with --debug for the traceback.")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["run", "--debug"], None),
        (["--debug", "run"], None),
        (["run"], {"GRADCHECK_DEBUG": "1"}),
    ],
)
def test_debug_shows_the_traceback(engine, config, args, env):
    engine.check_error = ValueError("boom")
    result = invoke(*args, config, env=env)
    assert result.exit_code == 4
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: boom" in result.stderr
    assert "Re-run with --debug" not in result.stderr


def test_ctrl_c_exits_130(engine, config):
    engine.check_error = KeyboardInterrupt()
    result = invoke("run", config)
    assert result.exit_code == 130
    assert "interrupted" in result.stderr
    assert "Traceback" not in result.output


def test_interrupted_check_prints_the_partial_summary_and_exits_130(engine, config, tmp_path):
    engine.report = failing_report()
    engine.report.interrupted = True
    out = tmp_path / "partial.json"
    result = invoke("run", config, "--json", out)
    assert result.exit_code == 130
    assert "INTERRUPTED (partial) FAIL" in result.stdout
    assert "report above is partial" in result.stderr
    assert json.loads(out.read_text())["interrupted"] is True


def test_engine_check_interrupted_becomes_an_interrupted_report(monkeypatch):
    import gradcheck_cli.engine as engine_package
    from gradcheck_cli.engine import CheckInterrupted

    partial = passing_report()

    def interrupted(problem, progress=None):
        raise CheckInterrupted(partial)

    monkeypatch.setattr(engine_package, "run_check", interrupted)
    report = run_module._run_check(tiny_problem(), lambda done, total: None)
    assert report is partial and report.interrupted


def test_click_errors_never_exit_1():
    import click

    assert report_error(click.ClickException("odd"), debug=False) == 2


def test_missing_config_and_unknown_option_exit_2(engine, config):
    assert invoke("run", "no-such.yaml").exit_code == 2
    result = invoke("run", config, "--frobnicate")
    assert result.exit_code == 2 and "No such option" in result.stderr
    assert engine.loaded == []


# --- run: options -----------------------------------------------------------------------


def test_options_override_the_config_check_block(engine, config):
    result = invoke(
        "run", config, "--eps", "1e-5", "--atol", "0", "--rtol", "1e-4", "--only", "fc.*",
        "--only", "input", "--sample", "3", "--seed", "7", "--strict-kinks",
        "--method", "taylor", "--max-memory", "512MiB",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    s = engine.problem.settings
    assert (s.eps, s.atol, s.rtol, s.seed, s.strict_kinks) == (1e-5, 0.0, 1e-4, 7, True)
    assert s.only == ("fc.*", "input")
    assert (s.mode, s.sample, s.method) == (Mode.SAMPLE, 3, Method.TAYLOR)
    assert s.max_memory == 512 * 1024**2


def test_options_not_given_keep_the_config_values(engine, config):
    invoke("run", config)
    assert engine.problem.settings == tiny_problem().settings


@pytest.mark.parametrize(
    ("option", "mode", "field", "value"),
    [
        (["--fast"], Mode.FAST, None, None),
        (["--time-budget", "2.5"], Mode.BUDGET, "time_budget", 2.5),
    ],
)
def test_mode_options(engine, config, option, mode, field, value):
    assert invoke("run", config, *option).exit_code == 0
    assert engine.problem.settings.mode is mode
    if field:
        assert getattr(engine.problem.settings, field) == value


@pytest.mark.parametrize(
    ("size", "expected"),
    [("1GiB", 1 << 30), ("1.5G", 15 * 10**8), ("100MB", 10**8), ("4096", 4096), ("8 kib", 8192)],
)
def test_max_memory_sizes(engine, config, size, expected):
    assert invoke("run", config, "--max-memory", size).exit_code == 0
    assert engine.problem.settings.max_memory == expected


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--eps", "0"], "--eps"),
        (["--eps", "-1e-6"], "--eps"),
        (["--eps", "nan"], "--eps"),
        (["--atol", "-1"], "--atol"),
        (["--rtol", "inf"], "--rtol"),
        (["--sample", "0"], "--sample"),
        (["--time-budget", "0"], "--time-budget"),
        (["--max-memory", "lots"], "--max-memory"),
        (["--max-memory", "0"], "--max-memory"),
        (["--method", "forward"], "--method"),
        (["--fast", "--sample", "3"], "--fast and --sample"),
        (["-q", "-v"], "-q/--quiet"),
        (["--only", "conv9.*"], "--only"),
    ],
)
def test_invalid_option_values_exit_2_naming_the_option(engine, config, args, named):
    result = invoke("run", config, *args)
    assert result.exit_code == 2, result.output
    assert named in result.stderr
    assert "Traceback" not in result.output
    assert engine.problem is None  # the check never ran


def test_only_that_matches_nothing_lists_the_tensors(engine, config):
    result = invoke("run", config, "--only", "fc.*", "--only", "conv9.*")
    assert result.exit_code == 2
    assert "'conv9.*' matches no tensor" in result.stderr
    assert "input, fc.weight, fc.bias" in result.stderr


# --- run: output streams and report files -----------------------------------------------


def test_json_to_stdout_moves_the_table_to_stderr(engine, config):
    result = invoke("run", config, "--json", "-")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["schema"] == "gradcheck-report/1" and data["passed"] is True
    assert "PASS: 3 tensors" in result.stderr


def test_json_and_junit_files(engine, config, tmp_path):
    engine.report = failing_report()
    result = invoke("run", config, "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml")
    assert result.exit_code == 1
    assert json.loads((tmp_path / "r.json").read_text())["exit_code"] == 1
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert suite.get("failures") == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.yaml", "r.json", "r.xml"]


def test_existing_report_is_replaced_atomically_keeping_its_mode(engine, config, tmp_path):
    out = tmp_path / "r.json"
    out.write_text("old")
    out.chmod(0o640)
    before = out.stat().st_ino
    assert invoke("run", config, "--json", out).exit_code == 0
    assert json.loads(out.read_text())["passed"] is True
    assert out.stat().st_ino != before  # a new file moved into place, not rewritten
    assert out.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.yaml", "r.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_file(
    engine, config, tmp_path, monkeypatch
):
    out = tmp_path / "r.json"
    out.write_text("old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    result = invoke("run", config, "--json", out)
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and "No space left" in result.stderr
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.yaml", "r.json"]


@pytest.mark.parametrize("option", ["--json", "--junit"])
def test_missing_parent_folder_exits_2_before_anything_runs(engine, config, tmp_path, option):
    result = invoke("run", config, option, tmp_path / "missing" / "r.out")
    assert result.exit_code == 2
    assert option in result.stderr and "does not exist" in result.stderr
    assert engine.loaded == [] and engine.problem is None


def test_report_path_that_is_the_config_is_refused(engine, config):
    result = invoke("run", config, "--json", config)
    assert result.exit_code == 2
    assert "refusing to overwrite an input of this check" in result.stderr
    assert config.read_text() == "name: net\n"
    assert engine.loaded == []


def test_report_path_that_is_an_array_file_is_refused(engine, config, tmp_path):
    weights = tmp_path / "w.npy"
    weights.write_bytes(b"\x93NUMPY")
    result = invoke("run", config, "--junit", weights)
    assert result.exit_code == 2 and "refusing to overwrite a .npy file" in result.stderr
    assert weights.read_bytes() == b"\x93NUMPY"


def test_json_and_junit_to_the_same_place_is_refused(engine, config, tmp_path):
    assert invoke("run", config, "--json", "-", "--junit", "-").exit_code == 2
    out = tmp_path / "r.out"
    assert invoke("run", config, "--json", out, "--junit", out).exit_code == 2


def test_quiet_prints_the_verdict_line_only(engine, config):
    result = invoke("run", config, "-q")
    assert result.stdout.splitlines() == [
        "PASS: 3 tensors, 30 elements checked, 0 failed (0 kinks), 1 expectation met in 0.01 s"
    ]


def test_verbose_prints_element_tables_of_passing_tensors(engine, config):
    result = invoke("run", config, "-v")
    assert "conv1.weight (2, 2): PASS" in result.stdout


# FORCE_COLOR makes rich treat CliRunner's stream as a terminal: without it no test
# could tell "plain because NO_COLOR" from "plain because not a terminal".
def test_forced_terminal_output_is_colored(engine, config):
    result = invoke("run", config, env={"FORCE_COLOR": "1", "NO_COLOR": None})
    assert ESC in result.stdout


@pytest.mark.parametrize(
    ("args", "env"),
    [
        ([], {"FORCE_COLOR": "1", "NO_COLOR": "1"}),
        (["--no-color"], {"FORCE_COLOR": "1", "NO_COLOR": None}),
        ([], {"FORCE_COLOR": None, "NO_COLOR": None}),  # not a terminal
    ],
)
def test_plain_output_has_no_escape_codes(engine, config, args, env):
    engine.report = failing_report()
    result = invoke("run", config, *args, env=env)
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and ESC not in result.output


# --- init -------------------------------------------------------------------------------


def test_init_writes_the_starter_and_refuses_to_overwrite(tmp_path):
    target = tmp_path / "gradcheck.yaml"
    assert invoke("init", target).exit_code == 0
    assert target.read_text() == starter_config()
    target.write_text("mine")
    result = invoke("init", target)
    assert result.exit_code == 2 and "--force" in result.stderr
    assert target.read_text() == "mine"
    assert invoke("init", target, "--force").exit_code == 0
    assert target.read_text() == starter_config()
    assert [p.name for p in tmp_path.iterdir()] == ["gradcheck.yaml"]


def test_init_default_path_and_stdout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("init").exit_code == 0
    assert (tmp_path / "gradcheck.yaml").is_file()
    result = invoke("init", "-")
    assert result.exit_code == 0 and result.stdout == starter_config()


def test_init_into_a_missing_folder_exits_2(tmp_path):
    result = invoke("init", tmp_path / "nope" / "g.yaml")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_starter_config_is_worked_example_a_network():
    doc = yaml.safe_load(starter_config())
    assert [layer["type"] for layer in doc["layers"]] == [
        "conv2d",
        "maxpool2d",
        "sigmoid",
        "flatten",
        "dense",
    ]
    assert doc["loss"] == {"type": "upstream", "grad": [0.25, -0.15]}
    assert doc["expect"]["conv1.weight.grad"] == [[0.044606, 0.094061], [0.011262, 0.068288]]


# --- layers -----------------------------------------------------------------------------


def test_layers_lists_built_in_types_with_fields():
    result = invoke("layers", "--no-color")
    assert result.exit_code == 0, result.output
    for name in ("conv2d", "dense", "maxpool2d", "relu", "mse", "upstream"):
        assert name in result.stdout
    assert "out_features" in result.stdout and "built-in" in result.stdout


def test_layers_never_lists_the_batch_size_the_loader_sets():
    """dropout and batchnorm get batch_size from the input; a config that writes it is
    told to remove it, so the list must not offer it."""
    from gradcheck_cli.cli.layers import field_list
    from gradcheck_cli.protocol import LAYERS

    for name in ("dropout", "batchnorm", "functions"):
        assert not any(f.startswith("batch_size") for f in field_list(LAYERS[name])), name
    assert "p=0.5" in field_list(LAYERS["dropout"])


def test_layers_with_a_plugin_file(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "my_layers.py").write_text(
        textwrap.dedent(
            '''
            import gradcheck_cli as gc

            @gc.register_layer("swish_cli_test")
            class Swish(gc.Layer):
                """Swish activation, x * sigmoid(beta * x)."""

                def __init__(self, beta: float = 1.0):
                    self.beta = beta
            '''
        )
    )
    monkeypatch.chdir(tmp_path)
    result = invoke("layers", "--plugin", "my_layers.py")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if "swish_cli_test" in line)
    assert "beta=1.0" in line and "Swish activation" in line
    assert "my_layers" in result.stdout  # its origin


def test_layers_with_a_missing_plugin_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("layers", "--plugin", "nope.py")
    assert result.exit_code == 2
    assert "nope.py" in result.stderr and "Traceback" not in result.output


# --- help and version -------------------------------------------------------------------


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout == f"gradcheck {gradcheck_cli.__version__}\n"


def test_help_documents_exit_codes_and_every_command_has_an_example():
    text = invoke("--help").stdout
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "130"):
        assert f"\n    {code}" in text
    for command in ("run", "layers", "init"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.stdout
        assert f"\n    gradcheck {command}" in result.stdout  # \b kept the line breaks
    assert "Exit codes:" in invoke("run", "--help").stdout


# --- a real process ---------------------------------------------------------------------


def gradcheck(*args, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [*GRADCHECK, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        **kwargs,
    )


# A process whose engine raises or returns what the test says, to see real exit codes,
# real pipes and real stderr. The fake comes from tests/_report_factory.py.
FAKED = """
import sys
sys.path.insert(0, {tests!r})
import _report_factory as f
import gradcheck_cli.cli.run as run
run._load_problem = lambda path, seed=None: f.tiny_problem(path)
def check(problem, progress):
    {body}
run._run_check = check
from gradcheck_cli.cli import main
main()
"""


def faked(body, *args):
    """A real ``gradcheck`` process whose loader and engine are faked: the check then runs
    in that process (GRADCHECK_SUPERVISE=0), where the fakes are."""
    code = FAKED.format(tests=str(TESTS), body=body)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    env["GRADCHECK_SUPERVISE"] = "0"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_subprocess_version_and_usage_error(tmp_path):
    version = gradcheck("--version")
    assert version.returncode == 0 and gradcheck_cli.__version__ in version.stdout
    missing = gradcheck("run", tmp_path / "missing.yaml")
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_subprocess_internal_error_and_debug(config):
    plain = faked("raise RuntimeError('kaput')", "run", config)
    assert plain.returncode == 4
    assert "Traceback" not in plain.stderr
    assert "internal error (RuntimeError: kaput)" in plain.stderr
    debug = faked("raise RuntimeError('kaput')", "run", config, "--debug")
    assert debug.returncode == 4 and "Traceback (most recent call last)" in debug.stderr


def test_subprocess_piped_output_is_plain_and_exit_code_follows_the_report(config):
    failed = faked("return f.failing_report()", "run", config)
    assert failed.returncode == 1
    assert "FAIL: 2 of 3 tensors" in failed.stdout and ESC not in failed.stdout + failed.stderr
    passed = faked("return f.passing_report()", "run", config, "--json", "-")
    assert passed.returncode == 0 and json.loads(passed.stdout)["passed"] is True


def test_importing_the_cli_stays_light():
    code = (
        "import sys, gradcheck_cli.cli; "
        "print(sorted(m for m in ('rich', 'yaml', 'numpy', 'gradcheck_cli.engine', "
        "'gradcheck_cli.config', 'gradcheck_cli.render') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


# --- end to end on the shipped configs (real loader and engine) -------------------------

EXAMPLE_A = REPO / "configs" / "example_a.yaml"


needs_example_a = pytest.mark.skipif(
    not EXAMPLE_A.is_file(), reason="configs/example_a.yaml is not there yet"
)


@needs_example_a
def test_example_a_end_to_end(tmp_path):
    result = gradcheck("run", EXAMPLE_A, "--json", "-", "--junit", tmp_path / "a.xml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {c["name"] for c in data["checks"]} >= {"input", "conv1.weight", "conv1.bias"}
    assert all(e["passed"] for e in data["expectations"])
    assert "PASS:" in result.stderr
    suite = ET.parse(tmp_path / "a.xml").getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.find("testcase[@name='conv1.weight']") is not None


@needs_example_a
def test_example_a_only_and_bad_eps(tmp_path):
    result = gradcheck("run", EXAMPLE_A, "--only", "conv1.*", "-q")
    assert result.returncode == 0 and result.stdout.startswith("PASS: 2 tensors")
    assert gradcheck("run", EXAMPLE_A, "--eps", "0").returncode == 2


@needs_example_a
def test_starter_config_runs_and_meets_its_expectations(tmp_path):
    assert gradcheck("init", tmp_path / "g.yaml").returncode == 0
    result = gradcheck("run", tmp_path / "g.yaml", "--json", "-")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [c["name"] for c in data["checks"]] == [
        "input",
        "conv1.weight",
        "conv1.bias",
        "fc.weight",
        "fc.bias",
    ]
    assert [e["name"] for e in data["expectations"]] == ["conv1.weight.grad", "conv1.delta"]
    assert data["passed"] is True


def test_report_path_that_is_an_array_the_config_reads_is_refused(tmp_path):
    """Any file the config read is protected, whatever its suffix (no engine fakes)."""
    import numpy as np

    np.save(tmp_path / "x.npy", np.arange(4.0))
    (tmp_path / "x.npy").rename(tmp_path / "inputs.dat")
    before = (tmp_path / "inputs.dat").read_bytes()
    cfg = tmp_path / "net.yaml"
    cfg.write_text(
        "input: {file: inputs.dat}\nlayers: [{type: dense, out_features: 2}]\n"
        "loss: {type: upstream, grad: [1, 1]}\n"
    )
    result = invoke("run", cfg, "--json", tmp_path / "inputs.dat")
    assert result.exit_code == 2, result.output
    assert "refusing to overwrite an input of this check" in result.stderr
    assert (tmp_path / "inputs.dat").read_bytes() == before


def test_a_reader_closing_the_pipe_early_is_not_a_gradient_failure(monkeypatch):
    """rich exits 1 on a broken pipe, and 1 means "a gradient disagrees"; we exit 141."""
    import io

    from gradcheck_cli.cli import report_error
    from gradcheck_cli.cli.io import make_console

    console = make_console(io.StringIO())
    with pytest.raises(BrokenPipeError):
        console.on_broken_pipe()
    silenced = []
    monkeypatch.setattr("gradcheck_cli.cli._silence_stdout", lambda: silenced.append(True))
    assert report_error(BrokenPipeError(), debug=False) == 141
    assert silenced == [True]
