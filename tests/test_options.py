"""One declaration per check option (``gradcheck_cli.options``).

The same value gets the same answer on the command line, in the Python API and in a
config's ``check:`` block, and every option in the table reaches every surface derived
from it: the click command, the API, the YAML keys, the JSON Schema, the docs and the
report. The engine is stubbed out: these tests are about reading options, not checking.
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import click
import jsonschema
import pytest
import yaml
from _report_factory import passing_report
from click.testing import CliRunner

import gradcheck_cli as gc
import gradcheck_cli.cli.run as run_module
import gradcheck_cli.engine
from gradcheck_cli import api, options, supervise
from gradcheck_cli.cli import cli
from gradcheck_cli.cli.options import click_option
from gradcheck_cli.config import load_problem
from gradcheck_cli.config.settings import CHECK_KEYS
from gradcheck_cli.errors import ConfigError, UsageError
from gradcheck_cli.exit_codes import ExitCode
from gradcheck_cli.options import (
    OPTIONS,
    CheckSettings,
    Choice,
    Flag,
    Globs,
    Integer,
    Method,
    Mode,
    Option,
    Real,
    Size,
)
from gradcheck_cli.schema import config_schema

REPO = Path(__file__).resolve().parent.parent
NETWORK = """\
input: [1.0, 2.0]
layers: [{type: dense, name: fc, out_features: 2}]
loss: {type: mse, target: [0.0, 0.0]}
"""
TENSORS = "input, fc.weight, fc.bias"


class Answer(NamedTuple):
    """What one front end made of some options: the settings, or the error's message
    without its place (``--eps``, ``check.eps``) and without the value it quotes."""

    settings: CheckSettings | None
    error: str | None


def core(message: str) -> str:
    """``Invalid value for '--max-memory': must be ..., got '0'`` -> ``must be ...``;
    option names spelled as in the API (``time_budget``)."""
    message = re.sub(r"^Error: (Invalid value for '[^']+': )?", "", message.strip())
    message = re.sub(r"--([a-z-]+)", lambda m: m.group(1).replace("-", "_"), message)
    return re.sub(r", got .*$", "", message).rstrip(".")


class FrontEnds:
    """The three ways to give options, each fed ``{name: value as written in YAML}``."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.tmp_path = tmp_path
        self.network = tmp_path / "net.yaml"
        self.network.write_text(NETWORK)
        self.ran: list[Any] = []

        def run_check(problem, progress=None, helpers=None):
            self.ran.append(problem)
            return passing_report()

        monkeypatch.setattr(run_module, "_run_check", run_check)
        monkeypatch.setattr(gradcheck_cli.engine, "run_check", run_check)
        # a timeout is read like any option; these checks are too quick to keep one
        monkeypatch.setattr(supervise, "alarm", lambda *args, **kwargs: contextlib.nullcontext())

    def command_line(self, given: dict[str, str]) -> Answer:
        args = ["run", str(self.network), "-q"]
        for name, text in given.items():
            flag = OPTIONS[name].flag
            value = yaml.safe_load(text)
            if isinstance(OPTIONS[name].kind, Flag):
                assert isinstance(value, bool), "the command line has no such value"
                args.append(flag if value else f"--no-{flag[2:]}")
            elif isinstance(value, list):
                args += [a for v in value for a in (flag, v)]
            else:
                args += [flag, text.strip("\"'")]  # as a shell passes '""' or "fc.*"
        self.ran.clear()
        result = CliRunner().invoke(cli, args)
        if result.exit_code == 0:
            return Answer(self.ran[-1].settings, None)
        assert result.exit_code == ExitCode.INVALID, result.output
        assert "Traceback" not in result.output
        error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
        return Answer(None, core(error))

    def api(self, given: dict[str, str]) -> Answer:
        self.ran.clear()
        try:
            gc.check(self.network, **{k: yaml.safe_load(v) for k, v in given.items()})
        except UsageError as e:
            message = str(e)
            if len(given) == 1:  # one option: named first, as "eps: must be ..."
                (name,) = given
                message = message.removeprefix(f"{name}: ")
            return Answer(None, core(message))
        return Answer(self.ran[-1].settings, None)

    def config(self, given: dict[str, str]) -> Answer:
        block = "".join(f"  {k}: {v}\n" for k, v in given.items())
        path = self.tmp_path / "with_check.yaml"
        path.write_text(NETWORK + "check:\n" + block)
        try:
            return Answer(load_problem(path).settings, None)
        except ConfigError as e:
            (issue,) = e.issues
            assert issue.line is not None and issue.path.startswith("check")
            return Answer(None, core(issue.message))

    def answers(self, given: dict[str, str], command_line: bool = True) -> list[Answer]:
        found = [self.api(given), self.config(given)]
        return [self.command_line(given), *found] if command_line else found


@pytest.fixture
def front_ends(tmp_path, monkeypatch) -> FrontEnds:
    return FrontEnds(tmp_path, monkeypatch)


def assert_same(answers: list[Answer]) -> Answer:
    first = answers[0]
    for other in answers[1:]:
        assert other == first, f"{other} != {first}"
    return first


# --- the same value, the same answer ------------------------------------------------------

#: Values as a user types them, on the command line or after ``key:`` in YAML.
VALUES = ["1TiB", "512m", "0", "-1", "nan", "inf", "lots", '""', "3", "1e-3", "taylor"]
VALUED = [name for name, o in OPTIONS.items() if not isinstance(o.kind, Flag | Globs)]


@pytest.mark.parametrize("text", VALUES)
@pytest.mark.parametrize("name", VALUED)
def test_a_value_gets_the_same_answer_everywhere(front_ends, name, text):
    assert_same(front_ends.answers({name: text}))


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("max_memory", "1TiB", 2**40),  # was refused on the command line
        ("max_memory", "512m", 512 * 10**6),  # was refused in a config
        ("max_memory", "512MiB", 512 * 2**20),
        ("max_memory", "1 GiB", 2**30),
        ("max_memory", "2GB", 2 * 10**9),
        ("max_memory", "1.5G", 15 * 10**8),
        ("max_memory", "4096", 4096),
        ("sample", "2e0", 2),  # PyYAML's string for 2e0: an integer everywhere
        ("eps", "1e-3", 1e-3),
        ("method", "taylor", Method.TAYLOR),
        ("seed", "0", 0),
        ("atol", "0", 0.0),
    ],
)
def test_accepted_values(front_ends, name, text, expected):
    settings, error = assert_same(front_ends.answers({name: text}))
    assert error is None and getattr(settings, name) == expected


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("max_memory", "0", "must be a positive number of bytes or a size like 512MiB"),
        ("max_memory", "-1", "must be a positive number of bytes"),
        ("max_memory", "lots", "must be a positive number of bytes"),
        ("max_memory", "inf", "must be a positive number of bytes"),
        ("eps", "0", "must be a positive number"),
        ("eps", "nan", "must be a positive number like 1e-6"),
        ("rtol", "-1", "must be a number >= 0"),
        ("time_budget", "inf", "must be a positive number like 1e-6"),
        ("sample", "0", "must be a positive integer"),
        ("sample", "1.5", "must be a positive integer"),
        ("seed", "-1", "must be a non-negative integer"),
        ("method", "forward", "must be central or taylor"),
    ],
)
def test_refused_values(front_ends, name, text, message):
    settings, error = assert_same(front_ends.answers({name: text}))
    assert settings is None and error.startswith(message)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ('""', 'must be a tensor name or glob, or a list of them like ["conv1.*", input]'),
        ('"nope.*"', f"'nope.*' matches no tensor (the tensors are: {TENSORS})"),
        ('"fc"', f"'fc' matches no tensor; did you mean 'fc.*'? (the tensors are: {TENSORS})"),
        ('"fc.*"', ("fc.*",)),
        ('["fc.*", input]', ("fc.*", "input")),
    ],
)
def test_globs_get_the_same_answer_everywhere(front_ends, text, answer):
    settings, error = assert_same(front_ends.answers({"only": text}))
    assert settings.only == answer if settings else error == answer


@pytest.mark.parametrize(
    "pair", [("fast", "sample"), ("sample", "time_budget"), ("fast", "time_budget")]
)
def test_two_modes_are_refused_everywhere(front_ends, pair):
    given = {name: "true" if name == "fast" else "3" for name in pair}
    settings, error = assert_same(front_ends.answers(given))
    assert error == f"{pair[0]} and {pair[1]} choose different check modes; keep one of them"


@pytest.mark.parametrize(("name", "mode"), [(o.name, o.mode) for o in options.MODE_OPTIONS])
def test_each_mode_option_chooses_its_mode(front_ends, name, mode):
    settings, _ = assert_same(front_ends.answers({name: "true" if name == "fast" else "3"}))
    assert settings.mode is mode


@pytest.mark.parametrize("name", [n for n, o in OPTIONS.items() if isinstance(o.kind, Flag)])
def test_flags_get_the_same_answer_everywhere(front_ends, name):
    assert getattr(assert_same(front_ends.answers({name: "true"})).settings, name) is True
    refused = assert_same(front_ends.answers({name: "lots"}, command_line=False))
    assert refused.error == "must be true or false"


def test_the_command_line_overrides_the_config_mode(tmp_path, monkeypatch):
    """``--fast`` over ``check: {sample: 3}`` checks fast, and the report says so."""
    ends = FrontEnds(tmp_path, monkeypatch)
    ends.network.write_text(NETWORK + "check: {sample: 3, strict_kinks: true}\n")
    settings, _ = ends.command_line({"fast": "true"})
    assert (settings.mode, settings.sample, settings.strict_kinks) == (Mode.FAST, None, True)
    settings, _ = ends.api({"fast": "false"})  # fast=False leaves the config's mode alone
    assert (settings.mode, settings.sample) == (Mode.SAMPLE, 3)


def test_api_options_are_read_before_the_config_is(front_ends, monkeypatch):
    monkeypatch.setattr(api, "load", lambda *a, **k: pytest.fail("the config was read"))
    with pytest.raises(UsageError, match=r"^seed: must be a non-negative integer, got -1$"):
        gc.check(front_ends.network, seed=-1)
    with pytest.raises(UsageError, match=r"unknown option 'epsilon'; options are eps, atol"):
        gc.check(front_ends.network, epsilon=1e-6)


# --- every option reaches every surface ---------------------------------------------------

#: A good value of each kind of option, as written in YAML (a new kind needs one).
GOOD = {Real: "0.5", Integer: "3", Size: "512MiB", Globs: '"fc.*"', Flag: "true", Choice: "taylor"}


def test_every_kind_in_the_table_has_a_good_value():
    assert {type(o.kind) for o in OPTIONS.values()} <= set(GOOD)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_every_option_reaches_the_command_line_api_and_config(front_ends, name):
    option = OPTIONS[name]
    answers = front_ends.answers({name: GOOD[type(option.kind)]})
    settings, error = assert_same(answers)
    assert error is None
    assert getattr(settings, name) == option.parse(yaml.safe_load(GOOD[type(option.kind)]))
    params = {p.name: p for p in cli.commands["run"].params}
    assert option.flag in params[name].opts
    assert option.help[1:] in params[name].help
    assert name in api.OPTION_NAMES and name in CHECK_KEYS


def test_the_schema_has_every_option_and_agrees_with_the_loader():
    check = config_schema()["properties"]["check"]
    assert list(check["properties"]) == list(OPTIONS)
    validator = jsonschema.Draft202012Validator(check)
    for name, option in OPTIONS.items():
        assert check["properties"][name]["description"].startswith(option.help)
        assert validator.is_valid({name: yaml.safe_load(GOOD[type(option.kind)])}), name
    for text in ["1TiB", "512m", "512MiB", "1 GiB", "2GB", "1.5G", "8 kib"]:
        assert validator.is_valid({"max_memory": text}), text
    for pair in [{"fast": True, "sample": 3}, {"sample": 3, "time_budget": 1}]:
        assert not validator.is_valid(pair)
    assert validator.is_valid({"fast": False, "sample": 3})


def test_the_docs_table_has_every_option():
    text = (REPO / "docs" / "config.md").read_text()
    section = text.split("## `check`", 1)[1].split("\n## ", 1)[0]
    for name, option in OPTIONS.items():
        assert f"| `{name}` | `{option.flag}` |" in section, name
        assert option.help in section


def test_the_report_settings_keep_their_keys():
    settings = options.report_settings(CheckSettings(), "float32", atol=1e-5, rtol=1e-3)
    assert list(settings)[:7] == ["eps", "atol", "rtol", "method", "mode", "dtype", "seed"]
    assert set(settings) == {*options.REPORT_FIRST, "sample", "strict_kinks", "time_budget", "only"}
    assert (settings["atol"], settings["rtol"], settings["dtype"]) == (1e-5, 1e-3, "float32")
    assert json.loads(json.dumps(settings)) == settings


# --- options to come fit the table without special cases ----------------------------------


class Future(str, enum.Enum):
    CENTRAL = "central"
    TAYLOR = "taylor"
    COMPLEX = "complex"


COMING = [
    Option(Real(positive=True), "give up after this many seconds", metavar="SECONDS"),
    Option(
        Integer(positive=True),
        "worker processes for the numeric side",
        default_factory=lambda: 2,
        default_text="the CPU cores available",
    ),
    Option(Choice(Future), "numeric reference", default=Future.CENTRAL),
]


@pytest.mark.parametrize(
    ("option", "good", "bad"),
    [
        (replace(COMING[0], name="timeout"), ("2.5", 2.5), "0"),
        (replace(COMING[1], name="jobs"), ("4", 4), "0"),
        (replace(COMING[2], name="method"), ("complex", Future.COMPLEX), "forward"),
    ],
    ids=["timeout", "jobs", "method complex"],
)
def test_coming_options_fit_the_table(option, good, bad):
    @click.command()
    @click_option(option)
    def command(**given):
        click.echo(repr(given[option.name]))

    result = CliRunner().invoke(command, [option.flag, good[0]])
    assert result.exit_code == 0 and result.output.strip() == repr(good[1])
    result = CliRunner().invoke(command, [option.flag, bad])
    assert result.exit_code == 2 and f"Invalid value for '{option.flag}'" in result.stderr
    jsonschema.Draft202012Validator.check_schema(option.schema())
    assert option.parse(good[0]) == good[1]
    help_text = CliRunner().invoke(command, ["--help"]).output
    assert option.shown_default() is None or option.shown_default() in " ".join(help_text.split())
