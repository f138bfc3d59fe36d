"""The sweep benchmark still runs (benchmarks/sweep.py, issue 14): its smoke network,
once, without torch. Nothing about its timings is asserted. It starts ten processes
(a few seconds), so it is marked slow: ``pytest -m slow tests/test_benchmarks.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SWEEP = Path(__file__).resolve().parent.parent / "benchmarks" / "sweep.py"


@pytest.mark.slow
def test_the_sweep_runs_on_its_smoke_network(tmp_path):
    out = tmp_path / "sweep.json"
    args = ["--networks", "tiny", "--repeats", "1", "--no-torch", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(SWEEP), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "| tiny MLP 8-4-3, batch 2 | 67 |" in done.stdout
    assert "torch columns skipped (--no-torch)" in done.stdout
    assert 'Start-up floor: `python -c "import numpy"` takes' in done.stdout
    results = json.loads(out.read_text())
    assert 0 < results["startup_floor_s"] < 60
    assert results["steal"] is None or 0 <= results["steal"] <= 1
    (row,) = results["rows"]
    assert row["full"]["exit"] == [0] and row["torch"] is None
    # 67 elements, two copies each at least, each through both dense layers
    assert row["work"]["copies"] >= 2 * 67 and row["work"]["flops"] > 0
    assert row["full"]["peak_mib"] > 10


@pytest.mark.slow
def test_the_ab_script_compares_a_tree_with_itself(tmp_path):
    """benchmarks/ab.py on the smoke network, this checkout against itself, once."""
    root = SWEEP.parent.parent
    done = subprocess.run(
        [sys.executable, str(SWEEP.parent / "ab.py"), str(root), str(root)]
        + ["--networks", "tiny", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tiny ") and "ratio " in done.stdout


def test_a_stopped_benchmark_kills_the_child_it_times(tmp_path):
    """SIGTERM to a benchmark script (``pkill -f sweep.py``) ends the child it is timing
    too: a torch gradcheck of minutes left running would sit under the next timings."""
    pidfile = tmp_path / "child.pid"
    sleeper = (
        f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    script = (
        f"import sys; sys.path.insert(0, {str(SWEEP.parent)!r}); import sweep\n"
        "sweep.stop_children_when_stopped()\n"
        f"sweep.run([sys.executable, '-c', {sleeper!r}], {str(tmp_path)!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None, "the child never started"
        time.sleep(0.05)
    child = int(pidfile.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):  # killed and reaped by the script
        os.kill(child, 0)


@pytest.mark.slow
def test_the_events_pipe_benchmark_runs_and_checks_what_arrives():
    script = SWEEP.parent / "events_pipe.py"
    done = subprocess.run(
        [sys.executable, str(script), "--networks", "tiny", "--repeats", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tiny ") and "ratio" in done.stdout
