"""Fuzzing the command line: whatever the config, gradcheck answers with 0, 1, 2 or 3.

Three families of input, each run in-process through click's CliRunner and the real
loader and engine:

- raw text: random characters, and random sequences of YAML tokens (brackets, tabs,
  anchors, tags, document markers, numbers written every way);
- random documents: nested mappings, lists and scalars over the config's own keys,
  dumped with ``yaml.safe_dump``;
- mutations of the shipped configs (``configs/*.yaml``, ``configs/examples/``): keys
  dropped or misspelt, values swapped for wrong types, numbers made negative, huge, NaN
  or text, lists shortened, lengthened, flattened or nested.

A fourth fuzzer draws command lines (every ``run`` option, with values of every kind)
for the shipped configs.

The property is the issue's: no unhandled exception, an exit code in {0, 1, 2, 3}, and
no traceback in the output. Every run gets ``--sample 3 --max-memory 16MiB`` so that a
mutation that makes a network large is refused or sampled instead of taking minutes.
The default run draws 1,250 examples; ``pytest -m slow`` draws many more.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import gradcheck_cli.config  # noqa: F401 - registers the built-in types before any snapshot
from gradcheck_cli import protocol
from gradcheck_cli.cli import cli

REPO = Path(__file__).resolve().parent.parent
#: The worked examples and the custom-layer example (configs/bench holds benchmarks,
#: too slow to run a thousand times).
SHIPPED = sorted([*(REPO / "configs").glob("*.yaml"), *(REPO / "configs/examples").rglob("*.yaml")])
FAST_ARGS = ["--sample", "3", "--max-memory", "16MiB", "--no-color"]
ALLOWED = {0, 1, 2, 3}
PYTHON_WARNING = re.compile(r"\b\w*Warning: ")

#: Examples per test in the default run, and in ``pytest -m slow``.
TEXT_EXAMPLES, DOC_EXAMPLES, MUTATION_EXAMPLES = 300, 350, 450
SLOW = 5_000

KEYS = [
    "name", "seed", "dtype", "plugins", "input", "layers", "loss", "check", "expect",
    "type", "out_features", "out_channels", "kernel_size", "stride", "padding", "bias",
    "weight", "p", "negative_slope", "target", "grad", "reduction", "value", "batched",
    "file", "key", "shape", "eps", "atol", "rtol", "only", "sample", "fast", "method",
    "tolerance", "max_memory", "time_budget", "strict_kinks", "fc.weight.grad", "loss",
]  # fmt: skip
TYPES = [
    "dense", "conv2d", "maxpool2d", "avgpool2d", "relu", "leaky_relu", "sigmoid", "tanh",
    "softmax", "flatten", "dropout", "mse", "cross_entropy", "softmax_cross_entropy",
    "upstream", "swish", "conv", "Dense", "",
]  # fmt: skip
WEIRD_STRINGS = [
    "1e-6", "1E3", "-0", ".inf", "-.inf", ".nan", "nan", "inf", "0x1F", "1_000", "0o17",
    "+12", "1e400", "-1e-400", "1,5", "three", "", " ", "\t", "~", "null", "yes", "no",
    "on", "2001-12-14", "12:30:00", "!!python/name:os.system", "../../etc/passwd",
    "/dev/zero", "data.npy", "my_layers.py", "é", "\u202e", "\x00",
]  # fmt: skip
TOKENS = [
    "\n", "\n  ", "\n    ", "\n- ", "  - ", "\t", ": ", ":", "- ", "[", "]", "{", "}",
    ", ", "#", "---\n", "...\n", "&a ", "*a", "<<: *a", "? ", "|\n  ", ">\n  ", "!!str ",
    "!!int ", "!!float ", "!!binary ", "!!set ", "!!map ", "!!seq ", "!!omap ",
    "!!python/object/apply:os.system ", "!!python/name:os.path.join ", "!custom ",
    "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "'", '"', "\\", "0", "1", "-1", "1e-6", "3.5",
    ".nan", ".inf", "true", "null", "~", "input", "layers", "loss", "type", "dense",
    "conv2d", "relu", "mse", "upstream", "target", "grad", "out_features", "kernel_size",
    "weight", "shape", "file", "batched", "check", "expect", "plugins", "x.npy",
]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch copy of configs/ (mutants need the arrays and plugins beside them)."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "configs", root / "configs")
    return root


@pytest.fixture(autouse=True)
def clean_registry():
    saved = (dict(protocol.LAYERS), dict(protocol.LOSSES), dict(protocol.ORIGINS))
    yield
    for registry, before in zip(
        (protocol.LAYERS, protocol.LOSSES, protocol.ORIGINS), saved, strict=True
    ):
        registry.clear()
        registry.update(before)
    for name in [m for m in sys.modules if m.startswith("gradcheck_plugin_")]:
        del sys.modules[name]


def run_cli(path: Path) -> tuple[int, str]:
    """Exit code and output of ``gradcheck run PATH``; fails on anything unhandled."""
    result = CliRunner().invoke(cli, ["run", str(path), *FAST_ARGS])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unhandled {result.exception!r}") from result.exception
    return result.exit_code, result.output


def assert_handled(path: Path) -> int:
    code, output = run_cli(path)
    shown = f"\n--- {path.read_bytes()[:2000]!r}\n--- exit {code}:\n{output[-3000:]}"
    assert code in ALLOWED, shown
    assert "Traceback" not in output, shown
    assert "internal error" not in output, shown
    assert not PYTHON_WARNING.search(output), shown
    event(f"exit {code}")  # pytest --hypothesis-show-statistics: how far inputs get
    return code


def write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8", errors="surrogatepass")
    return path


# --- raw text ----------------------------------------------------------------------------

yaml_ish = st.lists(st.sampled_from(TOKENS) | st.sampled_from(WEIRD_STRINGS), max_size=60).map(
    "".join
)
raw_text = st.text(max_size=300) | st.binary(max_size=200) | yaml_ish


def fuzz_text(workdir: Path, text: str | bytes) -> None:
    assert_handled(write(workdir, "raw.yaml", text))


@settings(max_examples=TEXT_EXAMPLES, deadline=None)
@given(text=raw_text)
def test_random_text(workdir, text):
    fuzz_text(workdir, text)


@pytest.mark.slow
@settings(max_examples=SLOW, deadline=None)
@given(text=raw_text)
def test_random_text_slow(workdir, text):
    fuzz_text(workdir, text)


# --- random documents --------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(WEIRD_STRINGS + TYPES)
    | st.text(max_size=12)
)
keys = st.sampled_from(KEYS) | st.text(max_size=10)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)
LAYER_KEYS = [k for k in KEYS[9:22] if k != "type"] + ["name"]
layer = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)}, optional={k: values for k in LAYER_KEYS}
)
documents = st.one_of(
    st.dictionaries(keys, values, max_size=8),
    st.fixed_dictionaries(
        {
            "input": values | st.lists(st.floats(-3, 3), min_size=1, max_size=6),
            "layers": st.lists(layer, max_size=4) | values,
            "loss": st.fixed_dictionaries(
                {"type": st.sampled_from(TYPES)}, optional={"target": values, "grad": values}
            )
            | values,
        },
        optional={k: values for k in ("name", "seed", "dtype", "check", "expect", "plugins")},
    ),
)


def fuzz_document(workdir: Path, doc: Any) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    assert_handled(write(workdir, "doc.yaml", text))


@settings(max_examples=DOC_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents)
def test_random_documents(workdir, doc):
    fuzz_document(workdir, doc)


@pytest.mark.slow
@settings(max_examples=SLOW, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents)
def test_random_documents_slow(workdir, doc):
    fuzz_document(workdir, doc)


# --- mutations of the shipped configs ----------------------------------------------------


def paths_in(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a loaded YAML tree (the root excluded)."""
    found = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths_in(child, (*prefix, key)))
    return found


def parent_of(doc: Any, path: tuple) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def wrong_value(draw, old: Any) -> Any:
    """A value of the wrong type, sign or size for what ``old`` was."""
    if isinstance(old, bool):
        choices = [not old, "true", 1, None, [old]]
    elif isinstance(old, (int, float)):
        choices = [
            -old, 0, -1, old * 10**6, 1e308, 2**63, 0.5, str(old), "nan", ".inf",
            float("nan"), float("inf"), None, True, [old], {"value": old},
        ]  # fmt: skip
    elif isinstance(old, str):
        choices = [old[:-1], old + "x", old.upper(), "", 3, None, [old], {"file": old}]
    elif isinstance(old, list):
        choices = [
            old[:-1], old + old[-1:], [old], old[0] if old else 7, [], "[1, 2]",
            [x for row in old for x in (row if isinstance(row, list) else [row])],
            {"value": old}, {"value": old, "batched": True}, {"file": "missing.npy"},
            {"shape": [len(old)]},
        ]  # fmt: skip
    elif isinstance(old, dict):
        choices = [[old], list(old), "mapping", None, {**old, "extra_key": 1}, {}]
    else:
        choices = [0, "x", [None]]
    return draw(st.sampled_from(choices) | values)


@st.composite
def mutants(draw) -> tuple[Path, Any]:
    source = draw(st.sampled_from(SHIPPED))
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_in(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = parent_of(doc, path), path[-1]
        action = draw(st.sampled_from(["drop", "replace", "replace", "rename", "duplicate"]))
        if action == "drop":
            del parent[key]
        elif action == "replace":
            parent[key] = wrong_value(draw, parent[key])
        elif action == "rename" and isinstance(parent, dict):
            new = draw(st.sampled_from([key[:-1] or "x", key + "s", key.upper(), "_" + key]))
            parent[new] = parent.pop(key)
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
    return source, doc


def fuzz_mutant(workdir: Path, source: Path, doc: Any) -> None:
    folder = workdir / source.parent.relative_to(REPO)
    text = yaml.safe_dump(doc, sort_keys=False)
    assert_handled(write(folder, f"mutant_{source.name}", text))


@settings(max_examples=MUTATION_EXAMPLES, deadline=None)
@given(case=mutants())
def test_mutated_shipped_configs(workdir, case):
    fuzz_mutant(workdir, *case)


@pytest.mark.slow
@settings(max_examples=SLOW, deadline=None)
@given(case=mutants())
def test_mutated_shipped_configs_slow(workdir, case):
    fuzz_mutant(workdir, *case)


# --- random command lines ----------------------------------------------------------------

OPTION_VALUES = [
    "0", "1", "-1", "3", "1e-6", "1e-12", "1e300", "1e400", "-1e-6", "nan", "inf", "-inf",
    "", "abc", "2**31", "9" * 30, "0.5", "1KiB", "16MiB", "1GiB", "-5MiB", "central",
    "taylor", "input", "*", "conv1.*", "fc.weight", "[", "--eps",
]  # fmt: skip
VALUED = ["--eps", "--atol", "--rtol", "--only", "--sample", "--time-budget", "--method",
          "--seed", "--max-memory"]  # fmt: skip
FLAGS = ["--fast", "--strict-kinks", "--no-strict-kinks", "-q", "-v", "--no-color"]
command_lines = st.lists(
    st.tuples(st.sampled_from(VALUED), st.sampled_from(OPTION_VALUES)).map(list)
    | st.sampled_from(FLAGS).map(lambda f: [f])
    | st.tuples(st.sampled_from(["--json", "--junit"]), st.sampled_from(["-", "r.out"])).map(list),
    max_size=5,
).map(lambda parts: [a for part in parts for a in part])
COMMAND_EXAMPLES = 150


def fuzz_command_line(workdir: Path, config: str, args: list[str]) -> None:
    out = workdir / "out"
    out.mkdir(exist_ok=True)
    args = [str(out / a) if a == "r.out" else a for a in args]
    path = workdir / "configs" / config
    result = CliRunner().invoke(cli, ["run", str(path), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unhandled {result.exception!r}") from result.exception
    shown = f"\n--- gradcheck run {config} {' '.join(args)}: exit {result.exit_code}\n"
    assert result.exit_code in ALLOWED, shown + result.output[-3000:]
    assert "Traceback" not in result.output, shown + result.output[-3000:]
    event(f"exit {result.exit_code}")


@settings(max_examples=COMMAND_EXAMPLES, deadline=None)
@given(
    config=st.sampled_from(
        ["example_a.yaml", "example_d_batched.yaml", "examples/custom_layer/swish.yaml"]
    ),
    args=command_lines,
)
def test_random_command_lines(workdir, config, args):
    fuzz_command_line(workdir, config, args)


@pytest.mark.slow
@settings(max_examples=SLOW, deadline=None)
@given(
    config=st.sampled_from(["example_a.yaml", "example_d_stack.yaml", "example_c_dropout.yaml"]),
    args=command_lines,
)
def test_random_command_lines_slow(workdir, config, args):
    fuzz_command_line(workdir, config, args)


def test_the_fuzzers_start_from_configs_that_pass(workdir):
    """The mutations start from working configs, so a mutant's exit 2 means something."""
    assert len(SHIPPED) >= 5
    for source in SHIPPED:
        copied = workdir / source.relative_to(REPO)
        assert run_cli(copied)[0] == 0, source
