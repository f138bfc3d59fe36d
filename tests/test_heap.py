"""gradcheck_cli/heap.py: a worker process keeps the memory a check frees (glibc).

Both tests count the minor page faults of an allocation pattern a check has (three
1.6 MB arrays made and freed together, fifty times): glibc's defaults hand the freed
pages back and fault them in again each time; with the thresholds set, they stay.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
from installed import GRADCHECK

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the thresholds are glibc's",
)

#: The faults of the pattern, in the process that runs it.
PATTERN = """\
import resource
import numpy as np

def pattern_faults():
    for _ in range(3):
        arrays = [np.ones(200_000) for _ in range(3)]
        del arrays
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        arrays = [np.ones(200_000) for _ in range(3)]
        del arrays
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""


def _faults(tune: bool) -> int:
    code = PATTERN + (
        "from gradcheck_cli import heap\nassert heap.keep_freed_memory()\n" if tune else ""
    )
    code += "print(pattern_faults())\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return int(out.stdout)


def test_keeping_freed_memory_stops_the_page_faults():
    untuned, tuned = _faults(False), _faults(True)
    assert untuned > 5_000  # glibc's defaults: the pattern faults (37,450 when written)
    assert tuned < untuned / 20


@pytest.mark.parametrize("prefork", ["1", "0"])
def test_the_worker_that_runs_a_check_keeps_freed_memory(tmp_path, prefork):
    """A plugin layer runs the pattern inside the check's own worker process (forked at
    start-up, or started as a fresh interpreter with GRADCHECK_PREFORK=0)."""
    (tmp_path / "probe.py").write_text(
        PATTERN
        + "import json, os\nimport gradcheck_cli as gc\n\n"
        + "@gc.register_layer('probe')\nclass Probe(gc.Layer):\n"
        + "    def forward(self, x, params):\n"
        + "        if not os.path.exists('faults.json'):\n"
        + "            with open('faults.json', 'w') as f:\n"
        + "                json.dump([os.getpid(), pattern_faults()], f)\n"
        + "        return x * 1.0, None\n\n"
        + "    def backward(self, dy, cache, params):\n        return dy * 1.0, {}\n"
    )
    (tmp_path / "net.yaml").write_text(
        "plugins: [probe.py]\ninput: [0.5, -1.0, 2.0]\n"
        "layers: [{type: probe}]\nloss: {type: mse, target: [0, 0, 0]}\n"
    )
    env = {"GRADCHECK_PREFORK": prefork}
    proc = subprocess.run(
        [*GRADCHECK, "run", "net.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    _, faults = json.loads((tmp_path / "faults.json").read_text())
    assert faults < _faults(False) / 20
