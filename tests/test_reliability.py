"""Never destroy, never hang, never green by accident (issue 12).

Every class of input a new user found to destroy a file, hang, or end green:

- report paths that are not regular files (a FIFO, a link to one, a device-like
  reader) are written in place and never replaced; a link to a regular file keeps
  pointing at it; a failed write is exit 2, and no report then says passed;
- outputs never replace what a command reads (``schema -o`` a plugin, a config);
- every ending writes its reports: exit 2, 3 and 4 hold ``error``; Ctrl-C and SIGTERM
  write ``interrupted`` with ``passed: false``;
- user code is supervised: a timeout, a process that exits, crashes or is killed, a
  plugin writing to file descriptor 1 or changing folder;
- limits and refusals up front: FIFOs as configs and arrays, oversized YAML;
- text hygiene: escapes in names, COLUMNS nonsense, [markup] in names;
- the time budget holds.

Special files are made in a temporary folder, never at system paths; every test that
stops, kills or times out a run does so within a bounded time.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from _report_factory import failing_report, passing_report, tiny_problem
from click.testing import CliRunner
from installed import GRADCHECK

import gradcheck_cli as gc
import gradcheck_cli.cli.io as io_module
import gradcheck_cli.cli.run as run_module
import gradcheck_cli.config  # noqa: F401 - registers the built-in types before any snapshot
from gradcheck_cli.cli import cli
from gradcheck_cli.errors import ConfigError, ConfigIssue, NumericalError
from gradcheck_cli.supervise import GRACE

NET = "input: [0.5, -1.0, 2.0]\nlayers: [{type: tanh}]\nloss: {type: mse, target: [0, 0, 0]}\n"

#: A plugin whose behaviour the environment variable HOSTILE chooses, for real processes.
HOSTILE = """\
import os, subprocess, sys, time
import numpy as np
import gradcheck_cli as gc

MODE = os.environ.get("HOSTILE", "")
MARK = {mark!r}


@gc.register_layer("hostile")
class Hostile(gc.Layer):
    param_names = ("w",)

    def init_params(self, in_shape, rng):
        return {{"w": rng.uniform(0.5, 1.5, 200)}}

    def forward(self, x, params):
        if MODE and not os.path.exists(MARK):
            with open(MARK, "w") as f:
                f.write(str(os.getpid()))
        if MODE == "hang":
            while True:
                time.sleep(0.05)
        if MODE == "orphan":
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            with open(MARK + ".child", "w") as f:
                f.write(str(child.pid))
            while True:
                time.sleep(0.05)
        if MODE == "slow":
            time.sleep(0.003)
        if MODE == "fd1":
            os.write(1, b"written to file descriptor 1\\n")
            print("printed to sys.stdout")
        if MODE == "chdir":
            os.chdir({elsewhere!r})
        return x * params["w"].mean(), x

    def backward(self, dy, cache, params):
        return dy * params["w"].mean(), {{"w": np.full(200, (dy * cache).sum() / 200)}}
"""


pytestmark = pytest.mark.usefixtures("clean_registry")


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(NET)
    return path


@pytest.fixture
def hostile(tmp_path) -> Path:
    """A folder with net.yaml using the HOSTILE plugin; ``mark`` records its pid."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "hostile.py").write_text(
        HOSTILE.format(mark=str(tmp_path / "mark"), elsewhere=str(tmp_path / "elsewhere"))
    )
    (tmp_path / "net.yaml").write_text(
        "plugins: [hostile.py]\ninput: [0.5, -1.0, 2.0]\n"
        "layers: [{type: hostile, name: evil}]\nloss: {type: mse, target: [0, 0, 0]}\n"
    )
    return tmp_path


def invoke(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"NO_COLOR": "1", **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def process(*args, cwd, mode="", env=None, **kwargs) -> subprocess.Popen:
    environment = {**os.environ, "NO_COLOR": "1", "HOSTILE": mode, **(env or {})}
    for name in ("GRADCHECK_DEBUG", "GRADCHECK_SUPERVISE"):
        environment.pop(name, None)
    return subprocess.Popen(
        [*GRADCHECK, *map(str, args)],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def run(*args, cwd, mode="", timeout=60, **kwargs) -> subprocess.CompletedProcess:
    proc = process(*args, cwd=cwd, mode=mode, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class FifoReader:
    """A FIFO in a temporary folder with a reader waiting on it (what ``cat fifo`` or
    /dev/null do): ``data`` is what reached it."""

    def __init__(self, path: Path):
        self.path = path
        os.mkfifo(path)
        self.inode = path.stat().st_ino
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as f:
            self.data = f.read()

    def close(self) -> bytes:
        if self.thread.is_alive():  # nobody wrote: give the reader its end of file
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        self.thread.join(timeout=5)
        return self.data

    def intact(self) -> bool:
        info = self.path.lstat()
        return stat.S_ISFIFO(info.st_mode) and info.st_ino == self.inode


@pytest.fixture
def fake_engine(monkeypatch):
    """The CLI with its loader and engine faked; ``outcome`` chooses how the check ends."""

    class Fake:
        def __init__(self):
            self.outcome: object = passing_report

        def load(self, path, seed=None):
            if isinstance(self.outcome, ConfigError):
                raise self.outcome
            return tiny_problem(path)

        def check(self, problem, progress):
            if isinstance(self.outcome, BaseException):
                raise self.outcome
            return self.outcome()

    fake = Fake()
    monkeypatch.setattr(run_module, "_load_problem", fake.load)
    monkeypatch.setattr(run_module, "_run_check", fake.check)
    return fake


# --- report paths that are not regular files -------------------------------------------


def test_a_fifo_with_a_reader_is_written_in_place_and_stays_a_fifo(tmp_path, config):
    fifo = FifoReader(tmp_path / "report.fifo")
    result = invoke("run", config, "--json", fifo.path)
    data = fifo.close()
    assert result.exit_code == 0, result.output
    assert json.loads(data)["passed"] is True
    assert fifo.intact()


def test_links_are_kept_and_what_they_name_is_written(tmp_path, config):
    fifo = FifoReader(tmp_path / "report.fifo")
    to_fifo = tmp_path / "to_fifo.json"
    to_fifo.symlink_to(fifo.path)
    regular = tmp_path / "reports" / "r.xml"
    regular.parent.mkdir()
    regular.write_text("old")
    to_regular = tmp_path / "latest.xml"
    to_regular.symlink_to(regular)
    result = invoke("run", config, "--json", to_fifo, "--junit", to_regular)
    data = fifo.close()
    assert result.exit_code == 0, result.output
    assert json.loads(data)["exit_code"] == 0 and fifo.intact()
    assert to_fifo.is_symlink() and to_regular.is_symlink()
    assert os.readlink(to_regular) == str(regular)
    assert ET.fromstring(regular.read_text()).tag == "testsuites"


def test_a_fifo_nobody_reads_is_an_error_not_a_hang(tmp_path, config, monkeypatch):
    monkeypatch.setattr(io_module, "FIFO_WAIT", 0.2)
    fifo = tmp_path / "nobody.fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    result = invoke("run", config, "--json", fifo)
    assert time.monotonic() - started < 10
    assert result.exit_code == 2
    assert "no process opened the FIFO for reading" in result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_no_space_left_is_an_error_and_no_report_says_passed(tmp_path, config, monkeypatch):
    """What /dev/full does, on a FIFO in a temporary folder: every write fails ENOSPC."""
    fifo = FifoReader(tmp_path / "full.fifo")
    real_write = os.write

    def full(fd, data):
        if os.fstat(fd).st_ino == fifo.inode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    report = tmp_path / "r.json"
    result = invoke("run", config, "--junit", fifo.path, "--json", report)
    fifo.close()
    assert result.exit_code == 2
    assert "cannot write --junit" in result.stderr and "No space left on device" in result.stderr
    written = json.loads(report.read_text())  # written after the failure: it says so
    assert written["passed"] is False and written["exit_code"] == 2
    assert written["error"]["kind"] == "report" and "No space left" in written["error"]["message"]
    assert fifo.intact()
    # nor does the table: its verdict line names the error, never PASS
    (verdict,) = [line for line in result.stdout.splitlines() if "elements checked" in line]
    assert verdict.startswith("ERROR") and "PASS" not in verdict


def test_a_link_to_this_process_stdout_gets_the_json_and_stays_a_link(tmp_path, config):
    """``--json /dev/stdout``, made in a temporary folder: a link to /proc/self/fd/1."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    proc = run("run", config, "--json", link, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"] is True  # stdout is the JSON alone
    assert "PASS" in proc.stderr  # the table moved to stderr
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"


# --- outputs never replace what a command reads ------------------------------------------


def test_schema_output_never_replaces_its_plugin_or_a_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plugin = tmp_path / "my_layers.py"
    plugin.write_text(
        "import gradcheck_cli as gc\n\n@gc.register_layer('noop')\nclass N(gc.Layer):\n    pass\n"
    )
    before = plugin.read_text()
    result = invoke("schema", "--plugin", "my_layers.py", "-o", "my_layers.py")
    assert result.exit_code == 2 and "refusing to overwrite a --plugin file" in result.stderr
    assert plugin.read_text() == before
    good = tmp_path / "good.yaml"
    good.write_text(NET)
    result = invoke("schema", "-o", good)
    assert result.exit_code == 2 and "use --force" in result.stderr
    assert good.read_text() == NET
    assert invoke("schema", "-o", good, "--force").exit_code == 0
    assert json.loads(good.read_text())["$schema"].startswith("https://json-schema.org")


def test_init_refuses_what_exists_and_names_no_traceback(tmp_path):
    existing = tmp_path / "net.yaml"
    existing.write_text(NET)
    result = invoke("init", existing)
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert existing.read_text() == NET
    assert invoke("init", str(tmp_path / "a\0b.yaml")).exit_code == 2


def test_a_report_onto_an_array_the_config_reads_is_refused_and_the_other_says_so(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(3.0))
    (tmp_path / "x.npy").rename(tmp_path / "inputs.dat")  # no suffix gives it away
    before = (tmp_path / "inputs.dat").read_bytes()
    config = tmp_path / "net.yaml"
    config.write_text(NET.replace("[0.5, -1.0, 2.0]", "{file: inputs.dat}"))
    result = invoke(
        "run", config, "--junit", tmp_path / "inputs.dat", "--json", tmp_path / "r.json"
    )
    assert result.exit_code == 2 and "refusing to overwrite an input" in result.stderr
    assert (tmp_path / "inputs.dat").read_bytes() == before
    assert json.loads((tmp_path / "r.json").read_text())["error"]["kind"] == "usage"


# --- every ending writes honest reports --------------------------------------------------

ENDINGS = {
    "passed": (passing_report, 0, None),
    "failed": (failing_report, 1, None),
    "config error": (
        ConfigError(ConfigIssue("net.yaml", 3, "layers[0].stride", "must be >= 1")),
        2,
        "config",
    ),
    "numerical error": (NumericalError("the loss is NaN"), 3, "numerical"),
    "internal error": (ZeroDivisionError("a bug"), 4, "internal"),
    "Ctrl-C": (KeyboardInterrupt(), 130, None),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_every_ending_writes_reports_that_say_passed_only_on_exit_0(
    fake_engine, config, tmp_path, ending
):
    fake_engine.outcome, code, kind = ENDINGS[ending]
    (tmp_path / "r.json").write_text('{"passed": true, "exit_code": 0}')  # a stale report
    (tmp_path / "r.xml").write_text("<testsuites tests='0' failures='0'/>")
    result = invoke("run", config, "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml")
    assert result.exit_code == code, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_code"] == code
    assert report["passed"] is (code == 0)
    assert (report["error"] or {}).get("kind") == kind
    suite = ET.parse(tmp_path / "r.xml").getroot()
    green = suite.get("failures") == "0" and suite.get("errors") == "0"
    assert green is (code == 0)


def test_a_reader_leaving_early_exits_141_and_the_report_says_so(
    fake_engine, config, tmp_path, monkeypatch
):
    def reader_left(*args, **kwargs):
        raise BrokenPipeError

    monkeypatch.setattr(run_module, "_print_report", reader_left)
    monkeypatch.setattr("gradcheck_cli.cli._silence_stdout", lambda: None)
    result = invoke("run", config, "--json", tmp_path / "r.json")
    assert result.exit_code == 141, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_code"] == 141 and report["passed"] is False
    assert report["error"]["kind"] == "output"


def test_a_config_error_report_names_file_line_and_key(fake_engine, config, tmp_path):
    fake_engine.outcome = ENDINGS["config error"][0]
    invoke("run", config, "--json", tmp_path / "r.json")
    error = json.loads((tmp_path / "r.json").read_text())["error"]
    assert error == {
        "kind": "config",
        "message": "net.yaml:3: layers[0].stride: must be >= 1",
        "file": "net.yaml",
        "line": 3,
        "key": "layers[0].stride",
    }


def test_an_empty_report_path_is_refused_not_skipped(config, tmp_path):
    result = invoke("run", config, "--json", "", "--junit", tmp_path / "r.xml")
    assert result.exit_code == 2 and "--json" in result.stderr and "empty" in result.stderr
    assert ET.parse(tmp_path / "r.xml").getroot().get("errors") == "1"


def test_a_refused_command_line_still_writes_its_reports(config, tmp_path):
    (tmp_path / "r.json").write_text('{"passed": true, "exit_code": 0}')
    result = invoke("run", config, "--eps", "0", "--json", tmp_path / "r.json")
    assert result.exit_code == 2
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] is False and report["error"]["kind"] == "usage"
    assert "--eps" in report["error"]["message"]


# --- supervised user code -----------------------------------------------------------------


def test_a_hung_plugin_is_stopped_by_the_timeout_naming_the_layer(hostile):
    started = time.monotonic()
    # (the timeout counts from the start: it must leave the worker time to reach forward)
    proc = run("run", "net.yaml", "--timeout", "1.5", "--json", "r.json", cwd=hostile, mode="hang")
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr
    line = "timed out after 1.5 s while layer 'evil' was running forward"
    assert line in proc.stderr and "Traceback" not in proc.stderr
    assert elapsed < 1.5 + GRACE + 10  # the command's own start-up on a loaded machine
    report = json.loads((hostile / "r.json").read_text())
    assert report["passed"] is False and report["error"]["kind"] == "timeout"
    assert line in report["error"]["message"]


def test_sigterm_writes_the_partial_report_and_exits_143(hostile):
    proc = process("run", "net.yaml", "--json", "r.json", cwd=hostile, mode="slow")
    try:
        deadline = time.monotonic() + 60
        while not (hostile / "mark").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.0)  # well into hostile.w (200 elements, 3 ms a forward): a partial tensor
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    report = json.loads((hostile / "r.json").read_text())
    assert report["interrupted"] is True and report["passed"] is False
    assert report["exit_code"] == 143
    assert report["checks"] and report["checks"][-1]["mode"] == "interrupted"


def test_file_descriptor_1_cannot_reach_a_report_on_stdout(hostile):
    proc = run("run", "net.yaml", "--json", "-", cwd=hostile, mode="fd1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["passed"] is True
    assert "written to file descriptor 1" in proc.stderr and "printed to sys.stdout" in proc.stderr


def test_file_descriptor_1_is_redirected_in_process_too(hostile, monkeypatch, capfd):
    monkeypatch.chdir(hostile)
    monkeypatch.setenv("HOSTILE", "fd1")
    result = invoke("run", "net.yaml", "--json", "-")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["passed"] is True
    captured = capfd.readouterr()
    assert "written to file descriptor 1" not in captured.out
    assert "written to file descriptor 1" in captured.err


@pytest.mark.parametrize("supervised", [pytest.param("1", marks=pytest.mark.slow), "0"])
def test_a_plugin_that_changes_folder_cannot_move_a_report(hostile, supervised):
    proc = run(
        "run",
        "net.yaml",
        "--json",
        "report.json",
        cwd=hostile,
        mode="chdir",
        env={"GRADCHECK_SUPERVISE": supervised},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((hostile / "report.json").read_text())["passed"] is True
    assert not (hostile / "elsewhere" / "report.json").exists()


def test_a_bug_in_the_worker_is_an_internal_error_with_its_traceback(tmp_path):
    """A plugin plants a bug in the engine inside the worker: exit 4, one line, and the
    worker's traceback with --debug."""
    (tmp_path / "bug.py").write_text(
        "import gradcheck_cli as gc\nimport gradcheck_cli.engine.check as check\n\n"
        "def boom(*args, **kwargs):\n    raise ZeroDivisionError('engine bug')\n\n"
        "check.compare_expectations = boom\n\n"
        "@gc.register_layer('same')\nclass Same(gc.Layer):\n"
        "    def forward(self, x, params):\n        return x * 1.0, None\n\n"
        "    def backward(self, dy, cache, params):\n        return dy * 1.0, {}\n"
    )
    (tmp_path / "net.yaml").write_text(
        NET.replace("{type: tanh}", "{type: same}").replace("input:", "plugins: [bug.py]\ninput:")
    )
    proc = run("run", "net.yaml", "--debug", "--json", "r.json", cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "internal error (ZeroDivisionError: engine bug)" in proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr and "boom" in proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_code"] == 4 and report["error"]["kind"] == "internal"


def test_a_timeout_in_process_stops_python_code(hostile, monkeypatch):
    monkeypatch.chdir(hostile)
    monkeypatch.setenv("HOSTILE", "hang")
    started = time.monotonic()
    result = invoke("run", "net.yaml", "--timeout", "0.3")
    assert time.monotonic() - started < 10
    assert result.exit_code == 3
    assert "timed out after 0.3 s while layer 'evil' was running forward" in result.stderr


def test_the_python_api_keeps_a_timeout_too(hostile, monkeypatch):
    monkeypatch.chdir(hostile)
    monkeypatch.setenv("HOSTILE", "hang")
    with pytest.raises(gc.CheckTimedOut, match="layer 'evil' was running forward"):
        gc.check(hostile / "net.yaml", timeout=0.3)


@pytest.mark.slow
def test_a_timeout_also_ends_what_the_plugin_started(hostile):
    proc = run("run", "net.yaml", "--timeout", "1", cwd=hostile, mode="orphan")
    assert proc.returncode == 3, proc.stderr
    child = int((hostile / "mark.child").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


@pytest.mark.slow
def test_the_worker_ends_when_the_command_is_killed(hostile):
    proc = process("run", "net.yaml", cwd=hostile, mode="hang")
    try:
        deadline = time.monotonic() + 60
        while not (hostile / "mark").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        worker = int((hostile / "mark").read_text())
        proc.kill()  # SIGKILL: no handler of the command runs
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker)
    finally:
        proc.kill()


@pytest.mark.slow
def test_a_child_the_plugin_forks_neither_holds_up_the_run_nor_outlives_it(tmp_path):
    (tmp_path / "forker.py").write_text(
        "import os, time\nimport gradcheck_cli as gc\n\n"
        "@gc.register_layer('forker')\nclass Forker(gc.Layer):\n    done = False\n\n"
        "    def forward(self, x, params):\n        if not Forker.done:\n"
        "            Forker.done = True\n            pid = os.fork()\n"
        "            if pid == 0:  # keeps every descriptor of the worker open\n"
        "                time.sleep(30)\n                os._exit(0)\n"
        f"            open({str(tmp_path / 'child')!r}, 'w').write(str(pid))\n"
        "        return x * 1.0, None\n\n"
        "    def backward(self, dy, cache, params):\n        return dy * 1.0, {}\n"
    )
    (tmp_path / "net.yaml").write_text(
        NET.replace("{type: tanh}", "{type: forker}").replace(
            "input:", "plugins: [forker.py]\ninput:"
        )
    )
    started = time.monotonic()
    proc = run("run", "net.yaml", "-q", cwd=tmp_path, timeout=25)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 20
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# --- refused up front ---------------------------------------------------------------------


def test_a_fifo_config_and_a_fifo_array_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "net.yaml"
    os.mkfifo(fifo)
    result = invoke("run", fifo)
    assert result.exit_code == 2 and "is a FIFO (named pipe), not a regular file" in result.stderr
    link = tmp_path / "link.yaml"
    link.symlink_to(fifo)
    assert invoke("run", link).exit_code == 2
    os.mkfifo(tmp_path / "x.npy")
    config = tmp_path / "arrays.yaml"
    config.write_text(NET.replace("[0.5, -1.0, 2.0]", "{file: x.npy}"))
    result = invoke("run", config)
    assert result.exit_code == 2 and "input.file" in result.stderr and "FIFO" in result.stderr


def test_a_yaml_over_the_limit_is_refused_before_it_is_read(tmp_path):
    from gradcheck_cli.config.files import MAX_CONFIG_BYTES

    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: nothing to read, only its size
    started = time.monotonic()
    result = invoke("run", big)
    assert time.monotonic() - started < 5
    assert result.exit_code == 2 and "limited to 8 MiB" in result.stderr


# --- text hygiene -------------------------------------------------------------------------


@pytest.mark.parametrize("columns", ["0", "-5", "wide", "3", "99999999"])
def test_columns_nonsense_falls_back_to_80(fake_engine, config, columns):
    fake_engine.outcome = failing_report
    result = invoke("run", config, env={"COLUMNS": columns})
    assert result.exit_code == 1
    assert "FAIL: 2 of 3 tensors disagree" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 200


def test_escapes_and_markup_from_a_config_are_shown_not_obeyed(tmp_path):
    config = tmp_path / "net.yaml"
    config.write_text(
        'name: "\\e[2J\\e[Htitle"\ninput: [0.5, -1.0]\n'
        'layers: [{type: dense, name: "[/x]\\e[31mfc\\r", out_features: 2}]\n'
        "loss: {type: mse, target: [0, 0]}\n"
    )
    result = invoke("run", config, "-v", "--junit", tmp_path / "r.xml")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\\x1b[2J" in result.output
    assert "[/x]\\x1b[31mfc" in result.output  # [markup] is text
    xml = (tmp_path / "r.xml").read_text()
    assert "\x1b" not in xml and "\\x1b[31mfc" in ET.fromstring(xml).find(".//testcase[2]").get(
        "name"
    )
    explained = invoke("explain", config)
    assert explained.exit_code == 0 and "\x1b" not in explained.output


def test_an_error_message_escapes_what_the_config_wrote(tmp_path):
    config = tmp_path / "net.yaml"
    config.write_text(NET + '"\\e]0;owned\\a": 1\n')
    result = invoke("run", config)
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr and "\\x1b]0;owned\\x07" in result.stderr


# --- the time budget ----------------------------------------------------------------------

SLOW_LAYER = """\
import time
import numpy as np
import gradcheck_cli as gc


@gc.register_layer("slow_dense")
class SlowDense(gc.Layer):
    param_names = ("w",)

    def output_shape(self, in_shape):
        return (4,)

    def init_params(self, in_shape, rng):
        return {"w": rng.standard_normal((4, in_shape[0]))}

    def forward(self, x, params):
        time.sleep(0.05)
        return x @ params["w"].T, x

    def backward(self, dy, x, params):
        return dy @ params["w"], {"w": dy.T @ x}
"""


def test_the_time_budget_holds_with_slow_forwards(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_LAYER)
    config = tmp_path / "net.yaml"
    config.write_text(
        "plugins: [slow.py]\ninput: {shape: [6]}\n"
        "layers: [{type: slow_dense, name: a}, {type: tanh}, {type: slow_dense, name: b}]\n"
        "loss: {type: mse, target: [0, 0, 0, 0]}\n"
    )
    budget, forward = 1.0, 2 * 0.05
    started = time.perf_counter()
    try:
        report = gc.check(config, time_budget=budget)
    except gc.GradcheckError as e:  # pragma: no cover - shown if the check itself failed
        raise AssertionError(e) from e
    elapsed = time.perf_counter() - started
    assert elapsed <= 1.5 * budget + forward, elapsed
    if report.error is not None:  # the budget reached nothing of some tensor: exit 3
        assert report.exit_code == 3 and not report.passed
        assert "ran out before any element of" in report.error.message
    else:
        assert report.exit_code == 0 and all(c.checked for c in report.checks)


def test_a_tensor_the_budget_never_reached_is_never_green():
    from gradcheck_cli.engine.budget import unreached
    from gradcheck_cli.render.table import status_cell
    from gradcheck_cli.report import Report, TensorCheck

    report = Report(config="x.yaml", loss=0.0, settings={})
    report.checks.append(TensorCheck.unchecked("fc.weight", np.ones((2, 2)), "budget"))
    report.error = unreached(report, 2.0)
    assert report.exit_code == 3 and not report.passed
    assert "fc.weight" in report.error.message
    # nor is the tensor itself: never PASS in the table, the HTML or the JSON (a hunt saw
    # PASS beside "0 of 120 (time budget)")
    (check,) = report.checks
    assert not check.passed and check.unreached
    assert status_cell(check).plain == "NOT CHECKED"
    assert json.loads(report.to_json())["checks"][0]["passed"] is False
