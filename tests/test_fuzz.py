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
for the shipped configs; a fifth, report paths of every kind (a FIFO with and without a
reader, links to files and to FIFOs, folders, inputs, NUL characters), which must never
be replaced nor say passed unless the run exits 0; a sixth, plugins that misbehave
anywhere they run (exiting the process, crashing, hanging, writing to file descriptor 1,
changing folder), run through the real supervised command, which must end 0-3, within
its timeout, with a report on stdout that tells the truth.

The property is the issue's: no unhandled exception, an exit code in {0, 1, 2, 3}, and
no traceback in the output. Every run gets ``--sample 3 --max-memory 16MiB`` so that a
mutation that makes a network large is refused or sampled instead of taking minutes.
The default run draws 1,250 examples; ``pytest -m slow`` draws many more.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from installed import GRADCHECK

import gradcheck_cli.config  # noqa: F401 - registers the built-in types before any snapshot
from gradcheck_cli.cli import cli

REPO = Path(__file__).resolve().parent.parent
#: The worked examples and the custom-layer example (configs/bench holds benchmarks,
#: too slow to run a thousand times).
SHIPPED = sorted([*(REPO / "configs").glob("*.yaml"), *(REPO / "configs/examples").rglob("*.yaml")])
FAST_ARGS = ["--sample", "3", "--max-memory", "16MiB", "--no-color"]
ALLOWED = {0, 1, 2, 3}
PYTHON_WARNING = re.compile(r"\b\w*Warning: ")

#: Examples per test in the default run, and in ``pytest -m slow``.
TEXT_EXAMPLES, DOC_EXAMPLES, MUTATION_EXAMPLES = 60, 60, 80
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


pytestmark = pytest.mark.usefixtures("clean_registry")


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
          "--seed", "--max-memory", "--timeout"]  # fmt: skip
FLAGS = ["--fast", "--strict-kinks", "--no-strict-kinks", "-q", "-v", "--no-color"]
command_lines = st.lists(
    st.tuples(st.sampled_from(VALUED), st.sampled_from(OPTION_VALUES)).map(list)
    | st.sampled_from(FLAGS).map(lambda f: [f])
    | st.tuples(
        st.sampled_from(["--json", "--junit", "--html"]), st.sampled_from(["-", "r.out"])
    ).map(list),
    max_size=5,
).map(lambda parts: [a for part in parts for a in part])
COMMAND_EXAMPLES = 40


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


# --- report paths ------------------------------------------------------------------------

#: What a report path may name, each made in a fresh temporary folder.
TARGETS = [
    "new", "existing", "link_to_file", "dangling_link", "fifo_reader", "link_to_fifo",
    "fifo_no_reader", "folder", "missing_parent", "nul", "the_config", "a_yaml", "dash",
]  # fmt: skip
#: Kinds that can never take a report: the run must refuse them (exit 2).
REFUSED = {"fifo_no_reader", "folder", "missing_parent", "nul", "the_config", "a_yaml"}
PATH_EXAMPLES = 20
TINY = "input: [0.5, -1.0]\nlayers: [{type: tanh}]\nloss: {type: mse, target: [0, 0]}\n"


class Target:
    """One report path of a kind, and what must still hold of it afterwards."""

    def __init__(self, folder: Path, kind: str, name: str, config: Path):
        self.kind, self.fifo, self.reader = kind, None, None
        self.path = str(folder / name)
        self.data = b""
        if kind == "existing":
            Path(self.path).write_text("old\n")
        elif kind in ("link_to_file", "dangling_link"):
            target = folder / f"{name}.target"
            if kind == "link_to_file":
                target.write_text("old\n")
            os.symlink(target, self.path)
        elif kind in ("fifo_reader", "link_to_fifo", "fifo_no_reader"):
            self.fifo = folder / f"{name}.fifo"
            os.mkfifo(self.fifo)
            if kind == "link_to_fifo":
                os.symlink(self.fifo, self.path)
            else:
                self.path = str(self.fifo)
            if kind != "fifo_no_reader":
                self.reader = threading.Thread(target=self._read, daemon=True)
                self.reader.start()
        elif kind == "folder":
            os.mkdir(self.path)
        elif kind == "missing_parent":
            self.path = str(folder / "missing" / name)
        elif kind == "nul":
            self.path += "\0x"
        elif kind == "the_config":
            self.path = str(config)
        elif kind == "a_yaml":
            self.path = str(folder / "other.yaml")
            Path(self.path).write_text(TINY)
        elif kind == "dash":
            self.path = "-"
        self.before = self._state()

    def _read(self) -> None:
        with open(self.fifo, "rb") as f:
            self.data = f.read()

    def finish(self) -> None:
        if self.reader is not None and self.reader.is_alive():
            with contextlib.suppress(OSError):  # nobody wrote: end the reader's wait
                os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
            self.reader.join(timeout=5)

    def _state(self) -> tuple:
        """What must not change: a FIFO's or folder's kind and inode, a link's target,
        the text of a file the run reads."""
        if self.kind in ("fifo_reader", "fifo_no_reader", "folder", "link_to_fifo"):
            info = os.lstat(self.path)
            link = os.readlink(self.path) if stat.S_ISLNK(info.st_mode) else None
            return (stat.S_IFMT(info.st_mode), info.st_ino, link)
        if self.kind in ("link_to_file", "dangling_link"):
            return (os.readlink(self.path),)
        if self.kind in ("the_config", "a_yaml"):
            return (Path(self.path).read_text(),)
        return ()


@st.composite
def report_paths(draw) -> list[tuple[str, str]]:
    """One or two (option, target kind) pairs."""
    options = draw(
        st.sampled_from(
            [["--json"], ["--junit"], ["--html"], ["--json", "--junit"], ["--json", "--html"]]
        )
    )
    return [(option, draw(st.sampled_from(TARGETS))) for option in options]


def fuzz_report_paths(workdir: Path, chosen: list[tuple[str, str]]) -> None:
    import tempfile

    import gradcheck_cli.cli.io as io_module

    folder = Path(tempfile.mkdtemp(dir=workdir))
    config = folder / "net.yaml"
    config.write_text(TINY)
    targets = [Target(folder, kind, f"r{k}", config) for k, (_, kind) in enumerate(chosen)]
    args = [a for (option, _), t in zip(chosen, targets, strict=True) for a in (option, t.path)]
    wait, io_module.FIFO_WAIT = io_module.FIFO_WAIT, 0.1
    try:
        result = CliRunner().invoke(cli, ["run", str(config), "-q", *args])
    finally:
        io_module.FIFO_WAIT = wait
        for t in targets:
            t.finish()
    shown = f"\n--- {chosen}: exit {result.exit_code}\n{result.output[-2000:]}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unhandled {result.exception!r}{shown}") from result.exception
    assert result.exit_code in {0, 2}, shown
    assert "Traceback" not in result.output, shown
    if any(t.kind in REFUSED for t in targets):
        assert result.exit_code == 2, shown
    for t in targets:
        assert t._state() == t.before, f"{t.kind} changed{shown}"
        written = t.data if t.reader is not None else None
        if t.kind in ("new", "existing", "link_to_file", "dangling_link") and result.exit_code == 0:
            written = Path(t.path).read_bytes()
        if written and written.lstrip().startswith(b"{"):
            report = json.loads(written)
            assert report["passed"] is (result.exit_code == 0), shown
        if written and written.startswith(b"<!DOCTYPE html>"):  # says the run's exit code
            assert f'data-exit-code="{result.exit_code}"'.encode() in written, shown
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")], shown
    event(f"exit {result.exit_code}")


@settings(max_examples=PATH_EXAMPLES, deadline=None)
@given(chosen=report_paths())
def test_random_report_paths(workdir, chosen):
    fuzz_report_paths(workdir, chosen)


@pytest.mark.slow
@settings(max_examples=SLOW // 10, deadline=None)
@given(chosen=report_paths())
def test_random_report_paths_slow(workdir, chosen):
    fuzz_report_paths(workdir, chosen)


# --- hostile plugins ---------------------------------------------------------------------

#: Where a plugin's code runs, and what it may do there.
SITES = ["import", "__init__", "output_shape", "forward", "backward"]
BEHAVIOURS = {
    "returns": "pass",
    "raises": "raise ValueError('no')",
    "sys.exit(0)": "sys.exit(0)",
    "sys.exit(3)": "sys.exit(3)",
    "os._exit(0)": "os._exit(0)",
    "os._exit(1)": "os._exit(1)",
    "SIGKILL": "os.kill(os.getpid(), signal.SIGKILL)",
    "SIGSEGV": "ctypes.string_at(0)",
    "hangs": "time.sleep(600)",
    "spins": "while True: pass",
    "prints": "print('noise'); sys.stdout.flush()",
    "writes fd 1": "os.write(1, b'noise on fd 1')",
    "closes fd 1": "os.close(1)",
    "changes folder": "os.chdir('/')",
    "alarm": "signal.alarm(1)",
}
#: Behaviours after which no verdict is possible: the run must end 3.
NO_VERDICT = {"os._exit(0)", "os._exit(1)", "SIGKILL", "SIGSEGV", "hangs", "spins"}
HOSTILE_EXAMPLES = 3
HOSTILE_TIMEOUT = 1.0
HOSTILE_PLUGIN = """\
import ctypes, os, signal, sys, time
import numpy as np
import gradcheck_cli as gc

def act(site):
    if site == {site!r}:
        {code}

act("import")


@gc.register_layer("hostile")
class Hostile(gc.Layer):
    def __init__(self):
        act("__init__")

    def output_shape(self, in_shape):
        act("output_shape")
        return in_shape

    def forward(self, x, params):
        act("forward")
        return np.tanh(x), x

    def backward(self, dy, x, params):
        act("backward")
        return dy * (1 - np.tanh(x) ** 2), {{}}
"""


def fuzz_hostile(workdir: Path, site: str, behaviour: str) -> None:
    import subprocess
    import tempfile
    import time

    folder = Path(tempfile.mkdtemp(dir=workdir))
    (folder / "hostile.py").write_text(HOSTILE_PLUGIN.format(site=site, code=BEHAVIOURS[behaviour]))
    (folder / "net.yaml").write_text(
        "plugins: [hostile.py]\ninput: [0.5, -1.0]\nlayers: [{type: hostile, name: evil}]\n"
        "loss: {type: mse, target: [0, 0]}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADCHECK_")}
    started = time.monotonic()
    proc = subprocess.run(
        [*GRADCHECK, "run", "net.yaml", "--json", "-", "--timeout", str(HOSTILE_TIMEOUT)],
        cwd=folder,
        env={**env, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=HOSTILE_TIMEOUT + 60,
    )
    elapsed = time.monotonic() - started
    shown = f"\n--- {behaviour} in {site}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.returncode in ALLOWED, shown
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, shown
    if behaviour in NO_VERDICT:
        assert proc.returncode == 3, shown
    report = json.loads(proc.stdout)  # stdout is the report alone, whatever the plugin did
    assert report["exit_code"] == proc.returncode, shown
    assert report["passed"] is (proc.returncode == 0), shown
    assert elapsed < HOSTILE_TIMEOUT + 30, shown  # the timeout, the grace, a slow start-up
    event(f"exit {proc.returncode}")


@settings(max_examples=HOSTILE_EXAMPLES, deadline=None)
@given(site=st.sampled_from(SITES), behaviour=st.sampled_from(sorted(BEHAVIOURS)))
def test_hostile_plugins(workdir, site, behaviour):
    fuzz_hostile(workdir, site, behaviour)


@pytest.mark.slow
@settings(max_examples=len(SITES) * len(BEHAVIOURS), deadline=None)
@given(site=st.sampled_from(SITES), behaviour=st.sampled_from(sorted(BEHAVIOURS)))
def test_hostile_plugins_slow(workdir, site, behaviour):
    fuzz_hostile(workdir, site, behaviour)
