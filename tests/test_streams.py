"""Files and streams: what gradcheck writes, where, and how it stops.

- reports are written atomically (a temporary file beside the target, then os.replace),
  and no temporary file is left behind, whether the write succeeds or fails;
- a report path that cannot be written is refused (exit 2) before anything runs;
- gradcheck writes nothing it was not asked to: not beside the config, its arrays or its
  plugins (no ``__pycache__`` either), not in the working directory;
- ``--json -`` keeps stdout one JSON document, whatever a plugin prints;
- Ctrl-C stops a long check with exit 130 and the partial summary.

Everything runs through the real loader and engine, in-process (CliRunner) and in a real
process where the operating system's part matters (signals, bytecode files).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from installed import GRADCHECK

import gradcheck_cli.config  # noqa: F401 - registers the built-in types before any snapshot
from gradcheck_cli.cli import cli

REPO = Path(__file__).resolve().parent.parent
SWISH = REPO / "configs" / "examples" / "custom_layer" / "my_layers.py"

NET = """\
name: streams
plugins: [my_layers.py]
input: {file: data/x.npy}
layers:
  - {type: dense, name: fc1, weight: {file: data/w.npz, key: fc1}, bias: {file: data/b.npy}}
  - {type: swish, name: act, beta: 1.5}
  - {type: dense, name: fc2, out_features: 2}
loss: {type: mse, target: [0.5, -0.25]}
"""


pytestmark = pytest.mark.usefixtures("clean_registry")


@pytest.fixture
def project(tmp_path) -> Path:
    """A folder with a config that reads .npy and .npz arrays and a plugin."""
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(folder / "data" / "x.npy", rng.standard_normal(5))
    np.savez(folder / "data" / "w.npz", fc1=rng.standard_normal((4, 5)), other=np.ones(3))
    np.save(folder / "data" / "b.npy", rng.standard_normal(4))
    shutil.copy(SWISH, folder / "my_layers.py")
    (folder / "net.yaml").write_text(NET)
    return folder


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root: its kind, content hash, mtime and mode."""
    found: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        info = path.stat()
        if path.is_dir():
            found[str(path.relative_to(root))] = ("dir", info.st_mode)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[str(path.relative_to(root))] = (digest, info.st_mtime_ns, info.st_mode)
    return found


def invoke(*args: object):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"NO_COLOR": "1"})
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


def run_process(*args: object, cwd: Path, env: dict | None = None, **kwargs):
    env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    for name in ("PYTHONDONTWRITEBYTECODE", "GRADCHECK_DEBUG"):
        env.pop(name, None)
    return subprocess.run(
        [*GRADCHECK, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        **kwargs,
    )


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# --- atomic reports ----------------------------------------------------------------------


def test_reports_are_written_through_a_temporary_file_and_a_rename(project, monkeypatch):
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    out = project / "reports"
    out.mkdir()
    result = invoke("run", project / "net.yaml", "--json", out / "r.json", "--junit", out / "r.xml")
    assert result.exit_code == 0, result.output
    assert {dst.name for _, dst in renames} == {"r.json", "r.xml"}
    for src, dst in renames:
        assert src.parent == dst.parent and src != dst  # same folder: an atomic rename
        assert not src.exists()
    assert sorted(p.name for p in out.iterdir()) == ["r.json", "r.xml"]
    assert json.loads((out / "r.json").read_text())["passed"] is True


def test_a_failed_write_keeps_the_old_report_and_leaves_no_temporary_file(project, monkeypatch):
    out = project / "reports"
    out.mkdir()
    (out / "r.json").write_text("old report\n")

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    result = invoke("run", project / "net.yaml", "--json", out / "r.json")
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and "No space left on device" in result.stderr
    assert "Traceback" not in result.output
    assert (out / "r.json").read_text() == "old report\n"
    assert os.listdir(out) == ["r.json"]


# --- unwritable report paths, refused before anything runs -------------------------------

TOUCHING_PLUGIN = """\
import gradcheck_cli as gc

open({marker!r}, "w").close()  # proves that the config was read and its plugin imported


@gc.register_layer("same")
class Same(gc.Layer):
    def forward(self, x, params):
        return x, None

    def backward(self, dy, cache, params):
        return dy, {{}}
"""


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("missing/r.json", "does not exist"),
        ("a_file.txt/r.json", "does not exist"),
        (".", "is a folder"),
        ("net.yaml", "refusing to overwrite"),
        ("plugin.py", "refusing to overwrite"),
    ],
)
@pytest.mark.parametrize("option", ["--json", "--junit"])
def test_a_report_path_that_cannot_be_written_exits_2_before_anything_runs(
    tmp_path, monkeypatch, option, target, words
):
    marker = tmp_path / "plugin_ran"
    (tmp_path / "plugin.py").write_text(TOUCHING_PLUGIN.format(marker=str(marker)))
    (tmp_path / "a_file.txt").write_text("not a folder\n")
    config = tmp_path / "net.yaml"
    config.write_text(
        "plugins: [plugin.py]\ninput: [1.0, 2.0]\nlayers: [{type: same}]\n"
        "loss: {type: mse, target: [0, 0]}\n"
    )
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    result = invoke("run", config, option, target)
    assert result.exit_code == 2, result.output
    assert option in result.stderr and words in result.stderr
    assert "Traceback" not in result.output
    assert not marker.exists()  # refused before the config was even read
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_a_read_only_folder_exits_2_before_anything_runs(project, monkeypatch):
    import gradcheck_cli.engine

    locked = project / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permission bits: let the folder say no
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode)
        )

    def no_check(*args, **kwargs):
        raise AssertionError("the check ran before the report path was refused")

    monkeypatch.setattr(gradcheck_cli.engine, "run_check", no_check)
    try:
        result = invoke("run", project / "net.yaml", "--json", locked / "r.json")
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 2, result.output
    assert "--json" in result.stderr and "is not writable" in result.stderr
    assert not list(locked.iterdir())


# --- nothing written that was not asked for ----------------------------------------------


def test_an_in_process_run_writes_nothing_but_its_report(project, tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as in a plain Python
    before, cwd_before = snapshot(project), snapshot(elsewhere)
    assert invoke("run", project / "net.yaml").exit_code == 0
    assert snapshot(project) == before
    assert snapshot(elsewhere) == cwd_before
    assert sys.dont_write_bytecode is False  # restored after the plugin import

    assert invoke("run", project / "net.yaml", "--json", "report.json").exit_code == 0
    assert snapshot(project) == before
    assert sorted(snapshot(elsewhere)) == ["report.json"]


@pytest.mark.parametrize("cwd", ["project", "elsewhere"])
def test_a_real_process_writes_nothing_beside_the_config(project, tmp_path, cwd):
    """No __pycache__ beside the plugin, no stray files, inputs untouched."""
    folder = project if cwd == "project" else tmp_path / "elsewhere"
    folder.mkdir(exist_ok=True)
    before, cwd_before = snapshot(project), snapshot(folder)
    proc = run_process("run", project / "net.yaml", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(project) == before
    assert snapshot(folder) == cwd_before
    assert not list(project.rglob("__pycache__"))


def test_a_failing_config_writes_nothing_but_its_report(project):
    (project / "net.yaml").write_text(NET.replace("beta: 1.5", "beta: [1.5]"))
    before = snapshot(project)
    proc = run_process("run", project / "net.yaml", "--json", "-", cwd=project)
    assert proc.returncode == 2 and "layers[1].beta" in proc.stderr
    report = json.loads(proc.stdout)  # the report says why, so that none is stale
    assert report["passed"] is False and report["exit_code"] == 2
    assert report["error"]["kind"] == "config" and report["error"]["key"] == "layers[1].beta"
    assert snapshot(project) == before


# --- --json - keeps stdout clean ---------------------------------------------------------

NOISY_PLUGIN = """\
import numpy as np
import gradcheck_cli as gc

print("plugin imported")


@gc.register_layer("noisy")
class Noisy(gc.Layer):
    def forward(self, x, params):
        print("forward called with", x.shape)  # a student's debug print
        return {factor} * x, None

    def backward(self, dy, cache, params):
        print("backward called")
        return 3.0 * dy, {{}}
"""


@pytest.mark.parametrize(
    ("factor", "dtype", "code"),
    [("3.0", "float64", 0), ("3.1", "float64", 1), ("3.0", "float32", 0)],
    ids=["passing", "failing", "float32-warning"],
)
def test_json_to_stdout_is_pure_json_and_the_rest_goes_to_stderr(tmp_path, factor, dtype, code):
    (tmp_path / "noisy.py").write_text(NOISY_PLUGIN.format(factor=factor))
    (tmp_path / "net.yaml").write_text(
        f"dtype: {dtype}\nplugins: [noisy.py]\ninput: [1.0, -2.0, 0.5]\n"
        "layers: [{type: noisy, name: loud}, {type: tanh}]\nloss: {type: mse, target: [0, 0, 0]}\n"
    )
    proc = run_process("run", "net.yaml", "--json", "-", cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    report = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert report["schema"] == "gradcheck-report/1" and report["exit_code"] == code
    assert "forward called" in proc.stderr and "plugin imported" in proc.stderr
    assert ("PASS" if code == 0 else "FAIL") in proc.stderr  # the table went to stderr
    if dtype == "float32":
        assert "float32" in proc.stderr


@pytest.mark.parametrize("closed", [(1,), (2,), (0,), (0, 1, 2)])
def test_a_run_started_with_a_standard_stream_closed_exits_0_and_writes_its_report(project, closed):
    """``gradcheck run net.yaml --json r.json >&-``: /dev/null takes the closed stream's
    place (launch.standard_streams). Before, the first flush of the missing stdout
    raised: a traceback and exit 1, which means a gradient disagrees."""

    def close() -> None:
        for fd in closed:
            os.close(fd)

    done = run_process("run", "net.yaml", "--json", "r.json", cwd=project, preexec_fn=close)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads((project / "r.json").read_text())["exit_code"] == 0


def test_json_to_stdout_in_process(project):
    result = invoke("run", project / "net.yaml", "--json", "-")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["passed"] is True
    assert "PASS" in result.stderr


# --- Ctrl-C ------------------------------------------------------------------------------

SLOW_PLUGIN = """\
import time

import numpy as np
import gradcheck_cli as gc


@gc.register_layer("slow_scale")
class SlowScale(gc.Layer):
    \"\"\"y = x * mean(w), 2 ms per forward: the 1,000 weights take seconds to check.\"\"\"

    param_names = ("w",)

    def init_params(self, in_shape, rng):
        return {{"w": rng.uniform(0.5, 1.5, 1000)}}

    def forward(self, x, params):
        open({started!r}, "a").close()
        time.sleep(0.002)
        return x * params["w"].mean(), x

    def backward(self, dy, cache, params):
        dw = np.full(1000, (dy * cache).sum() / 1000)
        return dy * params["w"].mean(), {{"w": dw}}
"""


def test_ctrl_c_stops_a_long_check_with_exit_130_and_a_partial_summary(tmp_path):
    started = tmp_path / "started"
    (tmp_path / "slow.py").write_text(SLOW_PLUGIN.format(started=str(started)))
    (tmp_path / "net.yaml").write_text(
        textwrap.dedent(
            """\
            plugins: [slow.py]
            input: [0.5, -1.0, 2.0]
            layers:
              - {type: slow_scale, name: slow}
            loss: {type: mse, target: [0, 0, 0]}
            """
        )
    )
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("GRADCHECK_DEBUG", None)
    proc = subprocess.Popen(
        [*GRADCHECK, "run", "net.yaml", "--json", "partial.json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:  # the check has begun
            time.sleep(0.05)
        time.sleep(1.0)  # well into the 2,000 forward passes of slow.w (about 4 s)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert "interrupted" in err
    assert "INTERRUPTED (partial)" in out  # the summary of what was finished
    assert "input" in out  # the input was checked before slow.w
    report = json.loads((tmp_path / "partial.json").read_text())
    assert report["interrupted"] is True
    assert report["passed"] is False and report["exit_code"] == 130
    # the input was finished; slow.w was in progress, with the elements it finished
    assert [c["name"] for c in report["checks"]] == ["input", "slow.w"]
    slow = report["checks"][1]
    assert slow["mode"] == "interrupted" and 0 < slow["checked"] < 1000
    assert not temp_files(tmp_path)
