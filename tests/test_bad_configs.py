"""The corpus of malformed configs, end to end through the real command line.

Every ``tests/bad_configs/*.yaml`` is one case. Its expectation sits in the file itself,
in one or more header comments::

    # expect: exit=2 line=7 path=layers[1].stride words="must be"

``exit`` is required; the other keys may repeat. ``line=N`` means ``<file>.yaml:N``
appears in the output, ``path``/``words`` are substrings that must appear
(``words`` case-insensitively), ``absent`` must not appear, ``schema=invalid`` says
that the JSON Schema (``gradcheck schema``) must reject the file too
(tests/test_schema.py), ``issues=N`` is the number
of output lines that start with the config's path (one per config issue; 1 when not
given, so that follow-on noise fails the case), ``args`` are
extra ``gradcheck run`` arguments and ``via=subprocess`` runs the case through
``python -m gradcheck_cli`` instead of click's CliRunner. A file that cannot carry a
comment (an empty file) keeps its expectation in ``<file>.yaml.expect``.

Adding a case is adding a file. Every case also asserts that no traceback is printed
and that an exit 2 names the config file.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from installed import GRADCHECK

import gradcheck_cli.config  # noqa: F401 - registers the built-in types before any snapshot
from gradcheck_cli.cli import cli

CORPUS = Path(__file__).resolve().parent / "bad_configs"
CASES = sorted(CORPUS.glob("*.yaml"))
EXIT_CODES = {0, 1, 2, 3, 4, 130}
#: A Python warning (``numeric.py:36: RuntimeWarning: ...``) is noise to a user.
PYTHON_WARNING = re.compile(r"\b\w*Warning: ")


@dataclass
class Expect:
    exit: int
    lines: list[int] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    issues: int | None = None
    args: list[str] = field(default_factory=list)
    via: str = "runner"
    schema: str | None = None


def read_expect(case: Path) -> Expect:
    """The expectation of one case: its ``# expect:`` header lines (or its sidecar)."""
    sidecar = case.with_name(case.name + ".expect")
    source = sidecar if sidecar.exists() else case
    text = source.read_bytes().decode("utf-8", errors="replace")
    fields: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# expect:"):
            for token in shlex.split(line[len("# expect:") :]):
                key, sep, value = token.partition("=")
                if not sep:
                    raise ValueError(f"{source.name}: expectation {token!r} is not key=value")
                fields.setdefault(key, []).append(value)
    unknown = set(fields) - {
        "exit",
        "line",
        "path",
        "words",
        "absent",
        "issues",
        "args",
        "via",
        "schema",
    }
    if unknown or "exit" not in fields:
        raise ValueError(f"{source.name}: needs exit=N; unknown keys {sorted(unknown)}")
    return Expect(
        exit=int(fields["exit"][0]),
        lines=[int(v) for v in fields.get("line", [])],
        paths=fields.get("path", []),
        words=fields.get("words", []),
        absent=fields.get("absent", []),
        issues=int(fields["issues"][0]) if "issues" in fields else None,
        args=[a for v in fields.get("args", []) for a in shlex.split(v)],
        via=fields.get("via", ["runner"])[0],
        schema=fields.get("schema", [None])[0],
    )


def run_case(case: Path, expect: Expect) -> tuple[int, str]:
    """(exit code, stdout + stderr) of ``gradcheck run CASE [args]``."""
    args = ["run", str(case), *expect.args]
    if expect.via == "subprocess":
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
        env.pop("GRADCHECK_DEBUG", None)
        proc = subprocess.run(
            [*GRADCHECK, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        return proc.returncode, proc.stdout + proc.stderr
    result = CliRunner().invoke(cli, args, env={"NO_COLOR": "1", "COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unhandled {result.exception!r}") from result.exception
    return result.exit_code, result.output


def test_the_corpus_is_large_and_every_case_says_what_it_expects():
    assert len(CASES) >= 60
    for case in CASES:
        read_expect(case)  # raises on a malformed header
    kinds = {read_expect(c).exit for c in CASES}
    assert {0, 1, 2, 3} <= kinds  # the corpus proves the codes are not blurred


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_config(case: Path, clean_registry):
    expect = read_expect(case)
    code, output = run_case(case, expect)
    shown = f"\n--- output of {case.name} (exit {code}) ---\n{output}"
    assert code == expect.exit, shown
    assert "Traceback" not in output, shown
    assert not PYTHON_WARNING.search(output), shown
    assert code in EXIT_CODES
    if code == 2 and not expect.args:  # (a bad option is named instead)
        assert case.name in output, "an invalid config must be named" + shown
    for line in expect.lines:
        assert f"{case.name}:{line}" in output, shown
    for path in expect.paths:
        assert path in output, shown
    for word in expect.words:
        assert word.lower() in output.lower(), shown
    for word in expect.absent:
        assert word.lower() not in output.lower(), shown
    # one issue per line; a config error says each thing once, without follow-on noise
    issue_lines = [x for x in output.splitlines() if x.startswith(str(case))]
    if expect.issues is not None or issue_lines:
        assert len(issue_lines) == (expect.issues or 1), shown


# --- a bug in gradcheck itself: exit 4, one line, the traceback only with --debug --------

EXAMPLE = Path(__file__).resolve().parent.parent / "configs" / "example_a.yaml"


def broken_engine(monkeypatch) -> None:
    """Make a real engine function fail the way a bug in gradcheck would."""
    import gradcheck_cli.engine.check as check

    def compare_expectations(*args, **kwargs):
        raise ZeroDivisionError("float division by zero in the engine")

    monkeypatch.setattr(check, "compare_expectations", compare_expectations)


def test_an_internal_error_exits_4_with_one_line_asking_for_a_report(monkeypatch):
    broken_engine(monkeypatch)
    result = CliRunner().invoke(cli, ["run", str(EXAMPLE)], env={"GRADCHECK_DEBUG": ""})
    assert result.exit_code == 4
    assert "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert "internal error" in line and "ZeroDivisionError" in line
    assert "bug in gradcheck" in line and "report" in line and "--debug" in line
    assert result.stdout == ""


def test_debug_shows_the_traceback_of_an_internal_error(monkeypatch):
    broken_engine(monkeypatch)
    result = CliRunner().invoke(cli, ["run", str(EXAMPLE), "--debug"])
    assert result.exit_code == 4
    assert "Traceback (most recent call last)" in result.stderr
    assert "compare_expectations" in result.stderr  # the frame where it happened
    assert "ZeroDivisionError: float division by zero in the engine" in result.stderr


@pytest.mark.parametrize("debug", [False, True])
def test_an_internal_error_in_a_real_process(debug):
    """What a CI log shows: exit 4 and one line (the traceback with --debug)."""
    code = (
        "import sys, gradcheck_cli.engine.check as check\n"
        "def boom(*a, **k): raise ZeroDivisionError('engine bug')\n"
        "check.compare_expectations = boom\n"
        "from gradcheck_cli.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    args = ["run", str(EXAMPLE)] + (["--debug"] if debug else [])
    env = {k: v for k, v in os.environ.items() if k != "GRADCHECK_DEBUG"}
    env["GRADCHECK_SUPERVISE"] = "0"  # the bug is planted in this process
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 4
    assert proc.stdout == ""
    if debug:
        assert "Traceback (most recent call last)" in proc.stderr
    else:
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.splitlines()) == 1
        assert "bug in gradcheck" in proc.stderr


def test_a_plugin_bug_is_not_an_internal_error():
    """A user's layer raising is exit 2 naming it, never exit 4 "a bug in gradcheck"."""
    case = CORPUS / "plugin_perturbed_raises.yaml"
    code, output = run_case(case, Expect(exit=2))
    assert code == 2 and "internal error" not in output


# --- memory: refused up front, with an estimate and what would fit ----------------------


def big_problem(**settings):
    import dataclasses

    from gradcheck_cli.config import load_problem

    problem = load_problem(CORPUS / "too_large_for_max_memory_option.yaml")
    return dataclasses.replace(problem, settings=dataclasses.replace(problem.settings, **settings))


def test_the_memory_estimate_follows_the_mode():
    from gradcheck_cli.engine import memory
    from gradcheck_cli.problem import Mode

    full = memory.estimate(big_problem())
    fast = memory.estimate(big_problem(mode=Mode.FAST))
    sampled = memory.estimate(big_problem(mode=Mode.SAMPLE, sample=2))
    assert full.copies == 2 and fast.copies == 1
    assert fast.total < full.total and sampled.total < full.total
    assert sampled.elements == 2 * 5  # 2 per tensor: input, conv1.weight/bias, fc.weight/bias
    assert full.elements == 64 + 36 + 4 + 288 + 2


def test_the_refusal_names_only_what_would_fit():
    from gradcheck_cli.engine import memory
    from gradcheck_cli.errors import OptionHint, TooLargeError

    est = memory.estimate(big_problem())
    # a budget that one copy fits but two do not: --fast is the way out
    with pytest.raises(TooLargeError) as info:
        memory.require_fits(big_problem(max_memory=est.per_copy + 1), ram=None)
    flags = info.value.phrase(OptionHint.as_flag)  # the CLI's wording
    assert "--fast" in flags and "--sample" not in flags
    assert "fast=True" in str(info.value)  # the API's: the engine says options, not flags
    # a machine too small for the whole-tensor arrays but big enough sampled
    ram = est.total - 1
    with pytest.raises(TooLargeError) as info:
        memory.require_fits(big_problem(), ram=ram)
    flags = info.value.phrase(OptionHint.as_flag)
    assert "more than" in flags and "of RAM" in flags
    assert "--sample 20" in flags and "--max-memory" not in flags
    assert "sample" in [h.option for h in info.value.hints]
    # and a check that fits is let through
    assert memory.require_fits(big_problem(), ram=est.total) == est


# --- files that cannot be opened at all ---------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
@pytest.mark.parametrize(
    ("config", "args", "words"),
    [
        ("plugins: [loop.py]\n", [], "Too many levels of symbolic links"),
        ("input: {file: loop.npy}\n", [], "Too many levels of symbolic links"),
        ("", ["--json", "loop.json"], "--json loop.json: cannot be resolved"),
    ],
)
def test_symbolic_link_loops_are_named_not_crashed_on(tmp_path, monkeypatch, config, args, words):
    """Found while probing: a link to itself made Path.resolve() raise (exit 4)."""
    monkeypatch.chdir(tmp_path)
    for name in ("loop.py", "loop.npy", "loop.json"):
        (tmp_path / name).symlink_to(tmp_path / name)
    path = tmp_path / "net.yaml"
    text = "input: [1.0, 2.0]\nlayers: [{type: tanh}]\nloss: {type: mse, target: [0, 0]}\n"
    path.write_text(config + text if not config.startswith("input") else config + text[18:])
    result = CliRunner().invoke(cli, ["run", str(path), *args])
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output
