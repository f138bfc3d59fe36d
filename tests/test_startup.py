"""Start-up (issue 14): what ``gradcheck`` imports and starts before it does any work.

``gradcheck run`` forks its worker right after importing numpy (gradcheck_cli/launch.py);
``--help``, ``--version`` and the other commands never import numpy, and a run that ends
before its check leaves no worker behind. Timings are measured in benchmarks, never here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from installed import GRADCHECK

from gradcheck_cli import launch

NET = "input: [0.5, -1.0, 2.0]\nlayers: [{type: tanh}]\nloss: {type: mse, target: [0, 0, 0]}\n"


def run(*args, cwd, env=None, **kwargs) -> subprocess.CompletedProcess:
    environment = {**os.environ, "NO_COLOR": "1", **(env or {})}
    environment.pop("GRADCHECK_SUPERVISE", None)
    return subprocess.run(
        [*GRADCHECK, *map(str, args)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        pytest.param(["-V"], marks=SLOW),
        pytest.param(["-h"], marks=SLOW),
        pytest.param(["init", "-"], marks=SLOW),
    ],
)
def test_these_commands_never_import_numpy(tmp_path, args):
    """``python -X importtime`` lists every module the process (and any process it forks)
    imports, on stderr."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gradcheck_cli", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "click" in imported  # the listing is there
    assert not [m for m in imported if m == "numpy" or m.startswith("numpy.")]


def test_a_run_checks_in_the_worker_forked_at_start_up(tmp_path):
    """The check runs in a process forked from the command (its sys.argv is the
    command's), not in a fresh interpreter (whose argv would be ``-c ...``)."""
    (tmp_path / "spy.py").write_text(
        "import os, sys\nimport gradcheck_cli as gc\n\n"
        "@gc.register_layer('spy')\nclass Spy(gc.Layer):\n"
        "    def forward(self, x, params):\n"
        f"        open({str(tmp_path / 'argv')!r}, 'w').write(' '.join(sys.argv[1:3]))\n"
        "        return x * 1.0, None\n\n"
        "    def backward(self, dy, cache, params):\n        return dy * 1.0, {}\n"
    )
    (tmp_path / "net.yaml").write_text(
        NET.replace("{type: tanh}", "{type: spy}").replace("input:", "plugins: [spy.py]\ninput:")
    )
    done = run("run", "net.yaml", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "argv").read_text() == "run net.yaml"


@pytest.mark.parametrize(
    "args",
    [
        ["run", "net.yaml", "--eps", "0"],  # refused by click
        pytest.param(["run", "missing.yaml"], marks=SLOW),  # no such config
        pytest.param(["run", "net.yaml", "--json", "net.yaml"], marks=SLOW),  # onto the config
    ],
)
def test_a_run_that_ends_before_its_check_leaves_no_worker(tmp_path, args):
    (tmp_path / "net.yaml").write_text(NET)
    tag = uuid.uuid4().hex
    done = run(*args, cwd=tmp_path, env={"GRADCHECK_TEST_TAG": tag})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert not _tagged(tag)


def _tagged(tag: str) -> list[int]:
    """Live processes whose environment holds ``tag``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            mine = f"GRADCHECK_TEST_TAG={tag}".encode() in (entry / "environ").read_bytes()
            if mine and (entry / "stat").read_text().split()[2] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        (["run", "net.yaml"], True),
        (["--debug", "run", "net.yaml", "--jobs", "2"], True),
        (["run", "net.yaml", "--help"], False),
        (["--version"], False),
        (["explain", "net.yaml"], False),
        (["layers"], False),
        ([], False),
    ],
)
def test_only_a_run_starts_a_worker_early(argv, starts, monkeypatch):
    monkeypatch.delenv(launch.SUPERVISE_ENV, raising=False)
    monkeypatch.delenv("_GRADCHECK_COMPLETE", raising=False)
    assert launch.starts_a_check(argv) is starts
    monkeypatch.setenv(launch.SUPERVISE_ENV, "0")
    assert launch.starts_a_check(argv) is False
