"""Whole-process start-up of a small check, three ways, in one run.

    python benchmarks/startup.py [--repeat 21] [--config configs/example_a.yaml]

Each round runs, in turn and in a shuffled order:

- ``gradcheck run CONFIG``: the worker forked right after numpy (gradcheck_cli/launch.py);
- the same with ``GRADCHECK_PREFORK=0``: the worker a fresh interpreter started after the
  command's imports, as before (the baseline);
- the same with ``GRADCHECK_SUPERVISE=0``: no worker at all, the check in the command's
  own process (the floor; no protection from plugins);
- ``gradcheck --version``.

It prints the median and the quartiles of the wall time and the median CPU time of each
whole process tree, and the load average before and after: on a busy machine the wall
times grow with the load, and only figures measured side by side compare. The installed
``gradcheck`` beside this interpreter is timed (``pip install .`` compiles its bytecode,
as a user's install does). Nothing here is a test: timings are never asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def command() -> list[str]:
    beside = Path(sys.executable).with_name("gradcheck")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "gradcheck_cli"]


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, cwd=ROOT, env=env, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--config", default="configs/example_a.yaml")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sweep import byte_compiled, package_folder

    byte_compiled(package_folder())
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRADCHECK_")}
    base["NO_COLOR"] = "1"
    gradcheck = command()
    ways = {
        "run, worker forked at start (default)": (["run", args.config], {}),
        "run, worker a fresh interpreter (GRADCHECK_PREFORK=0)": (
            ["run", args.config],
            {"GRADCHECK_PREFORK": "0"},
        ),
        "run in-process, no worker (GRADCHECK_SUPERVISE=0)": (
            ["run", args.config],
            {"GRADCHECK_SUPERVISE": "0"},
        ),
        "--version": (["--version"], {}),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    load = os.getloadavg()
    print(f"{' '.join(gradcheck)}; load average before: {load[0]:.2f} {load[1]:.2f}")
    for extra, env in ways.values():  # one warm-up each: the file cache
        timed([*gradcheck, *extra], {**base, **env})
    for _ in range(args.repeat):
        order = list(ways)
        random.shuffle(order)
        for name in order:
            extra, env = ways[name]
            runs[name].append(timed([*gradcheck, *extra], {**base, **env}))
    print(f"{'':<56} {'wall median':>11} {'quartiles':>15} {'cpu median':>10}")
    for name, got in runs.items():
        walls = sorted(w for w, _ in got)
        q1, _, q3 = statistics.quantiles(walls, n=4)
        cpu = statistics.median(c for _, c in got)
        print(f"{name:<56} {statistics.median(walls):>10.3f}s {q1:>6.3f}-{q3:.3f}s {cpu:>9.3f}s")
    load = os.getloadavg()
    print(
        f"load average after: {load[0]:.2f} {load[1]:.2f} ({os.cpu_count()} CPUs, "
        f"{args.repeat} rounds)"
    )


if __name__ == "__main__":
    main()
