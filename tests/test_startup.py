"""Start-up (issue 14): what ``gradcheck`` imports and starts before it does any work.

``gradcheck run`` forks its worker right after importing numpy (gradcheck_cli/launch.py);
``--help``, ``--version`` and the other commands never import numpy, and a run that ends
before its check leaves no worker behind. Timings are measured in benchmarks, never here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from installed import GRADCHECK

from gradcheck_cli import launch, spares

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


def _spy(folder: Path, layers: str = "[{type: spy}]", values: int = 3) -> Path:
    """A config in ``folder`` whose plugin layer ``spy`` appends ``pid ppid argv[1:3]``
    to the file it returns, at each forward call."""
    log = folder / "calls"
    (folder / "spy.py").write_text(
        "import os, sys\nimport gradcheck_cli as gc\n\n"
        "@gc.register_layer('spy')\nclass Spy(gc.Layer):\n"
        "    def forward(self, x, params):\n"
        f"        with open({str(log)!r}, 'a') as f:\n"
        "            f.write(f\"{os.getpid()} {os.getppid()} {' '.join(sys.argv[1:3])}\\n\")\n"
        "        return x * 1.0, None\n\n"
        "    def backward(self, dy, cache, params):\n        return dy * 1.0, {}\n"
    )
    numbers = ", ".join(f"{0.01 * k - 1:.2f}" for k in range(values))
    (folder / "net.yaml").write_text(
        f"plugins: [spy.py]\ninput: [{numbers}]\nlayers: {layers}\n"
        f"loss: {{type: mse, target: [{', '.join(['0'] * values)}]}}\n"
    )
    return log


def _calls(log: Path) -> list[tuple[int, int, str]]:
    """(pid, ppid, argv) of each call the spy recorded."""
    rows = [line.split(" ", 2) for line in log.read_text().splitlines()]
    return [(int(pid), int(ppid), argv) for pid, ppid, argv in rows]


def test_a_run_checks_in_the_worker_forked_at_start_up(tmp_path):
    """The check runs in a process forked from the command (its sys.argv is the
    command's), not in a fresh interpreter (whose argv would be ``-c ...``)."""
    log = _spy(tmp_path, "[{type: tanh}, {type: spy}]")
    done = run("run", "net.yaml", "-q", "--jobs", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {argv for _, _, argv in _calls(log)} == {"run net.yaml"}
    assert len({pid for pid, _, _ in _calls(log)}) == 1


@pytest.mark.skipif(spares.wanted() < 1, reason="one core available: the worker forks no spare")
def test_helpers_are_spares_the_worker_forked_before_its_job(tmp_path):
    """``--jobs 2``: the helper that judges chunks beside the worker is a spare the
    worker forked (gradcheck_cli/spares.py): the worker's child, with the command's
    argv, not a fresh interpreter; and the report is the one ``--jobs 1`` gives."""
    log = _spy(tmp_path, values=300)
    eager = {"GRADCHECK_JOBS_EAGER": "1"}
    two = run("run", "net.yaml", "-q", "--jobs", "2", "--json", "2.json", cwd=tmp_path, env=eager)
    assert two.returncode == 0, two.stderr
    calls = _calls(log)
    pids = {pid for pid, _, _ in calls}
    assert len(pids) == 2, calls
    assert {argv for _, _, argv in calls} == {"run net.yaml"}
    worker = next(pid for pid, ppid, _ in calls if ppid not in pids)
    assert {(pid, ppid) for pid, ppid, _ in calls if pid != worker} == {
        (pid, worker) for pid in pids - {worker}
    }
    one = run("run", "net.yaml", "-q", "--jobs", "1", "--json", "1.json", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    reports = [json.loads((tmp_path / f"{n}.json").read_text()) for n in (1, 2)]
    for report in reports:
        report.pop("timing")
    assert reports[0] == reports[1]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_spares_nobody_takes_end_with_the_worker(tmp_path, jobs):
    """A spare the check never used (``--jobs 1``, or a check too small for helpers)
    is gone when the command returns."""
    (tmp_path / "net.yaml").write_text(NET)
    tag = uuid.uuid4().hex
    done = run("run", "net.yaml", "--jobs", jobs, cwd=tmp_path, env={"GRADCHECK_TEST_TAG": tag})
    assert done.returncode == 0, done.stderr
    assert not _tagged(tag)


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


class _Events:
    """What ``worker.execute`` sends, by kind."""

    def __init__(self):
        self.sent: dict[str, object] = {}

    def send(self, kind: str, payload: object) -> None:
        self.sent[kind] = payload


@pytest.mark.parametrize("explain", [True, False])
def test_the_worker_makes_the_explain_section_only_when_asked(tmp_path, explain):
    """The explain section (about 14 ms of a small check) is made only for a run that
    writes a report reading it; the verdicts are the same either way."""
    from gradcheck_cli.worker import Job, execute

    (tmp_path / "net.yaml").write_text(NET)
    events = _Events()
    execute(Job(str(tmp_path / "net.yaml"), {"jobs": 1}, explain=explain), events)
    report = events.sent["report"]
    assert report.passed and len(report.checks) == 1
    assert (report.explain is not None) is explain


@pytest.mark.parametrize(
    ("options", "explained"),
    [
        ((), False),
        (("--junit", "r.xml"), False),
        (("--json", "r.json"), True),
        (("--html", "r.html"), True),
        (("--junit", "r.xml", "--json", "-"), True),
    ],
)
def test_a_run_asks_for_the_explain_section_when_a_report_reads_it(options, explained, tmp_path):
    """JSON and HTML carry the explain section (``FormatSpec.reads_explain``); the
    table and JUnit do not, so a run writing neither leaves it out."""
    from click.testing import CliRunner

    import gradcheck_cli.cli.run as run_module
    from gradcheck_cli.cli import cli

    (tmp_path / "net.yaml").write_text(NET)
    asked = []
    original = run_module.Job

    def spy(*args, **kwargs):
        asked.append(kwargs.get("explain"))
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_module, "Job", spy)
        mp.chdir(tmp_path)
        mp.setenv("GRADCHECK_SUPERVISE", "0")
        result = CliRunner().invoke(cli, ["run", "net.yaml", "-q", *options])
    assert result.exit_code == 0, result.output
    assert asked == [explained]
    if "--json" in options and "-" not in options:
        assert json.loads((tmp_path / "r.json").read_text())["explain"] is not None


#: A run from Python, with a witness whose ``__del__`` only the interpreter's teardown
#: calls; ``{extra}`` is added before the run.
WITNESSED = """
import sys
from gradcheck_cli import launch

class Witness:
    def __del__(self):
        sys.stderr.write("torn down\\n")

witness = Witness()
{extra}
sys.argv = ["gradcheck", *sys.argv[1:]]
launch.main()
"""

#: A config whose loss has no target (exit 2, said on stderr).
NO_TARGET = "input: [0.5, -1.0, 2.0]\nlayers: [{type: tanh}]\nloss: {type: mse}\n"


def _witnessed(tmp_path, *args, extra: str = "") -> subprocess.CompletedProcess:
    script = tmp_path / "witnessed.py"
    script.write_text(WITNESSED.format(extra=extra))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADCHECK_")}
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env={**env, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("config", "code", "said"),
    [(NET, 0, "PASS: "), (NO_TARGET, 2, "net.yaml:3: loss.target")],
)
def test_a_supervised_run_ends_without_the_teardown_and_loses_nothing(tmp_path, config, code, said):
    """launch.exit_now: the exit code, stdout (a pipe: block-buffered until the flush),
    stderr and the JSON report are whole, and no teardown ran (the witness is silent)."""
    (tmp_path / "net.yaml").write_text(config)
    done = _witnessed(tmp_path, "run", "net.yaml", "--json", "r.json")
    assert done.returncode == code, done.stderr
    assert said in done.stdout + done.stderr
    assert "torn down" not in done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["exit_code"] == code


@pytest.mark.parametrize(
    "extra",
    [
        "import atexit; atexit.register(lambda: sys.stderr.write('at exit\\n'))",
        "import threading; threading.Thread(target=__import__('time').sleep, args=(3,)).start()",
    ],
)
def test_a_run_with_an_exit_handler_or_a_thread_ends_the_usual_way(tmp_path, extra):
    """Where something in the process may need the usual exit, it gets it."""
    (tmp_path / "net.yaml").write_text(NET)
    done = _witnessed(tmp_path, "run", "net.yaml", extra=extra)
    assert done.returncode == 0, done.stderr
    assert "PASS: " in done.stdout
    assert "torn down" in done.stderr
    assert ("at exit" in done.stderr) is ("atexit" in extra)
